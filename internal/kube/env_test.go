package kube

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// The environment the kubelet would give a container, computed from the API as the kubelet
// does: services' variables, envFrom, env with $(VAR) references, downward API fields and
// resources; a Secret the caller may not read is named, not guessed.
func TestContainerEnv(t *testing.T) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "shop", UID: "u-1", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{NodeName: "n1", ServiceAccountName: "web", Containers: []corev1.Container{{
			Name: "app",
			Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{
				corev1.ResourceMemory: resource.MustParse("64Mi"), corev1.ResourceCPU: resource.MustParse("1500m")}},
			EnvFrom: []corev1.EnvFromSource{
				{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}}, Prefix: "APP_"},
			},
			Env: []corev1.EnvVar{
				{Name: "MODE", Value: "test"},
				{Name: "URL", Value: "http://$(BACKEND_SERVICE_HOST):$(BACKEND_SERVICE_PORT)/$(MODE)/$$(MODE)/$(NOPE)"},
				{Name: "POD", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
				{Name: "APP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}}},
				{Name: "IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
				{Name: "MEM_MI", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}}},
				{Name: "CPUS", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.cpu"}}},
				{Name: "COLOR", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}, Key: "color"}}},
				{Name: "DB_PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "db"}, Key: "password"}}},
			},
		}}},
		Status: corev1.PodStatus{PodIP: "10.88.1.7"},
	}
	cs := fake.NewClientset(
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "backend", Namespace: "shop"},
			Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.20", Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "headless", Namespace: "shop"},
			Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{{Port: 80}}}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: "default"},
			Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.1", Ports: []corev1.ServicePort{{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP}}}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "settings", Namespace: "shop"}, Data: map[string]string{"color": "blue", "size": "xl"}},
	)
	cs.PrependReactor("get", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "secrets"}, "db", nil)
	})
	env, missing, err := ContainerEnv(context.Background(), cs, pod, "app")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"BACKEND_SERVICE_HOST": "10.96.0.20", "BACKEND_SERVICE_PORT": "80", "BACKEND_SERVICE_PORT_HTTP": "80",
		"BACKEND_PORT": "tcp://10.96.0.20:80", "BACKEND_PORT_80_TCP": "tcp://10.96.0.20:80", "BACKEND_PORT_80_TCP_PROTO": "tcp",
		"BACKEND_PORT_80_TCP_PORT": "80", "BACKEND_PORT_80_TCP_ADDR": "10.96.0.20",
		"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443", "KUBERNETES_SERVICE_PORT_HTTPS": "443",
		"KUBERNETES_PORT": "tcp://10.96.0.1:443", "KUBERNETES_PORT_443_TCP": "tcp://10.96.0.1:443", "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
		"KUBERNETES_PORT_443_TCP_PORT": "443", "KUBERNETES_PORT_443_TCP_ADDR": "10.96.0.1",
		"APP_color": "blue", "APP_size": "xl",
		"MODE": "test", "URL": "http://10.96.0.20:80/test/$(MODE)/$(NOPE)",
		"POD": "web-1", "APP": "web", "IP": "10.88.1.7", "MEM_MI": "64", "CPUS": "2", "COLOR": "blue",
	}
	if diff := cmp.Diff(want, env); diff != "" {
		t.Errorf("ContainerEnv (-want +got):\n%s", diff)
	}
	if len(missing) != 1 || !strings.HasPrefix(missing[0], "DB_PASSWORD (") || !strings.Contains(missing[0], "forbidden") {
		t.Errorf("missing = %q, want DB_PASSWORD forbidden", missing)
	}
	if _, _, err := ContainerEnv(context.Background(), cs, pod, "nope"); err == nil {
		t.Error("a container the pod lacks: no error")
	}
}
