package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"gopkg.in/yaml.v3"
)

var update = flag.Bool("update", false, "rewrite the .golden files of testdata/invalid")

// full is what testdata/valid/full.yaml and full.json hold.
func full() *Config {
	return &Config{
		Schema:   "../../schema.json",
		Target:   "pid:1234",
		LogLevel: "debug",
		Kubernetes: Kubernetes{
			Kubeconfig: "/etc/doppel/kubeconfig",
			Context:    "staging",
			Namespace:  "shop",
		},
		Agent: AgentConfig{
			GracePeriod:  Duration(90 * time.Second),
			Listen:       "[::1]:7000",
			Image:        "registry.example.com/doppel-agent:v1.2.0",
			PullPolicy:   "Always",
			Namespace:    "doppel",
			Ephemeral:    true,
			Privileged:   true,
			StartTimeout: Duration(2 * time.Minute),
			Labels:       map[string]string{"team": "orders", "app.kubernetes.io/part-of": "shop"},
			Annotations:  map[string]string{"example.com/owner": "alice, bob"},
			NodeSelector: map[string]string{"kubernetes.io/os": "linux"},
			Tolerations: []Toleration{
				{Key: "dedicated", Operator: "Equal", Value: "debug", Effect: "NoSchedule"},
				{Operator: "Exists"},
			},
			Resources: Resources{
				Requests: map[string]string{"cpu": "50m", "memory": "32Mi"},
				Limits:   map[string]string{"cpu": "1", "memory": "128Mi"},
			},
		},
		Incoming: Incoming{
			Enabled: ptr(false),
			Mode:    ModeSteal,
			Mirror:  MirrorRedirect,
			Ports: IncomingPorts{
				Map:    []string{"8080:80", "9443:443"},
				Ignore: []string{"9090", "9000-9010"},
			},
			HTTP: HTTPFilter{
				Headers: []string{"X-Debug-User: ^alice$", "traceparent:"},
				Path:    "^/api/",
				Methods: []string{"GET", "POST"},
			},
		},
		Outgoing: Outgoing{
			Enabled: ptr(true),
			Local: Filter{
				CIDRs: []string{"192.168.0.0/16", "10.1.2.3"},
				Ports: []string{"5432", "8000-8100"},
				Hosts: []string{"*.local", "localhost.localdomain."},
			},
			Remote: Filter{
				CIDRs: []string{"10.96.0.0/12", "fd00::/8"},
				Ports: []string{"53"},
				Hosts: []string{"*.svc.cluster.local"},
			},
			PassSockets: ptr(false),
			JoinNetns:   ptr(false),
		},
		DNS: DNS{Enabled: ptr(false)},
		Env: Env{
			Enabled:  ptr(true),
			Include:  []string{"DB_*", "AWS_*", "PATH"},
			Exclude:  []string{"AWS_SECRET_ACCESS_KEY"},
			Override: map[string]string{"DEBUG": "1", "GREETING": "hello, world"},
		},
		Files: Files{
			Mode:      FilesModeWrite,
			ReadOnly:  []string{"/etc/app", "/var/run/secrets/**"},
			ReadWrite: []string{"/data/", "/srv/*/cache/**"},
			Local:     []string{"/home/**", "/etc/app/local.conf"},
			NotFound:  []string{"/etc/app/debug.flag", "/proc/[0-9]*/environ"},
		},
	}
}

