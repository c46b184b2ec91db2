package config

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"
)

func TestFlagsApply(t *testing.T) {
	for _, tc := range []struct {
		name string
		file *Config // nil means Default()
		args []string
		want func(c *Config)
	}{
		{name: "nothing set changes nothing", want: func(c *Config) {}},
		{
			name: "single values replace",
			args: []string{"-t", "pid:9", "--log-level", "warn", "--agent-grace", "1m", "--agent-listen", "[::1]:9000"},
			want: func(c *Config) {
				c.Target = "pid:9"
				c.LogLevel = "warn"
				c.Agent.GracePeriod = Duration(time.Minute)
				c.Agent.Listen = "[::1]:9000"
			},
		},
		{
			name: "switches",
			args: []string{"--no-outgoing", "--no-remote-dns", "--no-env", "--no-socket-passing", "--no-join-netns"},
			want: func(c *Config) {
				c.Outgoing.Enabled = ptr(false)
				c.Outgoing.PassSockets = ptr(false)
				c.Outgoing.JoinNetns = ptr(false)
				c.DNS.Enabled = ptr(false)
				c.Env.Enabled = ptr(false)
			},
		},
		{
			name: "switch set to false turns the feature on",
			file: func() *Config { c := Default(); c.Env.Enabled = ptr(false); return c }(),
			args: []string{"--no-env=false"},
			want: func(c *Config) { c.Env.Enabled = ptr(true) },
		},
		{
			name: "lists append to the file's",
			file: func() *Config {
				c := Default()
				c.Outgoing.Local.CIDRs = []string{"10.0.0.0/8"}
				c.Env.Exclude = []string{"SECRET_*"}
				return c
			}(),
			args: []string{
				"--local-cidr", "192.168.0.0/16", "--local-cidr=fd00::/8,172.16.0.0/12",
				"--local-port", "5432", "--local-host", "*.local",
				"--remote-cidr", "10.96.0.0/12", "--remote-port", "53,8000-8100", "--remote-host", "*.svc",
				"--env-include", "DB_*", "--env-exclude", "TOKEN",
			},
			want: func(c *Config) {
				c.Outgoing.Local = Filter{
					CIDRs: []string{"10.0.0.0/8", "192.168.0.0/16", "fd00::/8", "172.16.0.0/12"},
					Ports: []string{"5432"},
					Hosts: []string{"*.local"},
				}
				c.Outgoing.Remote = Filter{
					CIDRs: []string{"10.96.0.0/12"},
					Ports: []string{"53", "8000-8100"},
					Hosts: []string{"*.svc"},
				}
				c.Env.Include = []string{"DB_*"}
				c.Env.Exclude = []string{"SECRET_*", "TOKEN"}
			},
		},
		{
			name: "env overrides the file's override",
			file: func() *Config { c := Default(); c.Env.Override = map[string]string{"A": "file", "B": "file"}; return c }(),
			args: []string{"--env", "A=flag", "--env", "C=x=y,z", "--env", "E="},
			want: func(c *Config) { c.Env.Override = map[string]string{"A": "flag", "B": "file", "C": "x=y,z", "E": ""} },
		},
		{
			name: "incoming switches",
			args: []string{"--no-incoming", "--steal"},
			want: func(c *Config) {
				c.Incoming.Enabled = ptr(false)
				c.Incoming.Mode = ModeSteal
			},
		},
		{
			name: "mirror by capture",
			args: []string{"--mirror-capture"},
			want: func(c *Config) { c.Incoming.Mirror = MirrorCapture },
		},
		{
			name: "mirror by tap",
			args: []string{"--mirror-tap"},
			want: func(c *Config) { c.Incoming.Mirror = MirrorTap },
		},
		{
			name: "tap set to false over a file's tap",
			file: func() *Config { c := Default(); c.Incoming.Mirror = MirrorTap; return c }(),
			args: []string{"--mirror-tap=false"},
			want: func(c *Config) { c.Incoming.Mirror = MirrorRedirect },
		},
		{
			name: "steal and capture set to false",
			file: func() *Config {
				c := Default()
				c.Incoming.Mode = ModeSteal
				c.Incoming.Mirror = MirrorCapture
				c.Incoming.Enabled = ptr(false)
				return c
			}(),
			args: []string{"--steal=false", "--mirror-capture=false", "--no-incoming=false"},
			want: func(c *Config) {
				c.Incoming.Mode = ModeMirror
				c.Incoming.Mirror = MirrorRedirect
				c.Incoming.Enabled = ptr(true)
			},
		},
		{
			name: "incoming lists append to the file's",
			file: func() *Config {
				c := Default()
				c.Incoming.Ports.Map = []string{"8080:80"}
				c.Incoming.Ports.Ignore = []string{"22"}
				c.Incoming.HTTP.Headers = []string{"X-Team: orders"}
				c.Incoming.HTTP.Path = "^/old/"
				c.Incoming.HTTP.Methods = []string{"DELETE"}
				c.Incoming.Mode = ModeSteal
				return c
			}(),
			args: []string{
				"--port-map", "9090:90,7000:70", "--port-map=8080:80", "--ignore-port", "9000-9100",
				"--http-header", "X-Debug-User: ^(alice|bob)$, or {1,2}", "--http-header", "traceparent:",
				"--http-path", "^/api/", "--http-method", "get", "--http-method", "Post,put",
			},
			want: func(c *Config) {
				c.Incoming.Ports = IncomingPorts{
					Map:    []string{"8080:80", "9090:90", "7000:70", "8080:80"},
					Ignore: []string{"22", "9000-9100"},
				}
				c.Incoming.HTTP = HTTPFilter{
					Headers: []string{"X-Team: orders", "X-Debug-User: ^(alice|bob)$, or {1,2}", "traceparent:"},
					Path:    "^/api/",
					Methods: []string{"DELETE", "GET", "POST", "PUT"},
				}
			},
		},
		{
			name: "empty path clears the file's without needing steal",
			file: func() *Config { c := Default(); c.Incoming.Mode = ModeSteal; c.Incoming.HTTP.Path = "^/a"; return c }(),
			args: []string{"--http-path", "", "--steal=false"},
			want: func(c *Config) { c.Incoming.HTTP.Path = ""; c.Incoming.Mode = ModeMirror },
		},
		{
			name: "files mode",
			args: []string{"--fs-mode", "write"},
			want: func(c *Config) { c.Files.Mode = FilesModeWrite },
		},
		{
			name: "files lists append to the file's, one pattern a flag",
			file: func() *Config {
				c := Default()
				c.Files.Mode = FilesModeLocal
				c.Files.ReadOnly = []string{"/etc/app"}
				c.Files.NotFound = []string{"/etc/app/debug"}
				return c
			}(),
			args: []string{
				"--fs-read", "/srv/a,b", "--fs-read=/var/run/secrets/**",
				"--fs-write", "/data/", "--fs-local", "/home/**", "--fs-local", "/tmp",
				"--fs-not-found", "/proc/[0-9]*/environ", "--fs-mode=read",
			},
			want: func(c *Config) {
				c.Files = Files{
					Mode:      FilesModeRead,
					ReadOnly:  []string{"/etc/app", "/srv/a,b", "/var/run/secrets/**"},
					ReadWrite: []string{"/data/"},
					Local:     []string{"/home/**", "/tmp"},
					NotFound:  []string{"/etc/app/debug", "/proc/[0-9]*/environ"},
				}
			},
		},
		{
			name: "Kubernetes agent single values replace",
			file: func() *Config {
				c := Default()
				c.Agent.Image = "file/agent:1"
				c.Agent.PullPolicy = "Always"
				c.Agent.Namespace = "file"
				return c
			}(),
			args: []string{
				"--agent-image", "registry.example.com/doppel-agent:v2", "--agent-pull-policy", "Never",
				"--agent-namespace", "doppel", "--agent-timeout", "2m30s", "--ephemeral", "--agent-privileged",
			},
			want: func(c *Config) {
				c.Agent.Image = "registry.example.com/doppel-agent:v2"
				c.Agent.PullPolicy = "Never"
				c.Agent.Namespace = "doppel"
				c.Agent.StartTimeout = Duration(150 * time.Second)
				c.Agent.Ephemeral = true
				c.Agent.Privileged = true
			},
		},
		{
			name: "empty Kubernetes agent values bring back the defaults",
			file: func() *Config {
				c := Default()
				c.Agent.Image = "file/agent:1"
				c.Agent.PullPolicy = "Always"
				c.Agent.Namespace = "file"
				c.Agent.Ephemeral = true
				c.Agent.Privileged = true
				return c
			}(),
			args: []string{"--agent-image=", "--agent-pull-policy=", "--agent-namespace=", "--ephemeral=false", "--agent-privileged=false"},
			want: func(c *Config) {
				c.Agent.Image = ""
				c.Agent.PullPolicy = ""
				c.Agent.Namespace = ""
				c.Agent.Ephemeral = false
				c.Agent.Privileged = false
			},
		},
		{
			name: "KEY=VALUE flags add to the file's and replace its same keys",
			file: func() *Config {
				c := Default()
				c.Agent.Labels = map[string]string{"team": "file", "keep": "file"}
				c.Agent.Annotations = map[string]string{"note": "file"}
				return c
			}(),
			args: []string{
				"--agent-label", "team=flag", "--agent-label", "app.kubernetes.io/name=doppel", "--agent-label", "empty=",
				"--agent-annotation", "note=a=b, c", "--agent-annotation", "example.com/x=",
				"--agent-node-selector", "kubernetes.io/os=linux", "--agent-node-selector", "kubernetes.io/arch=arm64",
			},
			want: func(c *Config) {
				c.Agent.Labels = map[string]string{"team": "flag", "keep": "file", "app.kubernetes.io/name": "doppel", "empty": ""}
				c.Agent.Annotations = map[string]string{"note": "a=b, c", "example.com/x": ""}
				c.Agent.NodeSelector = map[string]string{"kubernetes.io/os": "linux", "kubernetes.io/arch": "arm64"}
			},
		},
		{
			name: "tolerations append to the file's",
			file: func() *Config {
				c := Default()
				c.Agent.Tolerations = []Toleration{{Key: "file", Operator: "Exists"}}
				return c
			}(),
			args: []string{
				"--agent-toleration", "dedicated=debug:NoSchedule", "--agent-toleration", "dedicated=debug",
				"--agent-toleration", "gpu:NoExecute", "--agent-toleration", "gpu",
				"--agent-toleration", "*:PreferNoSchedule", "--agent-toleration", "*",
			},
			want: func(c *Config) {
				c.Agent.Tolerations = []Toleration{
					{Key: "file", Operator: "Exists"},
					{Key: "dedicated", Operator: "Equal", Value: "debug", Effect: "NoSchedule"},
					{Key: "dedicated", Operator: "Equal", Value: "debug"},
					{Key: "gpu", Operator: "Exists", Effect: "NoExecute"},
					{Key: "gpu", Operator: "Exists"},
					{Operator: "Exists", Effect: "PreferNoSchedule"},
					{Operator: "Exists"},
				}
			},
		},
		{
			name: "cpu and memory set request and limit, over the file's",
			file: func() *Config {
				c := Default()
				c.Agent.Resources = Resources{
					Requests: map[string]string{"cpu": "100m", "ephemeral-storage": "1Gi"},
					Limits:   map[string]string{"cpu": "200m", "memory": "1Gi"},
				}
				return c
			}(),
			args: []string{"--agent-cpu", "0.5", "--agent-memory", "64Mi"},
			want: func(c *Config) {
				c.Agent.Resources = Resources{
					Requests: map[string]string{"cpu": "0.5", "memory": "64Mi", "ephemeral-storage": "1Gi"},
					Limits:   map[string]string{"cpu": "0.5", "memory": "64Mi"},
				}
			},
		},
		{
			name: "cpu alone",
			args: []string{"--agent-cpu=250m"},
			want: func(c *Config) {
				c.Agent.Resources = Resources{Requests: map[string]string{"cpu": "250m"}, Limits: map[string]string{"cpu": "250m"}}
			},
		},
		{
			name: "non-loopback listen allowed by the file",
			file: func() *Config { c := Default(); c.Agent.AllowNonLoopback = true; return c }(),
			args: []string{"--agent-listen", ":7000"},
			want: func(c *Config) { c.Agent.Listen = ":7000" },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			f := BindFlags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			got, want := tc.file, tc.file
			if got == nil {
				got, want = Default(), Default()
			} else {
				want = clone(t, tc.file)
			}
			tc.want(want)
			if err := f.Apply(got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Apply(%q) (-want +got):\n%s", tc.args, diff)
			}
		})
	}
}

func TestFlagsApplyErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		file *Config
		want string // substring of the error
	}{
		{args: []string{"--local-cidr", "10.0.0/8"}, want: `--local-cidr "10.0.0/8": invalid CIDR`},
		{args: []string{"--remote-cidr", "x"}, want: `--remote-cidr "x": invalid CIDR`},
		{args: []string{"--local-port", "0"}, want: `--local-port "0": invalid port`},
		{args: []string{"--remote-port", "9-1"}, want: `--remote-port "9-1": invalid port range`},
		{args: []string{"--remote-host", "[a"}, want: `--remote-host "[a": invalid host pattern`},
		{args: []string{"--log-level", "loud"}, want: `--log-level "loud": unknown log level`},
		{args: []string{"--agent-listen", "0.0.0.0:1"}, want: `--agent-listen "0.0.0.0:1": listen address "0.0.0.0:1" is not a loopback address`},
		{args: []string{"--agent-grace", "-1s"}, want: `--agent-grace "-1s": must not be negative`},
		{args: []string{"--env", "NOEQUALS"}, want: `--env "NOEQUALS": want KEY=VALUE`},
		{args: []string{"--env", "=v"}, want: `--env "=v": empty variable name`},
		{args: []string{"--env-include", "A["}, want: `--env-include "A[": invalid variable name pattern`},
		{args: []string{"--mirror-capture", "--mirror-tap"}, want: "--mirror-capture and --mirror-tap: a session mirrors one way; give one of the two"},
		{args: []string{"--steal", "--mirror-tap"}, want: "--steal and --mirror-tap: the tap only copies connections and cannot steal them; give one of the two"},
		{
			args: []string{"--mirror-tap"},
			file: func() *Config { c := Default(); c.Incoming.Mode = ModeSteal; return c }(),
			want: "--mirror-tap: incoming.mode is steal in the configuration file, and the tap cannot steal; set it to mirror, or drop --mirror-tap",
		},
		{args: []string{"--steal", "--mirror-capture"}, want: "--steal and --mirror-capture: the capture only copies connections and cannot steal them; give one of the two"},
		{
			args: []string{"--steal"},
			file: func() *Config { c := Default(); c.Incoming.Mirror = MirrorCapture; return c }(),
			want: "--steal: incoming.mirror is capture in the configuration file, which only copies connections; set it to redirect, or drop --steal",
		},
		{
			args: []string{"--mirror-capture"},
			file: func() *Config { c := Default(); c.Incoming.Mode = ModeSteal; return c }(),
			want: "--mirror-capture: incoming.mode is steal in the configuration file, and the capture cannot steal; set it to mirror, or drop --mirror-capture",
		},
		{args: []string{"--http-path", "^/api/"}, want: "--http-path: an HTTP filter picks the requests to steal, and incoming traffic is mirrored; add --steal (or incoming.mode: steal in the configuration file)"},
		{args: []string{"--http-method", "GET", "--http-header", "A: b"}, want: "--http-header, --http-method: an HTTP filter picks the requests to steal"},
		{
			args: []string{"--http-method", "GET", "--steal=false"},
			file: func() *Config { c := Default(); c.Incoming.Mode = ModeSteal; return c }(),
			want: "--http-method: an HTTP filter picks the requests to steal",
		},
		{args: []string{"--port-map", "8080"}, want: `--port-map "8080": invalid port mapping "8080": want LOCAL:TARGET like "8080:80"`},
		{args: []string{"--port-map", "8080:80,8080:81"}, want: `--port-map "8080:81": local port 8080 is mapped twice, by "8080:80" and "8080:81": keep one`},
		{
			args: []string{"--port-map", "9090:80"},
			file: func() *Config { c := Default(); c.Incoming.Ports.Map = []string{"8080:80"}; return c }(),
			want: `--port-map "9090:80": target port 80 is mapped to by both "8080:80" and "9090:80"`,
		},
		{args: []string{"--ignore-port", "0"}, want: `--ignore-port "0": invalid port "0"`},
		{args: []string{"--steal", "--http-header", "X User: a"}, want: `--http-header "X User: a": invalid header name "X User"`},
		{args: []string{"--steal", "--http-path", "("}, want: `--http-path "(": invalid path regular expression "("`},
		{args: []string{"--steal", "--http-method", "G T"}, want: `--http-method "G T": invalid HTTP method "G T"`},
		{args: []string{"--fs-mode", "remote"}, want: `--fs-mode "remote": unknown mode "remote": want read, write or local`},
		{args: []string{"--fs-read", "etc/app"}, want: `--fs-read "etc/app": path pattern "etc/app" is not absolute: want a path that starts with "/", like "/etc/app"`},
		{args: []string{"--fs-write", "/data/../x"}, want: `--fs-write "/data/../x": path pattern "/data/../x" has a ".." element: write the clean path "/x"`},
		{args: []string{"--fs-local", "/a/[b"}, want: `--fs-local "/a/[b": invalid path pattern "/a/[b": element "[b": syntax error in pattern`},
		{args: []string{"--fs-not-found", ""}, want: `--fs-not-found "": empty path pattern`},
		{args: []string{"--agent-image", "doppel agent"}, want: `--agent-image "doppel agent": invalid image "doppel agent": an image reference has no spaces`},
		{args: []string{"--agent-pull-policy", "sometimes"}, want: `--agent-pull-policy "sometimes": unknown pull policy "sometimes": want Always, IfNotPresent or Never`},
		{args: []string{"--agent-namespace", "Doppel"}, want: `--agent-namespace "Doppel": invalid namespace "Doppel": a lowercase RFC 1123 label`},
		{args: []string{"--agent-timeout", "0s"}, want: `--agent-timeout "0s": must be more than 0, like "60s", got "0s"`},
		{args: []string{"--agent-timeout", "-1m"}, want: `--agent-timeout "-1m0s": must be more than 0`},
		{args: []string{"--agent-label", "team"}, want: `--agent-label "team": want KEY=VALUE`},
		{args: []string{"--agent-label", "=x"}, want: `--agent-label "=x": invalid label key "": name part must be non-empty`},
		{args: []string{"--agent-label", "a=b,c=d"}, want: `--agent-label "a=b,c=d": invalid label value "b,c=d"`},
		{args: []string{"--agent-annotation", "note"}, want: `--agent-annotation "note": want KEY=VALUE`},
		{args: []string{"--agent-annotation", "a b=c"}, want: `--agent-annotation "a b=c": invalid annotation key "a b"`},
		{args: []string{"--agent-node-selector", "os"}, want: `--agent-node-selector "os": want KEY=VALUE`},
		{args: []string{"--agent-node-selector", "kubernetes.io/os=linux!"}, want: `--agent-node-selector "kubernetes.io/os=linux!": invalid node selector value "linux!"`},
		{args: []string{"--agent-toleration", "gpu:"}, want: `--agent-toleration "gpu:": no effect after ":"`},
		{args: []string{"--agent-toleration", "gpu:Never"}, want: `--agent-toleration "gpu:Never": unknown effect "Never"`},
		{args: []string{"--agent-toleration", "=v"}, want: `--agent-toleration "=v": no taint key`},
		{args: []string{"--agent-toleration", "*=v"}, want: `--agent-toleration "*=v": "*" tolerates every taint and takes no value`},
		{args: []string{"--agent-cpu", "1 core"}, want: `--agent-cpu "1 core": invalid quantity "1 core": want an amount like "100m", "0.5" or "64Mi"`},
		{args: []string{"--agent-cpu", ""}, want: `--agent-cpu "": invalid quantity ""`},
		{args: []string{"--agent-memory", "-1Gi"}, want: `--agent-memory "-1Gi": quantity "-1Gi" is negative`},
		{
			// Both flags are fine; the file's request of the other resource is not.
			args: []string{"--agent-cpu", "1"},
			file: func() *Config {
				c := Default()
				c.Agent.Resources = Resources{Requests: map[string]string{"memory": "2Gi"}, Limits: map[string]string{"memory": "1Gi"}}
				return c
			}(),
			want: `agent.resources.requests.memory: request 2Gi is above the limit 1Gi`,
		},
		{
			file: func() *Config { c := Default(); c.Files.ReadOnly = []string{"x"}; return c }(),
			want: `files.readOnly[0]: path pattern "x" is not absolute`,
		},
		{
			// The file's own contradictions come out in the file's terms.
			file: func() *Config { c := Default(); c.Incoming.HTTP.Path = "x"; return c }(),
			want: "incoming.http: an HTTP filter picks the requests to steal, and incoming.mode is mirror: add incoming.mode: steal (or the flag --steal)",
		},
		{
			// A Config not from Load may still hold bad values.
			file: func() *Config { c := Default(); c.Outgoing.Remote.Ports = []string{"x"}; return c }(),
			want: `outgoing.remote.ports[0]: invalid port "x"`,
		},
	} {
		fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
		f := BindFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		c := tc.file
		if c == nil {
			c = Default()
		}
		err := f.Apply(c)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Apply(%q) error = %v, want one containing %q", tc.args, err, tc.want)
		}
	}
}

