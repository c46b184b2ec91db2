package kube

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/agnivade/levenshtein"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"doppel.dev/doppel/internal/target"
)

// sidecars are container names that are never the default container of a pod: service-mesh
// proxies and agents that run beside the application.
var sidecars = []string{"istio-proxy", "linkerd-proxy", "envoy", "envoy-sidecar", "vault-agent", "cloud-sql-proxy",
	"datadog-agent", "fluent-bit", "fluentd"}

// Resolved is the pod and container a target names.
type Resolved struct {
	Pod       *corev1.Pod
	Container string
}

// rollouts is Argo Rollouts' resource, found through the dynamic client when its CRD exists.
var rollouts = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "rollouts"}

// Resolve finds the running pod and the container that t names in namespace ns: the pod
// itself, or a ready pod of the workload (a service's: one behind its selector), and the
// container asked for or the first that is not a known sidecar. Names that do not exist get an
// error listing close matches; dyn may be nil (rollouts are then not found).
func Resolve(ctx context.Context, cs kubernetes.Interface, dyn dynamic.Interface, ns string, t target.Target) (Resolved, error) {
	if t.Local() || t.None {
		return Resolved{}, fmt.Errorf("target %s names no pod", t)
	}
	var pod *corev1.Pod
	var selector labels.Selector
	var err error
	get := metav1.GetOptions{}
	switch t.Kind {
	case "pod":
		pod, err = cs.CoreV1().Pods(ns).Get(ctx, t.Name, get)
	case "deployment":
		d, e := cs.AppsV1().Deployments(ns).Get(ctx, t.Name, get)
		err = e
		if e == nil {
			selector, err = labelSelector(d.Spec.Selector)
		}
	case "statefulset":
		s, e := cs.AppsV1().StatefulSets(ns).Get(ctx, t.Name, get)
		err = e
		if e == nil {
			selector, err = labelSelector(s.Spec.Selector)
		}
	case "daemonset":
		d, e := cs.AppsV1().DaemonSets(ns).Get(ctx, t.Name, get)
		err = e
		if e == nil {
			selector, err = labelSelector(d.Spec.Selector)
		}
	case "replicaset":
		r, e := cs.AppsV1().ReplicaSets(ns).Get(ctx, t.Name, get)
		err = e
		if e == nil {
			selector, err = labelSelector(r.Spec.Selector)
		}
	case "job":
		j, e := cs.BatchV1().Jobs(ns).Get(ctx, t.Name, get)
		err = e
		if e == nil && j.Spec.Selector != nil {
			selector, err = labelSelector(j.Spec.Selector)
		}
	case "service":
		s, e := cs.CoreV1().Services(ns).Get(ctx, t.Name, get)
		err = e
		if e == nil {
			if len(s.Spec.Selector) == 0 {
				return Resolved{}, fmt.Errorf("service %s in namespace %s has no selector: no pod is behind it to target", t.Name, ns)
			}
			selector = labels.SelectorFromSet(s.Spec.Selector)
		}
	case "rollout":
		if dyn == nil {
			return Resolved{}, fmt.Errorf("rollout %s: no dynamic client", t.Name)
		}
		u, e := dyn.Resource(rollouts).Namespace(ns).Get(ctx, t.Name, get)
		err = e
		if e == nil {
			m, _, _ := unstructured.NestedStringMap(u.Object, "spec", "selector", "matchLabels")
			selector = labels.SelectorFromSet(m)
		}
	default:
		return Resolved{}, fmt.Errorf("target %s: unknown kind %q", t, t.Kind)
	}
	if err != nil {
		return Resolved{}, notFound(ctx, cs, ns, t, err)
	}
	if pod == nil {
		if pod, err = readyPod(ctx, cs, ns, t, selector); err != nil {
			return Resolved{}, err
		}
	}
	if pod.Status.Phase != corev1.PodRunning {
		return Resolved{}, fmt.Errorf("pod %s in namespace %s is %s, not Running", pod.Name, ns, pod.Status.Phase)
	}
	c, err := container(pod, t.Container)
	if err != nil {
		return Resolved{}, err
	}
	return Resolved{Pod: pod, Container: c}, nil
}