func TestLoadValid(t *testing.T) {
	minimal := Default()
	minimal.Target = "pid:1"

	anchors := Default()
	anchors.Outgoing.Local = Filter{CIDRs: []string{"10.0.0.0/8"}, Hosts: []string{"*.cluster.local"}}
	anchors.Outgoing.Remote = Filter{CIDRs: []string{"10.96.0.0/12"}, Hosts: []string{"*.cluster.local"}}
	anchors.Env.Include = []string{"*.cluster.local"}
	anchors.Env.Exclude = []string{}

	// kubernetes.kubeconfig starts with "~/".
	home := t.TempDir()
	t.Setenv("HOME", home)
	kube := Default()
	kube.Kubernetes = Kubernetes{Kubeconfig: filepath.Join(home, ".kube", "dev"), Context: "kind-dev"}
	kube.Agent.Image = "localhost:5001/doppel-agent@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	kube.Agent.PullPolicy = "Never"
	kube.Agent.StartTimeout = Duration(90 * time.Second)
	kube.Agent.Labels = map[string]string{"version": "1", "empty": ""}
	kube.Agent.Annotations = map[string]string{"Example.COM/Note": "any text,\non several lines\n"}
	kube.Agent.Tolerations = []Toleration{
		{Key: "node-role.kubernetes.io/control-plane", Operator: "Exists", Effect: "NoSchedule"},
		{Key: "gpu", Value: "true"},
	}
	kube.Agent.Resources = Resources{
		Requests: map[string]string{"cpu": "0.25", "memory": "64Mi", "ephemeral-storage": "1Gi"},
		Limits:   map[string]string{"cpu": "1", "memory": "64Mi", "hugepages-2Mi": "16Mi", "example.com/gpu": "1"},
	}

	for file, want := range map[string]*Config{
		"full.yaml":       full(),
		"full.json":       full(),
		"minimal.yaml":    minimal,
		"anchors.yaml":    anchors,
		"kubernetes.yaml": kube,
		"kubernetes.json": kube,
	} {
		t.Run(file, func(t *testing.T) {
			got, err := Load(filepath.Join("testdata", "valid", file))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Load (-want +got):\n%s", diff)
			}
		})
	}
}

