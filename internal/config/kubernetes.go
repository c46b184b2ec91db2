package config

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Values of AgentConfig.PullPolicy, Toleration.Operator and Toleration.Effect. The empty string
// is accepted too: the default pull policy, the operator Equal, every effect.
var (
	pullPolicies        = []string{"Always", "IfNotPresent", "Never"}
	tolerationOperators = []string{tolerationExists, tolerationEqual}
	taintEffects        = []string{"NoSchedule", "PreferNoSchedule", "NoExecute"}
)

const (
	tolerationExists = "Exists"
	tolerationEqual  = "Equal"
)

// standardResources are the resource names a container may request without a domain prefix,
// besides "hugepages-<size>".
var standardResources = []string{"cpu", "memory", "ephemeral-storage"}

// validateKubernetes checks the agent's Kubernetes settings and the kubernetes section; paths
// start with "agent." and "kubernetes.". The checks are the API server's, so that a mistake
// shows up with its line in the file rather than as a rejected Job after the session started.
func (c *Config) validateKubernetes() []fieldError {
	var fes []fieldError
	add := func(path string, err error, reads ...string) {
		if err != nil {
			fes = append(fes, fieldError{path: path, err: err, reads: reads})
		}
	}
	a := c.Agent
	add("agent.image", checkImage(a.Image))
	add("agent.pullPolicy", checkPullPolicy(a.PullPolicy))
	add("agent.namespace", checkNamespace(a.Namespace))
	add("agent.startTimeout", checkStartTimeout(a.StartTimeout))
	for _, k := range slices.Sorted(maps.Keys(a.Labels)) {
		add("agent.labels."+k, checkLabel("label", k, a.Labels[k]))
	}
	for _, k := range slices.Sorted(maps.Keys(a.Annotations)) {
		add("agent.annotations."+k, checkAnnotationKey(k))
	}
	for _, k := range slices.Sorted(maps.Keys(a.NodeSelector)) {
		add("agent.nodeSelector."+k, checkLabel("node selector", k, a.NodeSelector[k]))
	}
	for i, t := range a.Tolerations {
		// The paths checkToleration gives are relative to the toleration, "" being itself.
		abs := func(rel string) string {
			if rel == "" {
				return fmt.Sprintf("agent.tolerations[%d]", i)
			}
			return fmt.Sprintf("agent.tolerations[%d].%s", i, rel)
		}
		for _, fe := range checkToleration(t) {
			reads := make([]string, len(fe.reads))
			for j, r := range fe.reads {
				reads[j] = abs(r)
			}
			add(abs(fe.path), fe.err, reads...)
		}
	}
	fes = append(fes, a.Resources.validate("agent.resources")...)
	add("kubernetes.namespace", checkNamespace(c.Kubernetes.Namespace))
	// kubernetes.kubeconfig and kubernetes.context may be anything: the kubeconfig loader
	// says whether the file and the context exist.
	return fes
}

// normalize expands a leading "~/" in the kubeconfig path, which a shell would have expanded
// on the command line but nothing expands in a file.
func (k *Kubernetes) normalize() {
	k.Kubeconfig = expandHome(k.Kubeconfig)
}

// expandHome replaces a leading "~/", or a lone "~", with the home directory. Other paths, like
// "~user/x", stay as they are, and so does every path when there is no home directory.
func expandHome(p string) string {
	if p != "~" && !strings.HasPrefix(p, "~/") {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return p
	}
	return filepath.Join(home, p[1:])
}

func checkImage(s string) error {
	if strings.ContainsFunc(s, unicode.IsSpace) {
		return fmt.Errorf("invalid image %q: an image reference has no spaces, like \"registry.example.com/doppel-agent:v1\"", s)
	}
	return nil
}

func checkPullPolicy(s string) error {
	if s != "" && !slices.Contains(pullPolicies, s) {
		return fmt.Errorf("unknown pull policy %q: want Always, IfNotPresent or Never", s)
	}
	return nil
}

// checkNamespace accepts a namespace name, a DNS label, or "" for the default.
func checkNamespace(s string) error {
	if s == "" {
		return nil
	}
	if msgs := validation.IsDNS1123Label(s); len(msgs) > 0 {
		return fmt.Errorf("invalid namespace %q: %s", s, strings.Join(msgs, "; "))
	}
	return nil
}

func checkStartTimeout(d Duration) error {
	if d <= 0 {
		return fmt.Errorf("must be more than 0, like \"60s\", got %q", d)
	}
	return nil
}

// checkLabel checks a label or node selector entry; kind names which.
func checkLabel(kind, k, v string) error {
	if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
		return fmt.Errorf("invalid %s key %q: %s", kind, k, strings.Join(msgs, "; "))
	}
	if msgs := validation.IsValidLabelValue(v); len(msgs) > 0 {
		return fmt.Errorf("invalid %s value %q: %s", kind, v, strings.Join(msgs, "; "))
	}
	return nil
}

// checkAnnotationKey checks an annotation key as the API server does: a qualified name once
// lower-cased. Annotation values may be any string.
func checkAnnotationKey(k string) error {
	if msgs := validation.IsQualifiedName(strings.ToLower(k)); len(msgs) > 0 {
		return fmt.Errorf("invalid annotation key %q: %s", k, strings.Join(msgs, "; "))
	}
	return nil
}

