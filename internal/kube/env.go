package kube

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// ContainerEnv computes, from the API, the environment the kubelet gives container of pod: the
// services' variables (all of the namespace's with enableServiceLinks, else the default
// namespace's kubernetes service only), then envFrom, then env with $(VAR) references
// expanded. The image's own variables are not in the API and are not in it. Values the caller
// may not read (a Secret, a ConfigMap) or cannot know (a resource field without its value in
// the spec) are left out and named in missing.
func ContainerEnv(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod, container string) (env map[string]string, missing []string, err error) {
	var c *corev1.Container
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == container {
			c = &pod.Spec.Containers[i]
		}
	}
	if c == nil {
		return nil, nil, fmt.Errorf("pod %s has no container %s", pod.Name, container)
	}
	env = map[string]string{}
	links := pod.Spec.EnableServiceLinks == nil || *pod.Spec.EnableServiceLinks
	var services []corev1.Service
	if links {
		if l, err := cs.CoreV1().Services(pod.Namespace).List(ctx, metav1.ListOptions{}); err == nil {
			services = l.Items
		} else {
			missing = append(missing, "the services' variables ("+err.Error()+")")
		}
	}
	if pod.Namespace != metav1.NamespaceDefault || !links {
		if k, err := cs.CoreV1().Services(metav1.NamespaceDefault).Get(ctx, "kubernetes", metav1.GetOptions{}); err == nil {
			services = append(services, *k)
		} else {
			missing = append(missing, "KUBERNETES_SERVICE_* ("+err.Error()+")")
		}
	}
	maps.Copy(env, serviceEnv(services))

	getOpts := metav1.GetOptions{}
	configMap := cached(func(name string) (*corev1.ConfigMap, error) {
		return cs.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, name, getOpts)
	})
	secret := cached(func(name string) (*corev1.Secret, error) {
		return cs.CoreV1().Secrets(pod.Namespace).Get(ctx, name, getOpts)
	})
	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			cm, err := configMap(from.ConfigMapRef.Name)
			if err != nil {
				missing = append(missing, "envFrom config map "+from.ConfigMapRef.Name+" ("+err.Error()+")")
				continue
			}
			for k, v := range cm.Data {
				env[from.Prefix+k] = v
			}
		case from.SecretRef != nil:
			s, err := secret(from.SecretRef.Name)
			if err != nil {
				missing = append(missing, "envFrom secret "+from.SecretRef.Name+" ("+err.Error()+")")
				continue
			}
			for k, v := range s.Data {
				env[from.Prefix+k] = string(v)
			}
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			env[e.Name] = expand(e.Value, env)
			continue
		}
		v, err := valueFrom(e.ValueFrom, pod, c, configMap, secret)
		if err != nil {
			missing = append(missing, e.Name+" ("+err.Error()+")")
			continue
		}
		env[e.Name] = v
	}
	return env, missing, nil
}

// cached remembers get's answers (errors too) by name.
func cached[T any](get func(string) (T, error)) func(string) (T, error) {
	type answer struct {
		v   T
		err error
	}
	seen := map[string]answer{}
	return func(name string) (T, error) {
		a, ok := seen[name]
		if !ok {
			a.v, a.err = get(name)
			seen[name] = a
		}
		return a.v, a.err
	}
}

// valueFrom is an env entry's value from a field of the pod, a resource of the container, a
// ConfigMap's key or a Secret's.
func valueFrom(src *corev1.EnvVarSource, pod *corev1.Pod, c *corev1.Container,
	configMap func(string) (*corev1.ConfigMap, error), secret func(string) (*corev1.Secret, error)) (string, error) {
	switch {
	case src.FieldRef != nil:
		return podField(pod, src.FieldRef.FieldPath)
	case src.ResourceFieldRef != nil:
		return resourceField(c, src.ResourceFieldRef)
	case src.ConfigMapKeyRef != nil:
		cm, err := configMap(src.ConfigMapKeyRef.Name)
		if err != nil {
			return "", err
		}
		v, ok := cm.Data[src.ConfigMapKeyRef.Key]
		if !ok {
			return "", fmt.Errorf("config map %s has no key %s", cm.Name, src.ConfigMapKeyRef.Key)
		}
		return v, nil
	case src.SecretKeyRef != nil:
		s, err := secret(src.SecretKeyRef.Name)
		if err != nil {
			return "", err
		}
		v, ok := s.Data[src.SecretKeyRef.Key]
		if !ok {
			return "", fmt.Errorf("secret %s has no key %s", s.Name, src.SecretKeyRef.Key)
		}
		return string(v), nil
	}
	return "", fmt.Errorf("a source doppel does not know")
}