// TestCheckInvalid compares the problems of each file in testdata/invalid
// with its .golden file, one problem a line. Run with -update to rewrite them.
func TestCheckInvalid(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "invalid", "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		if strings.HasSuffix(file, ".golden") {
			continue
		}
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var got strings.Builder
			for _, p := range Check(file, data) {
				got.WriteString(p.String() + "\n")
			}
			golden := file + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got.String()), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got.Len() == 0 {
				t.Errorf("no problems found")
			}
			if diff := cmp.Diff(string(want), got.String()); diff != "" {
				t.Errorf("problems (-%s +got):\n%s", golden, diff)
			}
			// Load reports the same problems as an error.
			_, err = Load(file)
			if err == nil || err.Error()+"\n" != got.String() {
				t.Errorf("Load error = %v, want the problems above", err)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []Problem
	}{
		{name: "empty", in: ""},
		{name: "comments only", in: "# nothing yet\n"},
		{name: "nulls keep defaults", in: "agent:\noutgoing:\n  enabled: ~\n"},
		{name: "trailing empty document", in: "target: a\n---\n"},
		{name: "ports as numbers", in: "outgoing: {local: {ports: [80, 443]}}\n"},
		{name: "listen localhost", in: "agent: {listen: 'localhost:80'}\n"},
		{name: "non-loopback allowed", in: "agent: {listen: ':7000', allowNonLoopback: true}\n"},
		{
			name: "typo suggestion",
			in:   "outgoin: {}\n",
			want: []Problem{{File: "f", Line: 1, Column: 1, Msg: `unknown key "outgoin" (did you mean "outgoing"?)`}},
		},
		{
			name: "case typo suggestion",
			in:   "agent:\n  graceperiod: 5s\n",
			want: []Problem{{File: "f", Line: 2, Column: 3, Msg: `unknown key "graceperiod" in agent (did you mean "gracePeriod"?)`}},
		},
		{
			name: "no suggestion when far",
			in:   "zzzzzzzz: 1\n",
			want: []Problem{{File: "f", Line: 1, Column: 1, Msg: `unknown key "zzzzzzzz"`}},
		},
		{
			name: "bad duration",
			in:   "agent:\n  gracePeriod: five\n",
			want: []Problem{{File: "f", Line: 2, Column: 16, Msg: `agent.gracePeriod: want a duration like "5s", got "five"`}},
		},
		{
			name: "several problems, in file order",
			in:   "logLevel: loud\noutgoing:\n  local:\n    cidrs: [bad]\n",
			want: []Problem{
				{File: "f", Line: 1, Column: 11, Msg: `logLevel: unknown log level "loud": want one of debug, info, warn, error`},
				{File: "f", Line: 4, Column: 13, Msg: `outgoing.local.cidrs[0]: invalid CIDR "bad": want a prefix like "10.0.0.0/8" or an address like "10.0.0.1"`},
			},
		},
		{
			name: "value reached through an alias is reported once, at the anchor",
			in:   "outgoing:\n  local: {cidrs: &c [bad]}\n  remote: {cidrs: *c}\n",
			want: []Problem{
				{File: "f", Line: 2, Column: 22, Msg: `outgoing.local.cidrs[0]: invalid CIDR "bad": want a prefix like "10.0.0.0/8" or an address like "10.0.0.1"`},
				{File: "f", Line: 2, Column: 22, Msg: `outgoing.remote.cidrs[0]: invalid CIDR "bad": want a prefix like "10.0.0.0/8" or an address like "10.0.0.1"`},
			},
		},
		{
			name: "merge into itself",
			in:   "agent: &a\n  <<: *a\n",
			want: []Problem{{File: "f", Line: 1, Column: 8, Msg: "agent: merges with << nested more than 16 deep"}},
		},
		{
			name: "tagged bool that is not one",
			in:   "dns: {enabled: !!bool yes}\n",
			want: []Problem{{File: "f", Line: 1, Column: 16, Msg: `dns.enabled: want true or false, got "yes"`}},
		},
		{
			name: "YAML 1.1 boolean is a string",
			in:   "env:\n  enabled: on\n",
			want: []Problem{{File: "f", Line: 2, Column: 12, Msg: `env.enabled: want true or false, got "on"`}},
		},
		{
			name: "type problem is not reported again as a value problem",
			in:   "outgoing: {remote: {ports: [{a: 1}]}}\n",
			want: []Problem{{File: "f", Line: 1, Column: 29, Msg: `outgoing.remote.ports[0]: want a string, got a mapping`}},
		},
		{
			name: "key that is not a name",
			in:   "env:\n  override:\n    [A]: x\n",
			want: []Problem{{File: "f", Line: 3, Column: 5, Msg: `env.override: want a name as key, got a list`}},
		},
		{
			name: "second document",
			in:   "target: a\n---\ntarget: b\n",
			want: []Problem{{File: "f", Line: 3, Column: 1, Msg: "a second YAML document: a configuration file holds one"}},
		},
		{
			name: "local tag",
			in:   "agent:\n listen: !000\n",
			want: []Problem{{File: "f", Line: 2, Column: 10, Msg: `agent.listen: unsupported tag !000`}},
		},
		{
			name: "empty string does not mean the default",
			in:   "logLevel: ''\nagent: {listen: ''}\n",
			want: []Problem{
				{File: "f", Line: 1, Column: 11, Msg: `logLevel: unknown log level "": want one of debug, info, warn, error`},
				{File: "f", Line: 2, Column: 17, Msg: `agent.listen: invalid listen address "": want host:port like "127.0.0.1:0"`},
			},
		},
		{
			name: "zero grace period is a value",
			in:   "agent: {gracePeriod: 0s}\n",
		},
		{name: "port mapping unquoted", in: "incoming:\n  ports:\n    map:\n      - 8080:80\n    ignore: [9090]\n"},
		{name: "HTTP filter with steal", in: "incoming: {mode: steal, http: {headers: ['X-User: alice'], methods: [get]}}\n"},
		{name: "same port mapping twice", in: "incoming: {ports: {map: ['80:8080', 80:8080]}}\n"},
		{
			name: "incoming typo",
			in:   "incoming:\n  mod: steal\n",
			want: []Problem{{File: "f", Line: 2, Column: 3, Msg: `unknown key "mod" in incoming (did you mean "mode"?)`}},
		},
		{
			name: "incoming nested typos",
			in:   "incoming: {ports: {maps: []}, htpp: {}}\n",
			want: []Problem{
				{File: "f", Line: 1, Column: 20, Msg: `unknown key "maps" in incoming.ports (did you mean "map"?)`},
				{File: "f", Line: 1, Column: 31, Msg: `unknown key "htpp" in incoming (did you mean "http"?)`},
			},
		},
		{
			name: "HTTP filter without steal",
			in:   "incoming:\n  http:\n    path: ^/api/\n",
			want: []Problem{{File: "f", Line: 3, Column: 5, Msg: `incoming.http: an HTTP filter picks the requests to steal, and incoming.mode is mirror: add incoming.mode: steal (or the flag --steal)`}},
		},
		{
			name: "capture cannot steal",
			in:   "incoming: {mode: steal, mirror: capture}\n",
			want: []Problem{{File: "f", Line: 1, Column: 33, Msg: `incoming.mirror: "capture" only copies connections and cannot steal them: set incoming.mode to mirror or incoming.mirror to redirect`}},
		},
		{
			name: "tap cannot steal",
			in:   "incoming: {mode: steal, mirror: tap}\n",
			want: []Problem{{File: "f", Line: 1, Column: 33, Msg: `incoming.mirror: "tap" only copies connections and cannot steal them: set incoming.mode to mirror or incoming.mirror to redirect`}},
		},
		{
			name: "mode of the wrong type silences the checks that read it",
			in:   "incoming: {mode: [steal], http: {path: x}}\n",
			want: []Problem{{File: "f", Line: 1, Column: 18, Msg: `incoming.mode: want a string, got a list`}},
		},
		{
			name: "empty mode does not mean the default",
			in:   "incoming: {mode: ''}\n",
			want: []Problem{{File: "f", Line: 1, Column: 18, Msg: `incoming.mode: unknown mode "": want mirror or steal`}},
		},
		{name: "files patterns", in: "files: {mode: local, readOnly: [/, /etc/app/, '/**/*.yaml'], notFound: ['/a b/c,d']}\n"},
		{
			name: "files typo",
			in:   "files:\n  readonly: [/etc]\n",
			want: []Problem{{File: "f", Line: 2, Column: 3, Msg: `unknown key "readonly" in files (did you mean "readOnly"?)`}},
		},
		{
			name: "files pattern problems, each at its entry",
			in:   "files:\n  local:\n    - /tmp\n    - tmp\n  notFound: [/a/.., '/[']\n",
			want: []Problem{
				{File: "f", Line: 4, Column: 7, Msg: `files.local[1]: path pattern "tmp" is not absolute: want a path that starts with "/", like "/tmp"`},
				{File: "f", Line: 5, Column: 14, Msg: `files.notFound[0]: path pattern "/a/.." has a ".." element: write the clean path "/"`},
				{File: "f", Line: 5, Column: 21, Msg: `files.notFound[1]: invalid path pattern "/[": element "[": syntax error in pattern`},
			},
		},
		{
			name: "empty files mode does not mean the default",
			in:   "files: {mode: ''}\n",
			want: []Problem{{File: "f", Line: 1, Column: 15, Msg: `files.mode: unknown mode "": want read, write or local`}},
		},
		{name: "empty Kubernetes strings keep the defaults", in: "kubernetes: {namespace: ''}\nagent: {image: '', pullPolicy: '', namespace: ''}\n"},
		{name: "quantities as numbers", in: "agent: {resources: {requests: {cpu: 0.5, memory: 1e6}, limits: {cpu: 1}}}\n"},
		{
			name: "Kubernetes agent typo",
			in:   "agent:\n  imagePullPolicy: Always\n",
			want: []Problem{{File: "f", Line: 2, Column: 3, Msg: `unknown key "imagePullPolicy" in agent (did you mean "pullPolicy"?)`}},
		},
		{
			name: "kubernetes typo",
			in:   "kubernetes:\n  kubeConfig: ~/.kube/config\n  contxt: dev\n",
			want: []Problem{
				{File: "f", Line: 2, Column: 3, Msg: `unknown key "kubeConfig" in kubernetes (did you mean "kubeconfig"?)`},
				{File: "f", Line: 3, Column: 3, Msg: `unknown key "contxt" in kubernetes (did you mean "context"?)`},
			},
		},
		{
			name: "toleration and resources typos",
			in:   "agent:\n  tolerations:\n    - {key: a, efect: NoSchedule}\n  resources:\n    limit: {cpu: 1}\n",
			want: []Problem{
				{File: "f", Line: 3, Column: 16, Msg: `unknown key "efect" in agent.tolerations[0] (did you mean "effect"?)`},
				{File: "f", Line: 5, Column: 5, Msg: `unknown key "limit" in agent.resources (did you mean "limits"?)`},
			},
		},
		{
			name: "zero start timeout",
			in:   "agent:\n  startTimeout: 0s\n",
			want: []Problem{{File: "f", Line: 2, Column: 17, Msg: `agent.startTimeout: must be more than 0, like "60s", got "0s"`}},
		},
		{
			name: "toleration without a key is reported at the toleration",
			in:   "agent:\n  tolerations:\n    - value: x\n      effect: NoSchedule\n",
			want: []Problem{{File: "f", Line: 3, Column: 7, Msg: `agent.tolerations[0]: no key: give the taint's key, or set operator Exists to tolerate every key`}},
		},
		{
			name: "operator of the wrong type silences the checks that read it",
			in:   "agent: {tolerations: [{operator: [Exists], value: x}]}\n",
			want: []Problem{{File: "f", Line: 1, Column: 34, Msg: `agent.tolerations[0].operator: want a string, got a list`}},
		},
		{
			name: "request above limit is reported at the request",
			in:   "agent:\n  resources:\n    requests: {memory: 2Gi}\n    limits: {memory: 1Gi}\n",
			want: []Problem{{File: "f", Line: 3, Column: 24, Msg: `agent.resources.requests.memory: request 2Gi is above the limit 1Gi: lower it, or raise agent.resources.limits.memory`}},
		},
		{
			name: "limit of the wrong type is not compared with the request",
			in:   "agent: {resources: {requests: {cpu: 2}, limits: {cpu: [1]}}}\n",
			want: []Problem{{File: "f", Line: 1, Column: 55, Msg: `agent.resources.limits.cpu: want a string, got a list`}},
		},
		{
			name: "syntax error without a line",
			in:   "target: \"\\q\"\n",
			want: []Problem{{File: "f", Msg: "syntax error: found unknown escape character"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Check("f", []byte(tc.in))
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Check(%q) (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

func TestProblemString(t *testing.T) {
	for _, tc := range []struct {
		p    Problem
		want string
	}{
		{Problem{File: "c.yaml", Line: 3, Column: 7, Msg: "m"}, "c.yaml:3:7: m"},
		{Problem{File: "c.yaml", Line: 3, Msg: "m"}, "c.yaml:3: m"},
		{Problem{File: "c.yaml", Msg: "m"}, "c.yaml: m"},
	} {
		if got := tc.p.String(); got != tc.want {
			t.Errorf("%#v.String() = %q, want %q", tc.p, got, tc.want)
		}
	}
}

func TestLoadMissing(t *testing.T) {
	name := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := Load(name)
	if err == nil || !strings.Contains(err.Error(), name) {
		t.Errorf("Load(%q) error = %v, want one naming the file", name, err)
	}
}

func TestLoadDefault(t *testing.T) {
	write := func(t *testing.T, dir, name, content string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("none", func(t *testing.T) {
		c, path, err := LoadDefault(t.TempDir())
		if err != nil || path != "" {
			t.Fatalf("LoadDefault = %q, %v; want no path and no error", path, err)
		}
		if diff := cmp.Diff(Default(), c); diff != "" {
			t.Errorf("config (-want +got):\n%s", diff)
		}
	})
	for _, name := range []string{DefaultFileYAML, DefaultFileJSON} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, dir, name, `{"target": "pid:7"}`)
			c, path, err := LoadDefault(dir)
			if err != nil {
				t.Fatal(err)
			}
			if want := filepath.Join(dir, name); path != want {
				t.Errorf("path = %q, want %q", path, want)
			}
			if c.Target != "pid:7" {
				t.Errorf("Target = %q, want pid:7", c.Target)
			}
		})
	}
	t.Run("both", func(t *testing.T) {
		dir := t.TempDir()
		write(t, dir, DefaultFileYAML, "")
		write(t, dir, DefaultFileJSON, "{}")
		if _, _, err := LoadDefault(dir); err == nil || !strings.Contains(err.Error(), "remove one") {
			t.Errorf("LoadDefault error = %v, want one about both files", err)
		}
	})
	t.Run("invalid", func(t *testing.T) {
		dir := t.TempDir()
		write(t, dir, DefaultFileYAML, "target: [\n")
		_, path, err := LoadDefault(dir)
		if _, ok := err.(*ProblemsError); !ok || path == "" {
			t.Errorf("LoadDefault = %q, %v; want the path and a *ProblemsError", path, err)
		}
	})
}

// FuzzCheck feeds Check arbitrary files. It must not panic, and a file it
// accepts must decode to a Config that survives a round trip through YAML.
func FuzzCheck(f *testing.F) {
	for _, dir := range []string{"valid", "invalid"} {
		files, err := filepath.Glob(filepath.Join("testdata", dir, "*"))
		if err != nil {
			f.Fatal(err)
		}
		for _, file := range files {
			if strings.HasSuffix(file, ".golden") {
				continue
			}
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	for _, s := range []string{
		"outgoing:\n  local: &l {cidrs: [10.0.0.0/8], ports: [80]}\n  remote:\n    <<: [*l, {hosts: [a]}]\n    ports: [81]\n",
		"env: {override: {\"<<\": x, \"~\": \"~\", \"1\": 2, A: \"\\u0000\"}}\n",
		"dns: {enabled: !!bool \"yes\"}\nagent: {gracePeriod: 9223372036s}\n",
		"a: &a [*a]\n",
		"incoming: {mode: steal, ports: {map: [1:2, '2:1'], ignore: [1-3]}, http: {headers: ['a: b', 'c:'], path: x, methods: [get]}}\n",
		"files: {mode: write, readOnly: [/, '/a/**/b'], readWrite: ['/x/[a-z]?'], local: [/tmp/], notFound: ['/p/\\*']}\n",
		"agent: {resources: {requests: {cpu: 1e-2000000000, memory: 1e300}, limits: {cpu: 1E2000000000, memory: 1e-9}}}\n",
		"kubernetes: {kubeconfig: ~/k, namespace: a}\nagent: {startTimeout: 1ns, labels: {a/b: ''}, tolerations: [{operator: Exists}, {key: k, value: v}], resources: {requests: {cpu: 1e3}, limits: {cpu: 1001}}}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, problems := parse("f", data)
		for _, p := range problems {
			if p.Msg == "" {
				t.Errorf("problem without a message: %#v", p)
			}
		}
		if len(problems) > 0 {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Check found no problem but Validate says: %v", err)
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("marshal accepted config: %v", err)
		}
		c2, problems := parse("f", out)
		if len(problems) > 0 {
			t.Fatalf("re-reading the marshalled config:\n%s\nproblems: %v", out, problems)
		}
		if diff := cmp.Diff(c, c2, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("round trip through\n%s\n(-first +second):\n%s", out, diff)
		}
	})
}