// checkToleration checks t as the API server does. The paths of the errors are relative to the
// toleration: "key", "operator", "value", "effect", or "" for the toleration as a whole.
func checkToleration(t Toleration) []fieldError {
	var fes []fieldError
	add := func(path string, err error, reads ...string) {
		fes = append(fes, fieldError{path: path, err: err, reads: reads})
	}
	if t.Operator != "" && !slices.Contains(tolerationOperators, t.Operator) {
		add("operator", fmt.Errorf("unknown operator %q: want Exists or Equal", t.Operator))
	}
	if t.Effect != "" && !slices.Contains(taintEffects, t.Effect) {
		add("effect", fmt.Errorf("unknown effect %q: want NoSchedule, PreferNoSchedule or NoExecute, or none to match all", t.Effect))
	}
	if t.Key != "" {
		if msgs := validation.IsQualifiedName(t.Key); len(msgs) > 0 {
			add("key", fmt.Errorf("invalid taint key %q: %s", t.Key, strings.Join(msgs, "; ")))
		}
	}
	switch t.Operator {
	case tolerationExists:
		if t.Value != "" {
			add("value", fmt.Errorf("operator Exists matches any value: drop the value %q, or set operator Equal", t.Value), "operator")
		}
	case tolerationEqual, "":
		if t.Key == "" {
			add("", errors.New("no key: give the taint's key, or set operator Exists to tolerate every key"), "operator", "key")
		}
		if msgs := validation.IsValidLabelValue(t.Value); len(msgs) > 0 {
			add("value", fmt.Errorf("invalid taint value %q: %s", t.Value, strings.Join(msgs, "; ")))
		}
	}
	return fes
}

// parseToleration reads the --agent-toleration syntax: "KEY=VALUE:EFFECT" or "KEY=VALUE"
// (operator Equal), "KEY:EFFECT" or "KEY" (operator Exists), "*:EFFECT" or "*" (every key,
// operator Exists). Without an effect, the toleration matches every effect.
func parseToleration(s string) (Toleration, error) {
	spec, effect, hasEffect := strings.Cut(s, ":")
	if hasEffect && effect == "" {
		return Toleration{}, errors.New(`no effect after ":": want NoSchedule, PreferNoSchedule or NoExecute, or no ":" to match all`)
	}
	key, value, hasValue := strings.Cut(spec, "=")
	t := Toleration{Key: key, Operator: tolerationExists, Effect: effect}
	if hasValue {
		t.Operator, t.Value = tolerationEqual, value
	}
	switch key {
	case "*":
		if hasValue {
			return Toleration{}, errors.New(`"*" tolerates every taint and takes no value: use "*" or "*:EFFECT"`)
		}
		t.Key = ""
	case "":
		return Toleration{}, errors.New(`no taint key: want KEY=VALUE:EFFECT, KEY=VALUE, KEY:EFFECT, KEY, or "*" for every taint`)
	}
	if fes := checkToleration(t); len(fes) > 0 {
		return Toleration{}, fes[0].err
	}
	return t, nil
}

// validate checks the resource names and quantities, and that no request is above its limit;
// paths start with prefix.
func (r Resources) validate(prefix string) []fieldError {
	var fes []fieldError
	sides := []struct {
		name string
		m    map[string]string
	}{{"requests", r.Requests}, {"limits", r.Limits}}
	for _, side := range sides {
		for _, name := range slices.Sorted(maps.Keys(side.m)) {
			if err := checkResource(name, side.m[name]); err != nil {
				fes = append(fes, fieldError{path: prefix + "." + side.name + "." + name, err: err})
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(r.Requests)) {
		lim, ok := r.Limits[name]
		if !ok || checkResource(name, lim) != nil || checkResource(name, r.Requests[name]) != nil {
			continue
		}
		req := r.Requests[name]
		reqQ, limQ := resource.MustParse(req), resource.MustParse(lim)
		if reqQ.Cmp(limQ) > 0 {
			limPath := prefix + ".limits." + name
			fes = append(fes, fieldError{
				path:  prefix + ".requests." + name,
				err:   fmt.Errorf("request %s is above the limit %s: lower it, or raise %s", req, lim, limPath),
				reads: []string{limPath},
			})
		}
	}
	return fes
}

// checkResource checks a resource name and its quantity, as the API server does for a
// container: a standard name or one with a domain prefix, and an amount that is not negative.
func checkResource(name, quantity string) error {
	if msgs := validation.IsQualifiedName(name); len(msgs) > 0 {
		return fmt.Errorf("invalid resource name %q: %s", name, strings.Join(msgs, "; "))
	}
	if !strings.Contains(name, "/") && !slices.Contains(standardResources, name) && !strings.HasPrefix(name, "hugepages-") {
		return fmt.Errorf("unknown resource %q: want cpu, memory, ephemeral-storage, hugepages-<size>, or an extended resource with a domain, like \"example.com/gpu\"", name)
	}
	return checkQuantity(quantity)
}

func checkQuantity(s string) error {
	if hugeExponent(s) {
		return fmt.Errorf("invalid quantity %q: the exponent is out of range; want an amount like \"100m\", \"0.5\" or \"64Mi\"", s)
	}
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return fmt.Errorf("invalid quantity %q: want an amount like \"100m\", \"0.5\" or \"64Mi\"", s)
	}
	if q.Sign() < 0 {
		return fmt.Errorf("quantity %q is negative", s)
	}
	return nil
}

// hugeExponent reports whether s is a quantity like "1e-2000000000" whose exponent has more
// than two digits. ParseQuantity takes minutes over such a number, and comparing two of them
// can overflow; real quantities have small exponents.
func hugeExponent(s string) bool {
	i := strings.LastIndexAny(s, "eE")
	if i < 0 {
		return false
	}
	exp := strings.TrimLeft(s[i+1:], "+-")
	return len(exp) > 2 && strings.Trim(exp, "0123456789") == ""
}