// podField is the downward API's value of path.
func podField(pod *corev1.Pod, path string) (string, error) {
	if k, ok := strings.CutPrefix(path, "metadata.labels['"); ok {
		return pod.Labels[strings.TrimSuffix(k, "']")], nil
	}
	if k, ok := strings.CutPrefix(path, "metadata.annotations['"); ok {
		return pod.Annotations[strings.TrimSuffix(k, "']")], nil
	}
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.hostIP":
		return pod.Status.HostIP, nil
	case "status.hostIPs":
		return joinIPs(pod.Status.HostIPs, func(ip corev1.HostIP) string { return ip.IP }), nil
	case "status.podIP":
		return pod.Status.PodIP, nil
	case "status.podIPs":
		return joinIPs(pod.Status.PodIPs, func(ip corev1.PodIP) string { return ip.IP }), nil
	}
	return "", fmt.Errorf("field %s", path)
}

// joinIPs is a list of addresses as the downward API gives it, comma-separated.
func joinIPs[T any](list []T, ip func(T) string) string {
	s := make([]string, len(list))
	for i, v := range list {
		s[i] = ip(v)
	}
	return strings.Join(s, ",")
}

// resourceField is a container's request or limit in the reference's divisor, rounded up, as
// the kubelet gives it; a limit the spec does not set (the node's allocatable then) is unknown.
func resourceField(c *corev1.Container, ref *corev1.ResourceFieldSelector) (string, error) {
	kind, name, ok := strings.Cut(ref.Resource, ".")
	if !ok {
		return "", fmt.Errorf("resource %s", ref.Resource)
	}
	list := c.Resources.Limits
	if kind == "requests" {
		list = c.Resources.Requests
	}
	q, ok := list[corev1.ResourceName(name)]
	if !ok {
		return "", fmt.Errorf("%s is not set in the spec", ref.Resource)
	}
	div := ref.Divisor
	if div.IsZero() {
		div = resource.MustParse("1")
	}
	v := (q.MilliValue() + div.MilliValue() - 1) / div.MilliValue()
	return strconv.FormatInt(v, 10), nil
}

// serviceEnv is the variables the kubelet makes of services, as Docker links did.
func serviceEnv(services []corev1.Service) map[string]string {
	env := map[string]string{}
	for _, s := range services {
		ip := s.Spec.ClusterIP
		if ip == "" || ip == corev1.ClusterIPNone || len(s.Spec.Ports) == 0 {
			continue
		}
		name := strings.ToUpper(strings.ReplaceAll(s.Name, "-", "_"))
		first := s.Spec.Ports[0]
		env[name+"_SERVICE_HOST"] = ip
		env[name+"_SERVICE_PORT"] = strconv.Itoa(int(first.Port))
		for _, p := range s.Spec.Ports {
			if p.Name != "" {
				env[name+"_SERVICE_PORT_"+strings.ToUpper(strings.ReplaceAll(p.Name, "-", "_"))] = strconv.Itoa(int(p.Port))
			}
		}
		proto := strings.ToLower(string(first.Protocol))
		if proto == "" {
			proto = "tcp"
		}
		env[name+"_PORT"] = fmt.Sprintf("%s://%s:%d", proto, hostPort(ip), first.Port)
		for _, p := range s.Spec.Ports {
			pr := string(p.Protocol)
			if pr == "" {
				pr = "TCP"
			}
			prefix := fmt.Sprintf("%s_PORT_%d_%s", name, p.Port, strings.ToUpper(pr))
			env[prefix] = fmt.Sprintf("%s://%s:%d", strings.ToLower(pr), hostPort(ip), p.Port)
			env[prefix+"_PROTO"] = strings.ToLower(pr)
			env[prefix+"_PORT"] = strconv.Itoa(int(p.Port))
			env[prefix+"_ADDR"] = ip
		}
	}
	return env
}

func hostPort(ip string) string {
	if strings.Contains(ip, ":") {
		return "[" + ip + "]"
	}
	return ip
}

// expand replaces $(NAME) with NAME's value when defined (and leaves it otherwise); $$ is a
// literal $, as the kubelet does.
func expand(s string, env map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+end]
			if v, ok := env[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+end+1])
			}
			i += end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// EnvList is env as KEY=VALUE entries, sorted.
func EnvList(env map[string]string) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out = append(out, k+"="+env[k])
	}
	return out
}