func TestBindFlagsNoConfigFlag(t *testing.T) {
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	BindFlags(fs)
	if fs.Lookup("config") != nil || fs.ShorthandLookup("f") != nil {
		t.Errorf("BindFlags registered -f/--config, which belongs to the command")
	}
}

// TestBindFlagsNoKubectlFlags checks that the Kubernetes flags leave kubectl's own to the
// command, which registers them (genericclioptions.ConfigFlags) and would clash with ours.
func TestBindFlagsNoKubectlFlags(t *testing.T) {
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	BindFlags(fs)
	// The flags of genericclioptions.NewConfigFlags(true).AddFlags in k8s.io/cli-runtime v0.37.
	for _, name := range []string{
		"as", "as-group", "as-uid", "as-user-extra", "cache-dir", "certificate-authority",
		"client-certificate", "client-key", "cluster", "context", "disable-compression",
		"insecure-skip-tls-verify", "kubeconfig", "namespace", "proxy-url", "request-timeout",
		"server", "tls-server-name", "token", "user",
	} {
		if fs.Lookup(name) != nil {
			t.Errorf("BindFlags registered --%s, which kubectl's flags own", name)
		}
	}
	for _, short := range []string{"n", "s"} {
		if fs.ShorthandLookup(short) != nil {
			t.Errorf("BindFlags registered -%s, which kubectl's flags own", short)
		}
	}
}

