// Package kube is doppel's client of the Kubernetes API: listing the workloads a session can
// target, resolving a target to a pod and container, starting the agent beside it (a Job or an
// ephemeral container) and connecting to it through port-forward. It owns no API connection of
// its own: callers pass clients built from the user's kubeconfig (cli-runtime's flags), which
// live as long as the command. An Agent owns the objects it made in the cluster until Stop, and
// a port-forward connection owns its streams until Close.
package kube

import (
	"context"
	"fmt"
	"slices"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Workload is one target in a namespace, as `doppel ls` shows it.
type Workload struct {
	// Target is what --target takes for it, like "deployment/nginx".
	Target string `json:"target"`
	// Ready is ready/desired pods ("1/1"); for a pod, its ready containers ("2/2").
	Ready string `json:"ready"`
	// Containers are the names of its pods' containers, in spec order.
	Containers []string `json:"containers,omitempty"`
}

// List returns the targets of namespace ns: its deployments, statefulsets, daemonsets, jobs,
// services with a selector, and running pods, in that order and by name within each kind.
func List(ctx context.Context, cs kubernetes.Interface, ns string) ([]Workload, error) {
	var out []Workload
	opts := metav1.ListOptions{}
	deps, err := cs.AppsV1().Deployments(ns).List(ctx, opts)
	if err != nil {
		return nil, listError("deployments", ns, err)
	}
	for _, d := range deps.Items {
		out = append(out, Workload{Target: "deployment/" + d.Name, Ready: ratio(d.Status.ReadyReplicas, replicas(d.Spec.Replicas)),
			Containers: containerNames(d.Spec.Template.Spec)})
	}
	sts, err := cs.AppsV1().StatefulSets(ns).List(ctx, opts)
	if err != nil {
		return nil, listError("statefulsets", ns, err)
	}
	for _, s := range sts.Items {
		out = append(out, Workload{Target: "statefulset/" + s.Name, Ready: ratio(s.Status.ReadyReplicas, replicas(s.Spec.Replicas)),
			Containers: containerNames(s.Spec.Template.Spec)})
	}
	dss, err := cs.AppsV1().DaemonSets(ns).List(ctx, opts)
	if err != nil {
		return nil, listError("daemonsets", ns, err)
	}
	for _, d := range dss.Items {
		out = append(out, Workload{Target: "daemonset/" + d.Name, Ready: ratio(d.Status.NumberReady, d.Status.DesiredNumberScheduled),
			Containers: containerNames(d.Spec.Template.Spec)})
	}
	jobs, err := cs.BatchV1().Jobs(ns).List(ctx, opts)
	if err != nil {
		return nil, listError("jobs", ns, err)
	}
	for _, j := range jobs.Items {
		out = append(out, Workload{Target: "job/" + j.Name, Ready: ratio(jobReady(j), parallelism(j)),
			Containers: containerNames(j.Spec.Template.Spec)})
	}
	svcs, err := cs.CoreV1().Services(ns).List(ctx, opts)
	if err != nil {
		return nil, listError("services", ns, err)
	}
	for _, s := range svcs.Items {
		if len(s.Spec.Selector) == 0 {
			continue // no pods behind it to target
		}
		out = append(out, Workload{Target: "service/" + s.Name, Ready: "-"})
	}
	pods, err := cs.CoreV1().Pods(ns).List(ctx, opts)
	if err != nil {
		return nil, listError("pods", ns, err)
	}
	for _, p := range pods.Items {
		if p.Status.Phase != corev1.PodRunning {
			continue
		}
		ready := 0
		for _, c := range p.Status.ContainerStatuses {
			if c.Ready {
				ready++
			}
		}
		out = append(out, Workload{Target: "pod/" + p.Name, Ready: fmt.Sprintf("%d/%d", ready, len(p.Spec.Containers)),
			Containers: containerNames(p.Spec)})
	}
	kindOrder := []string{"deployment", "statefulset", "daemonset", "job", "service", "pod"}
	slices.SortStableFunc(out, func(a, b Workload) int {
		ka, _, _ := strings.Cut(a.Target, "/")
		kb, _, _ := strings.Cut(b.Target, "/")
		if d := slices.Index(kindOrder, ka) - slices.Index(kindOrder, kb); d != 0 {
			return d
		}
		return strings.Compare(a.Target, b.Target)
	})
	return out, nil
}

func listError(what, ns string, err error) error {
	return fmt.Errorf("list %s in namespace %s: %w", what, ns, err)
}

func replicas(r *int32) int32 {
	if r == nil {
		return 1
	}
	return *r
}

func parallelism(j batchv1.Job) int32 {
	if j.Spec.Parallelism == nil {
		return 1
	}
	return *j.Spec.Parallelism
}

func jobReady(j batchv1.Job) int32 {
	if j.Status.Ready != nil {
		return *j.Status.Ready
	}
	return j.Status.Active
}

func ratio(ready, want int32) string { return fmt.Sprintf("%d/%d", ready, want) }

func containerNames(spec corev1.PodSpec) []string {
	var names []string
	for _, c := range spec.Containers {
		names = append(names, c.Name)
	}
	return names
}
