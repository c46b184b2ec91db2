// Package target parses and checks what a doppel session runs against. It owns no state: a
// Target is a value, checked against the system (or the cluster) when the session starts.
package target

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Target is a parsed --target: a local process ("pid:PID"), a Kubernetes workload
// ("KIND/NAME[/container/CONTAINER]", a bare NAME meaning a pod), or none ("none": targetless).
type Target struct {
	// PID is the process of a local target ("pid:PID"); 0 for the others.
	PID int
	// Kind is the Kubernetes kind of a cluster target: "pod", "deployment", "statefulset",
	// "daemonset", "replicaset", "job", "service" or "rollout"; "" for a local target and
	// for none.
	Kind string
	// Name is the workload's name; Container the container asked for ("" for the default).
	Name, Container string
	// None is a targetless session: no workload, an agent in the namespace.
	None bool
}

// Kinds are the Kubernetes kinds a target may name, in the order `doppel exec --help` lists them.
var Kinds = []string{"pod", "deployment", "statefulset", "daemonset", "replicaset", "job", "service", "rollout"}

// kindAliases are the short and plural names kubectl accepts too.
var kindAliases = map[string]string{
	"po": "pod", "pods": "pod",
	"deploy": "deployment", "deployments": "deployment",
	"sts": "statefulset", "statefulsets": "statefulset",
	"ds": "daemonset", "daemonsets": "daemonset",
	"rs": "replicaset", "replicasets": "replicaset",
	"jobs": "job",
	"svc":  "service", "services": "service",
	"ro": "rollout", "rollouts": "rollout",
}

// Local says whether the target is a process on this machine.
func (t Target) Local() bool { return t.PID != 0 }

func (t Target) String() string {
	switch {
	case t.PID != 0:
		return "pid:" + strconv.Itoa(t.PID)
	case t.None:
		return "none"
	case t.Container != "":
		return t.Kind + "/" + t.Name + "/container/" + t.Container
	}
	return t.Kind + "/" + t.Name
}

// ErrNoTarget is returned by Parse for an empty spec.
var ErrNoTarget = errors.New("no target given: pass --target pid:PID, --target deployment/NAME (or another kind), or --target none (or set target in the config file)")

// Parse parses a target spec: "pid:PID", "none", "KIND/NAME", "KIND/NAME/container/CONTAINER" or
// a bare "NAME" (a pod).
func Parse(spec string) (Target, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return Target{}, ErrNoTarget
	}
	if rest, ok := strings.CutPrefix(spec, "pid:"); ok {
		pid, err := strconv.Atoi(rest)
		if err != nil || pid <= 0 {
			return Target{}, fmt.Errorf("target %q: %q is not a process id; use pid:PID", spec, rest)
		}
		return Target{PID: pid}, nil
	}
	if spec == "none" {
		return Target{None: true}, nil
	}
	if kind, _, ok := strings.Cut(spec, ":"); ok && !strings.Contains(kind, "/") {
		return Target{}, fmt.Errorf("target %q: unknown kind %q; use pid:PID for a local process, or KIND/NAME for a Kubernetes workload", spec, kind)
	}
	parts := strings.Split(spec, "/")
	var t Target
	switch len(parts) {
	case 1:
		t.Kind, t.Name = "pod", parts[0]
	case 2, 4:
		t.Kind, t.Name = strings.ToLower(parts[0]), parts[1]
		if a, ok := kindAliases[t.Kind]; ok {
			t.Kind = a
		}
		if !slices.Contains(Kinds, t.Kind) {
			return Target{}, fmt.Errorf("target %q: unknown kind %q; want one of %s", spec, parts[0], strings.Join(Kinds, ", "))
		}
		if len(parts) == 4 {
			if parts[2] != "container" {
				return Target{}, fmt.Errorf("target %q: want KIND/NAME/container/CONTAINER", spec)
			}
			t.Container = parts[3]
			if !isDNSLabel(t.Container) {
				return Target{}, fmt.Errorf("target %q: %q is not a container name (lower-case letters, digits and '-')", spec, t.Container)
			}
		}
	default:
		return Target{}, fmt.Errorf("target %q: want pid:PID, none, NAME, KIND/NAME or KIND/NAME/container/CONTAINER", spec)
	}
	if !isDNSSubdomain(t.Name) {
		return Target{}, fmt.Errorf("target %q: %q is not a Kubernetes name (lower-case letters, digits, '-' and '.')", spec, t.Name)
	}
	return t, nil
}

// isDNSLabel reports whether s is an RFC 1123 label, as container names are.
func isDNSLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// isDNSSubdomain reports whether s is an RFC 1123 subdomain, as most object names are.
func isDNSSubdomain(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if !isDNSLabel(label) {
			return false
		}
	}
	return true
}

// Check says whether a local target exists now. Other targets are checked against the cluster.
func (t Target) Check() error {
	if !t.Local() {
		return nil
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(t.PID)); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("target %s: no such process", t)
		}
		return fmt.Errorf("target %s: %w", t, err)
	}
	return nil
}