// TestFlagUsages checks that every flag's help names the configuration key it overrides.
func TestFlagUsages(t *testing.T) {
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	BindFlags(fs)
	fs.VisitAll(func(f *pflag.Flag) {
		if !strings.Contains(f.Usage, "config: ") {
			t.Errorf("--%s: usage %q does not name its configuration key", f.Name, f.Usage)
		}
	})
}

// clone copies the parts of c that the tests above set, so that Apply on c
// cannot change the copy.
func clone(t *testing.T, c *Config) *Config {
	t.Helper()
	out := *c
	out.Outgoing.Local.CIDRs = append([]string(nil), c.Outgoing.Local.CIDRs...)
	out.Env.Exclude = append([]string(nil), c.Env.Exclude...)
	if c.Env.Override != nil {
		out.Env.Override = map[string]string{}
		for k, v := range c.Env.Override {
			out.Env.Override[k] = v
		}
	}
	out.Incoming.Ports.Map = append([]string(nil), c.Incoming.Ports.Map...)
	out.Incoming.Ports.Ignore = append([]string(nil), c.Incoming.Ports.Ignore...)
	out.Incoming.HTTP.Headers = append([]string(nil), c.Incoming.HTTP.Headers...)
	out.Incoming.HTTP.Methods = append([]string(nil), c.Incoming.HTTP.Methods...)
	out.Files.ReadOnly = append([]string(nil), c.Files.ReadOnly...)
	out.Files.ReadWrite = append([]string(nil), c.Files.ReadWrite...)
	out.Files.Local = append([]string(nil), c.Files.Local...)
	out.Files.NotFound = append([]string(nil), c.Files.NotFound...)
	out.Agent.Labels = maps.Clone(c.Agent.Labels)
	out.Agent.Annotations = maps.Clone(c.Agent.Annotations)
	out.Agent.NodeSelector = maps.Clone(c.Agent.NodeSelector)
	out.Agent.Tolerations = slices.Clone(c.Agent.Tolerations)
	out.Agent.Resources.Requests = maps.Clone(c.Agent.Resources.Requests)
	out.Agent.Resources.Limits = maps.Clone(c.Agent.Resources.Limits)
	for _, p := range []**bool{&out.Incoming.Enabled, &out.Outgoing.Enabled, &out.DNS.Enabled, &out.Env.Enabled} {
		if *p != nil {
			*p = ptr(**p)
		}
	}
	return &out
}
