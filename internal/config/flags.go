package config

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// Flags are the `doppel exec` flags that override the configuration file.
// Create them with BindFlags, parse the flag set, then call Apply.
type Flags struct {
	fs *pflag.FlagSet

	target      string
	logLevel    string
	agentGrace  time.Duration
	agentListen string
	noOutgoing  bool
	noPass      bool
	local       filterFlags
	remote      filterFlags
	noRemoteDNS bool
	noEnv       bool
	envInclude  []string
	envExclude  []string
	env         []string
}

type filterFlags struct {
	cidrs, ports, hosts []string
}

// BindFlags registers the configuration flags on fs. It does not register
// -f/--config: the command that reads the file owns that flag.
func BindFlags(fs *pflag.FlagSet) *Flags {
	f := &Flags{fs: fs}
	fs.StringVarP(&f.target, "target", "t", "", `process or pod to run as, e.g. "pid:1234" (config: target)`)
	fs.StringVar(&f.logLevel, "log-level", "", "least severe level logged: debug, info, warn or error (default info; config: logLevel)")
	fs.DurationVar(&f.agentGrace, "agent-grace", 0, "how long the agent waits for a lost client before it exits (default 5s; config: agent.gracePeriod)")
	fs.StringVar(&f.agentListen, "agent-listen", "", `loopback address the agent listens on (default "127.0.0.1:0"; config: agent.listen)`)
	fs.BoolVar(&f.noOutgoing, "no-outgoing", false, "keep all outgoing connections on this machine (config: outgoing.enabled: false)")
	fs.BoolVar(&f.noPass, "no-socket-passing", false, "send TCP through doppel's proxy instead of handing the program sockets of the local target's network (config: outgoing.passSockets: false)")
	bindFilter(fs, &f.local, "local", "stays on this machine")
	bindFilter(fs, &f.remote, "remote", "goes out from the target (wins over --local-*)")
	fs.BoolVar(&f.noRemoteDNS, "no-remote-dns", false, "resolve names on this machine, not as the target does (config: dns.enabled: false)")
	fs.BoolVar(&f.noEnv, "no-env", false, "do not take the target's environment variables (config: env.enabled: false)")
	fs.StringSliceVar(&f.envInclude, "env-include", nil, `take only the target's variables matching this glob, e.g. "DB_*"; repeatable (config: env.include)`)
	fs.StringSliceVar(&f.envExclude, "env-exclude", nil, "drop the target's variables matching this glob; repeatable (config: env.exclude)")
	fs.StringArrayVar(&f.env, "env", nil, "set KEY=VALUE in the program's environment, over everything; repeatable (config: env.override)")
	return f
}

func bindFilter(fs *pflag.FlagSet, ff *filterFlags, side, does string) {
	fs.StringSliceVar(&ff.cidrs, side+"-cidr", nil, fmt.Sprintf(`traffic to this CIDR, e.g. "10.0.0.0/8", %s; repeatable (config: outgoing.%s.cidrs)`, does, side))
	fs.StringSliceVar(&ff.ports, side+"-port", nil, fmt.Sprintf(`traffic to this port or range, e.g. "5432" or "8000-8100", %s; repeatable (config: outgoing.%s.ports)`, does, side))
	fs.StringSliceVar(&ff.hosts, side+"-host", nil, fmt.Sprintf(`traffic to names matching this glob, e.g. "*.svc.cluster.local", %s; repeatable (config: outgoing.%s.hosts)`, does, side))
}

// Apply lays the flags that were set on the command line over c: single
// values replace the file's, list flags append to the file's lists, --env
// entries replace the file's override of the same name. It then validates
// c, naming the flag when a flag's value is at fault.
func (f *Flags) Apply(c *Config) error {
	var errs []error
	check := func(flag, value string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("--%s %q: %w", flag, value, err))
		}
	}
	changed := f.fs.Changed

	if changed("target") {
		c.Target = f.target
	}
	if changed("log-level") {
		check("log-level", f.logLevel, checkLogLevel(f.logLevel))
		c.LogLevel = f.logLevel
	}
	if changed("agent-grace") {
		if f.agentGrace < 0 {
			check("agent-grace", f.agentGrace.String(), errors.New("must not be negative"))
		}
		c.Agent.GracePeriod = Duration(f.agentGrace)
	}
	if changed("agent-listen") {
		check("agent-listen", f.agentListen, checkListen(f.agentListen, c.Agent.AllowNonLoopback))
		c.Agent.Listen = f.agentListen
	}
	if changed("no-outgoing") {
		c.Outgoing.Enabled = ptr(!f.noOutgoing)
	}
	if changed("no-socket-passing") {
		c.Outgoing.PassSockets = ptr(!f.noPass)
	}
	for _, side := range []struct {
		name string
		ff   *filterFlags
		dst  *Filter
	}{{"local", &f.local, &c.Outgoing.Local}, {"remote", &f.remote, &c.Outgoing.Remote}} {
		for _, s := range side.ff.cidrs {
			check(side.name+"-cidr", s, checkCIDR(s))
		}
		for _, s := range side.ff.ports {
			check(side.name+"-port", s, checkPorts(s))
		}
		for _, s := range side.ff.hosts {
			check(side.name+"-host", s, checkHost(s))
		}
		side.dst.CIDRs = append(side.dst.CIDRs, side.ff.cidrs...)
		side.dst.Ports = append(side.dst.Ports, side.ff.ports...)
		side.dst.Hosts = append(side.dst.Hosts, side.ff.hosts...)
	}
	if changed("no-remote-dns") {
		c.DNS.Enabled = ptr(!f.noRemoteDNS)
	}
	if changed("no-env") {
		c.Env.Enabled = ptr(!f.noEnv)
	}
	for _, s := range f.envInclude {
		check("env-include", s, checkEnvPattern(s))
	}
	for _, s := range f.envExclude {
		check("env-exclude", s, checkEnvPattern(s))
	}
	c.Env.Include = append(c.Env.Include, f.envInclude...)
	c.Env.Exclude = append(c.Env.Exclude, f.envExclude...)
	for _, kv := range f.env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			check("env", kv, errors.New("want KEY=VALUE"))
			continue
		}
		if err := checkOverride(k, v); err != nil {
			check("env", kv, err)
			continue
		}
		if c.Env.Override == nil {
			c.Env.Override = map[string]string{}
		}
		c.Env.Override[k] = v
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	// The flags are fine on their own; the file may still hold a bad value
	// when c did not come from Load.
	return c.Validate()
}
