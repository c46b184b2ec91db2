package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"
)

func TestDefaultKubernetes(t *testing.T) {
	a := Default().Agent
	if a.StartTimeout != Duration(DefaultStartTimeout) {
		t.Errorf("Default().Agent.StartTimeout = %v, want %v", a.StartTimeout, DefaultStartTimeout)
	}
	// The CLI picks the image of its own version, and the pull policy is the cluster's default.
	if a.Image != "" || a.PullPolicy != "" || a.Namespace != "" {
		t.Errorf("Default().Agent image %q, pull policy %q, namespace %q; want all empty", a.Image, a.PullPolicy, a.Namespace)
	}
	if a.Tolerations != nil {
		t.Errorf("Default().Agent.Tolerations = %v, want nil (tolerate every taint)", a.Tolerations)
	}
}

func TestValidateKubernetes(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(c *Config)
		// want holds the start of each line of Validate's error, in order; none means valid.
		want []string
	}{
		{name: "defaults", set: func(c *Config) {}},
		{
			name: "everything set and valid",
			set: func(c *Config) {
				c.Kubernetes = Kubernetes{Kubeconfig: "any path, even with spaces", Context: "any context", Namespace: "shop-1"}
				a := &c.Agent
				a.Image = "localhost:5001/doppel-agent@sha256:abc"
				a.PullPolicy = "Never"
				a.Namespace = "doppel"
				a.Ephemeral, a.Privileged = true, true
				a.StartTimeout = Duration(time.Millisecond)
				a.Labels = map[string]string{"team": "orders", "app.kubernetes.io/name": "doppel-agent", "empty": "", "x": strings.Repeat("v", 63)}
				a.Annotations = map[string]string{"Example.COM/Note": "any text at all\n", "note": ""}
				a.NodeSelector = map[string]string{"kubernetes.io/os": "linux"}
				a.Tolerations = []Toleration{
					{Operator: "Exists"},
					{Key: "dedicated", Operator: "Equal", Value: "debug", Effect: "NoSchedule"},
					{Key: "dedicated", Value: "debug", Effect: "PreferNoSchedule"},
					{Key: "gpu", Operator: "Exists", Effect: "NoExecute"},
					{Key: "example.com/empty-value"},
				}
				a.Resources = Resources{
					Requests: map[string]string{"cpu": "1", "memory": "1Gi", "ephemeral-storage": "1G", "example.com/gpu": "1"},
					Limits:   map[string]string{"cpu": "1000m", "memory": "2Gi", "hugepages-2Mi": "4Mi"},
				}
			},
		},
		{name: "pull policy Always", set: func(c *Config) { c.Agent.PullPolicy = "Always" }},
		{name: "pull policy IfNotPresent", set: func(c *Config) { c.Agent.PullPolicy = "IfNotPresent" }},
		{
			name: "pull policy is case-sensitive",
			set:  func(c *Config) { c.Agent.PullPolicy = "never" },
			want: []string{`agent.pullPolicy: unknown pull policy "never": want Always, IfNotPresent or Never`},
		},
		{
			name: "zero start timeout",
			set:  func(c *Config) { c.Agent.StartTimeout = 0 },
			want: []string{`agent.startTimeout: must be more than 0, like "60s", got "0s"`},
		},
		{
			name: "negative start timeout",
			set:  func(c *Config) { c.Agent.StartTimeout = Duration(-time.Second) },
			want: []string{`agent.startTimeout: must be more than 0, like "60s", got "-1s"`},
		},
		{
			name: "image with whitespace",
			set:  func(c *Config) { c.Agent.Image = "doppel-agent:v1\n" },
			want: []string{`agent.image: invalid image "doppel-agent:v1\n": an image reference has no spaces`},
		},
		{
			name: "namespaces are DNS labels",
			set: func(c *Config) {
				c.Agent.Namespace = "Doppel"
				c.Kubernetes.Namespace = "shop.prod"
			},
			want: []string{
				`agent.namespace: invalid namespace "Doppel": a lowercase RFC 1123 label`,
				`kubernetes.namespace: invalid namespace "shop.prod": must not contain dots`,
			},
		},
		{
			name: "namespace too long",
			set:  func(c *Config) { c.Agent.Namespace = strings.Repeat("n", 64) },
			want: []string{`agent.namespace: invalid namespace "nnnn`},
		},
		{
			name: "label keys and values",
			set: func(c *Config) {
				c.Agent.Labels = map[string]string{
					"a b":              "x",
					"example.com/":     "x",
					"Example.com/name": "x",
					"ok":               "-x",
					"long":             strings.Repeat("v", 64),
				}
			},
			want: []string{
				`agent.labels.Example.com/name: invalid label key "Example.com/name": prefix part a lowercase RFC 1123 subdomain`,
				`agent.labels.a b: invalid label key "a b": name part must consist of alphanumeric characters`,
				`agent.labels.example.com/: invalid label key "example.com/": name part must be non-empty`,
				`agent.labels.long: invalid label value "vvvv`,
				`agent.labels.ok: invalid label value "-x": a valid label must be an empty string or consist of alphanumeric characters`,
			},
		},
		{
			name: "annotation keys",
			set:  func(c *Config) { c.Agent.Annotations = map[string]string{"": "x", "a/b/c": "x", "ok": "any\x00thing"} },
			want: []string{
				`agent.annotations.: invalid annotation key "": name part must be non-empty`,
				`agent.annotations.a/b/c: invalid annotation key "a/b/c": a valid label key must consist of`,
			},
		},
		{
			name: "node selector like labels",
			set: func(c *Config) {
				c.Agent.NodeSelector = map[string]string{"kubernetes.io/os": "linux/amd64", "a:b": "x"}
			},
			want: []string{
				`agent.nodeSelector.a:b: invalid node selector key "a:b": name part must consist of`,
				`agent.nodeSelector.kubernetes.io/os: invalid node selector value "linux/amd64": a valid label must be`,
			},
		},
		{
			name: "toleration operator and effect",
			set: func(c *Config) {
				c.Agent.Tolerations = []Toleration{
					{Key: "a", Operator: "exists"},
					{Key: "a", Operator: "Lt", Value: "1"},
					{Key: "a", Effect: "noschedule"},
				}
			},
			want: []string{
				`agent.tolerations[0].operator: unknown operator "exists": want Exists or Equal`,
				`agent.tolerations[1].operator: unknown operator "Lt": want Exists or Equal`,
				`agent.tolerations[2].effect: unknown effect "noschedule": want NoSchedule, PreferNoSchedule or NoExecute, or none to match all`,
			},
		},
		{
			name: "toleration Exists with a value",
			set:  func(c *Config) { c.Agent.Tolerations = []Toleration{{Key: "a", Operator: "Exists", Value: "v"}} },
			want: []string{`agent.tolerations[0].value: operator Exists matches any value: drop the value "v", or set operator Equal`},
		},
		{
			name: "toleration Equal needs a key",
			set: func(c *Config) {
				c.Agent.Tolerations = []Toleration{{Operator: "Equal", Value: "v"}, {Effect: "NoSchedule"}}
			},
			want: []string{
				`agent.tolerations[0]: no key: give the taint's key, or set operator Exists to tolerate every key`,
				`agent.tolerations[1]: no key: give the taint's key, or set operator Exists to tolerate every key`,
			},
		},
		{
			name: "toleration key and value",
			set:  func(c *Config) { c.Agent.Tolerations = []Toleration{{Key: "a=b", Value: "c d"}} },
			want: []string{
				`agent.tolerations[0].key: invalid taint key "a=b": name part must consist of`,
				`agent.tolerations[0].value: invalid taint value "c d": a valid label must be`,
			},
		},
		{
			name: "resource names",
			set: func(c *Config) {
				c.Agent.Resources.Requests = map[string]string{"cpus": "1", "Memory": "1Gi", "example.com/": "1", "pods": "1"}
			},
			want: []string{
				`agent.resources.requests.Memory: unknown resource "Memory": want cpu, memory, ephemeral-storage, hugepages-<size>, or an extended resource with a domain, like "example.com/gpu"`,
				`agent.resources.requests.cpus: unknown resource "cpus"`,
				`agent.resources.requests.example.com/: invalid resource name "example.com/": name part must be non-empty`,
				`agent.resources.requests.pods: unknown resource "pods"`,
			},
		},
		{
			name: "resource quantities",
			set: func(c *Config) {
				c.Agent.Resources.Requests = map[string]string{"cpu": "1 core", "memory": ""}
				c.Agent.Resources.Limits = map[string]string{"cpu": "-1", "memory": "1Mib"}
			},
			want: []string{
				`agent.resources.requests.cpu: invalid quantity "1 core": want an amount like "100m", "0.5" or "64Mi"`,
				`agent.resources.requests.memory: invalid quantity "": want an amount like "100m", "0.5" or "64Mi"`,
				`agent.resources.limits.cpu: quantity "-1" is negative`,
				`agent.resources.limits.memory: invalid quantity "1Mib"`,
			},
		},
		{
			name: "quantity exponents",
			set: func(c *Config) {
				c.Agent.Resources.Requests = map[string]string{"cpu": "1e-2000000000", "memory": "1e+100", "ephemeral-storage": "1e-99"}
				c.Agent.Resources.Limits = map[string]string{"cpu": "1e3", "memory": "1E", "ephemeral-storage": "1e99"}
			},
			want: []string{
				`agent.resources.requests.cpu: invalid quantity "1e-2000000000": the exponent is out of range`,
				`agent.resources.requests.memory: invalid quantity "1e+100": the exponent is out of range`,
			},
		},
		{
			name: "request above limit",
			set: func(c *Config) {
				c.Agent.Resources.Requests = map[string]string{"cpu": "1.5", "memory": "1Gi", "ephemeral-storage": "1G"}
				c.Agent.Resources.Limits = map[string]string{"cpu": "1500m", "memory": "1000Mi"}
			},
			want: []string{`agent.resources.requests.memory: request 1Gi is above the limit 1000Mi: lower it, or raise agent.resources.limits.memory`},
		},
		{
			name: "request above an invalid limit is not compared",
			set: func(c *Config) {
				c.Agent.Resources.Requests = map[string]string{"cpu": "2"}
				c.Agent.Resources.Limits = map[string]string{"cpu": "x"}
			},
			want: []string{`agent.resources.limits.cpu: invalid quantity "x"`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.set(c)
			var got []string
			if err := c.Validate(); err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if len(got) != len(tc.want) {
				t.Fatalf("Validate() = %q, want %d problems starting %q", got, len(tc.want), tc.want)
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tc.want[i]) {
					t.Errorf("problem %d = %q, want one starting %q", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestParseToleration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Toleration
		err  string // substring of the error; "" for none
	}{
		{in: "dedicated=debug:NoSchedule", want: Toleration{Key: "dedicated", Operator: "Equal", Value: "debug", Effect: "NoSchedule"}},
		{in: "dedicated=debug", want: Toleration{Key: "dedicated", Operator: "Equal", Value: "debug"}},
		{in: "dedicated=:NoExecute", want: Toleration{Key: "dedicated", Operator: "Equal", Effect: "NoExecute"}},
		{in: "node-role.kubernetes.io/control-plane:NoSchedule", want: Toleration{Key: "node-role.kubernetes.io/control-plane", Operator: "Exists", Effect: "NoSchedule"}},
		{in: "gpu", want: Toleration{Key: "gpu", Operator: "Exists"}},
		{in: "*", want: Toleration{Operator: "Exists"}},
		{in: "*:PreferNoSchedule", want: Toleration{Operator: "Exists", Effect: "PreferNoSchedule"}},
		{in: "", err: "no taint key: want KEY=VALUE:EFFECT, KEY=VALUE, KEY:EFFECT, KEY, or \"*\" for every taint"},
		{in: "=v:NoSchedule", err: "no taint key"},
		{in: ":NoSchedule", err: "no taint key"},
		{in: "gpu:", err: `no effect after ":"`},
		{in: "*=v", err: `"*" tolerates every taint and takes no value`},
		{in: "gpu:noschedule", err: `unknown effect "noschedule"`},
		{in: "gpu=a:b:NoSchedule", err: `unknown effect "b:NoSchedule"`},
		{in: "a b", err: `invalid taint key "a b"`},
		{in: "gpu=a b", err: `invalid taint value "a b"`},
	} {
		got, err := parseToleration(tc.in)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("parseToleration(%q) error = %v", tc.in, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("parseToleration(%q) error = %v, want one containing %q", tc.in, err, tc.err)
		case tc.err == "":
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("parseToleration(%q) (-want +got):\n%s", tc.in, diff)
			}
			// What the flag gives, the file accepts.
			if fes := checkToleration(got); len(fes) > 0 {
				t.Errorf("parseToleration(%q) = %+v, which checkToleration rejects: %v", tc.in, got, fes[0].err)
			}
		}
	}
}

func TestExpandHome(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	for in, want := range map[string]string{
		"~/.kube/dev":   filepath.Join(home, ".kube", "dev"),
		"~/":            home,
		"~":             home,
		"~other/config": "~other/config",
		"/etc/kube":     "/etc/kube",
		"kube/config":   "kube/config",
		"a/~/b":         "a/~/b",
		"":              "",
	} {
		if got := expandHome(in); got != want {
			t.Errorf("expandHome(%q) = %q, want %q", in, got, want)
		}
	}
	t.Setenv("HOME", "")
	if got := expandHome("~/x"); got != "~/x" {
		t.Errorf("without a home directory, expandHome(%q) = %q, want it unchanged", "~/x", got)
	}
}

// TestFlagsOverFile loads a file that sets every agent and kubernetes key, lays flags over it,
// and checks that each flag wins over the file and leaves the rest of the file as it was.
func TestFlagsOverFile(t *testing.T) {
	c, err := Load(filepath.Join("testdata", "valid", "full.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	f := BindFlags(fs)
	err = fs.Parse([]string{
		"--agent-image", "example.com/agent:dev",
		"--agent-pull-policy", "IfNotPresent",
		"--agent-namespace", "debug",
		"--agent-timeout", "5m",
		"--ephemeral=false",
		"--agent-privileged=false",
		"--agent-label", "team=payments",
		"--agent-annotation", "example.com/owner=carol",
		"--agent-node-selector", "kubernetes.io/os=windows",
		"--agent-toleration", "gpu",
		"--agent-cpu", "2",
		"--agent-memory", "1Gi",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Apply(c); err != nil {
		t.Fatal(err)
	}
	want := full()
	want.Agent.Image = "example.com/agent:dev"
	want.Agent.PullPolicy = "IfNotPresent"
	want.Agent.Namespace = "debug"
	want.Agent.StartTimeout = Duration(5 * time.Minute)
	want.Agent.Ephemeral = false
	want.Agent.Privileged = false
	want.Agent.Labels["team"] = "payments"
	want.Agent.Annotations["example.com/owner"] = "carol"
	want.Agent.NodeSelector["kubernetes.io/os"] = "windows"
	want.Agent.Tolerations = append(want.Agent.Tolerations, Toleration{Key: "gpu", Operator: "Exists"})
	want.Agent.Resources = Resources{
		Requests: map[string]string{"cpu": "2", "memory": "1Gi"},
		Limits:   map[string]string{"cpu": "2", "memory": "1Gi"},
	}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("file with flags (-want +got):\n%s", diff)
	}
}
