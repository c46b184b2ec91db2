package kube

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
)

func TestList(t *testing.T) {
	two := int32(2)
	spec := corev1.PodSpec{Containers: []corev1.Container{{Name: "nginx"}, {Name: "envoy"}}}
	objs := []runtime.Object{
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "nginx", Namespace: "shop"},
			Spec:   appsv1.DeploymentSpec{Replicas: &two, Template: corev1.PodTemplateSpec{Spec: spec}},
			Status: appsv1.DeploymentStatus{ReadyReplicas: 1}},
		&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "shop"},
			Spec: appsv1.StatefulSetSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "postgres"}}}}}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "nginx", Namespace: "shop"}, Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "nginx"}}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "external", Namespace: "shop"}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "nginx-abc", Namespace: "shop"}, Spec: spec,
			Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{Ready: true}, {Ready: true}}}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "done", Namespace: "shop"}, Spec: spec, Status: corev1.PodStatus{Phase: corev1.PodSucceeded}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "elsewhere", Namespace: "other"}, Spec: spec, Status: corev1.PodStatus{Phase: corev1.PodRunning}},
	}
	got, err := List(context.Background(), fake.NewClientset(objs...), "shop")
	if err != nil {
		t.Fatal(err)
	}
	want := []Workload{
		{Target: "deployment/nginx", Ready: "1/2", Containers: []string{"nginx", "envoy"}},
		{Target: "statefulset/db", Ready: "0/1", Containers: []string{"postgres"}},
		{Target: "service/nginx", Ready: "-"},
		{Target: "pod/nginx-abc", Ready: "2/2", Containers: []string{"nginx", "envoy"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
}