// labelSelector converts a workload's selector; a missing one gives nil (which readyPod refuses:
// an empty selector would select every pod).
func labelSelector(sel *metav1.LabelSelector) (labels.Selector, error) {
	if sel == nil {
		return nil, nil
	}
	return metav1.LabelSelectorAsSelector(sel)
}

// readyPod picks a running pod behind selector, ready ones first, then the newest.
func readyPod(ctx context.Context, cs kubernetes.Interface, ns string, t target.Target, selector labels.Selector) (*corev1.Pod, error) {
	if selector == nil || selector.Empty() {
		return nil, fmt.Errorf("%s in namespace %s selects no pods by label", t, ns)
	}
	list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector.String()})
	if err != nil {
		return nil, fmt.Errorf("list the pods of %s in namespace %s: %w", t, ns, err)
	}
	var running []*corev1.Pod
	for i := range list.Items {
		if p := &list.Items[i]; p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			running = append(running, p)
		}
	}
	if len(running) == 0 {
		return nil, fmt.Errorf("%s in namespace %s has no running pod", t, ns)
	}
	sort.SliceStable(running, func(i, j int) bool {
		if ri, rj := podReady(running[i]), podReady(running[j]); ri != rj {
			return ri
		}
		return running[j].CreationTimestamp.Before(&running[i].CreationTimestamp)
	})
	return running[0], nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// container picks the container named want, or the first that is not a known sidecar.
func container(p *corev1.Pod, want string) (string, error) {
	var names []string
	for _, c := range p.Spec.Containers {
		names = append(names, c.Name)
	}
	if want != "" {
		if slices.Contains(names, want) {
			return want, nil
		}
		return "", fmt.Errorf("pod %s has no container %q; its containers: %s", p.Name, want, strings.Join(names, ", "))
	}
	for _, n := range names {
		if !slices.Contains(sidecars, n) {
			return n, nil
		}
	}
	if len(names) == 0 {
		return "", fmt.Errorf("pod %s has no containers", p.Name)
	}
	return "", fmt.Errorf("pod %s has only sidecar containers (%s): name one with /container/NAME", p.Name, strings.Join(names, ", "))
}

// notFound explains a failed get: for a missing name, the close matches of the same kind.
func notFound(ctx context.Context, cs kubernetes.Interface, ns string, t target.Target, err error) error {
	switch {
	case apierrors.IsForbidden(err):
		return fmt.Errorf("%s in namespace %s: forbidden: %w (see docs for the role doppel needs)", t, ns, err)
	case !apierrors.IsNotFound(err):
		return fmt.Errorf("get %s in namespace %s: %w", t, ns, err)
	}
	msg := fmt.Sprintf("%s %s not found in namespace %s", t.Kind, t.Name, ns)
	ws, lerr := List(ctx, cs, ns)
	if lerr != nil {
		return fmt.Errorf("%s", msg)
	}
	var close []string
	for _, w := range ws {
		kind, name, _ := strings.Cut(w.Target, "/")
		if kind == t.Kind && similar(name, t.Name) {
			close = append(close, w.Target)
		}
	}
	if len(close) > 0 {
		return fmt.Errorf("%s; did you mean %s?", msg, strings.Join(close, " or "))
	}
	return fmt.Errorf("%s (doppel ls -n %s lists the targets)", msg, ns)
}

// similar says whether two names are close: one contains the other, or they are at most two
// edits apart.
func similar(a, b string) bool {
	if strings.Contains(a, b) || strings.Contains(b, a) {
		return true
	}
	return levenshtein.ComputeDistance(a, b) <= 2
}
