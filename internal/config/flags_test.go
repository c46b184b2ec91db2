package config

import (
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
			args: []string{"--no-outgoing", "--no-remote-dns", "--no-env", "--no-socket-passing"},
			want: func(c *Config) {
				c.Outgoing.Enabled = ptr(false)
				c.Outgoing.PassSockets = ptr(false)
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
		{args: []string{"--steal", "--mirror-capture"}, want: "--steal and --mirror-capture: a passive capture only copies connections and cannot steal them; give one of the two"},
		{
			args: []string{"--steal"},
			file: func() *Config { c := Default(); c.Incoming.Mirror = MirrorCapture; return c }(),
			want: "--steal: incoming.mirror is capture in the configuration file, which only copies connections; set it to redirect, or drop --steal",
		},
		{
			args: []string{"--mirror-capture"},
			file: func() *Config { c := Default(); c.Incoming.Mode = ModeSteal; return c }(),
			want: "--mirror-capture: incoming.mode is steal in the configuration file, and a passive capture cannot steal; set it to mirror, or drop --mirror-capture",
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
	for _, p := range []**bool{&out.Incoming.Enabled, &out.Outgoing.Enabled, &out.DNS.Enabled, &out.Env.Enabled} {
		if *p != nil {
			*p = ptr(**p)
		}
	}
	return &out
}
