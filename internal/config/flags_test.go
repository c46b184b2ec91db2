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
	for _, p := range []**bool{&out.Outgoing.Enabled, &out.DNS.Enabled, &out.Env.Enabled} {
		if *p != nil {
			*p = ptr(**p)
		}
	}
	return &out
}
