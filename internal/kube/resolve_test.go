package kube

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"doppel.dev/doppel/internal/target"
)

func pod(name string, labels map[string]string, ready bool, age time.Duration, containers ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", Labels: labels,
		CreationTimestamp: metav1.NewTime(time.Unix(1e9, 0).Add(-age))},
		Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	for _, c := range containers {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c})
	}
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: status}}
	return p
}

func TestResolve(t *testing.T) {
	app := map[string]string{"app": "nginx"}
	objs := []runtime.Object{
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "nginx", Namespace: "shop"},
			Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: app}}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "nginx", Namespace: "shop"}, Spec: corev1.ServiceSpec{Selector: app}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "headless", Namespace: "shop"}},
		pod("nginx-old-ready", app, true, time.Hour, "istio-proxy", "nginx"),
		pod("nginx-new-unready", app, false, time.Minute, "istio-proxy", "nginx"),
		pod("nginx-newer-ready", app, true, 2*time.Minute, "istio-proxy", "nginx"),
		pod("sidecars-only", nil, true, 0, "istio-proxy", "envoy"),
	}
	cs := fake.NewClientset(objs...)
	for _, tc := range []struct {
		spec, pod, container, err string
	}{
		{spec: "deployment/nginx", pod: "nginx-newer-ready", container: "nginx"},
		{spec: "service/nginx", pod: "nginx-newer-ready", container: "nginx"},
		{spec: "deployment/nginx/container/istio-proxy", pod: "nginx-newer-ready", container: "istio-proxy"},
		{spec: "nginx-old-ready", pod: "nginx-old-ready", container: "nginx"},
		{spec: "deployment/nginx/container/app", err: `has no container "app"; its containers: istio-proxy, nginx`},
		{spec: "deployment/ngnix", err: "deployment ngnix not found in namespace shop; did you mean deployment/nginx?"},
		{spec: "statefulset/db", err: "statefulset db not found in namespace shop (doppel ls -n shop lists the targets)"},
		{spec: "service/headless", err: "has no selector"},
		{spec: "pod/sidecars-only", err: "only sidecar containers"},
	} {
		tg, err := target.Parse(tc.spec)
		if err != nil {
			t.Fatal(err)
		}
		r, err := Resolve(context.Background(), cs, nil, "shop", tg)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Resolve(%s): %v, want an error with %q", tc.spec, err, tc.err)
			}
			continue
		}
		if err != nil || r.Pod.Name != tc.pod || r.Container != tc.container {
			t.Errorf("Resolve(%s) = %v/%q, %v; want %s/%s", tc.spec, podName(r.Pod), r.Container, err, tc.pod, tc.container)
		}
	}
}

func podName(p *corev1.Pod) string {
	if p == nil {
		return "<nil>"
	}
	return p.Name
}
