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
	agentKube   agentKubeFlags
	noIncoming  bool
	steal       bool
	capture     bool
	tap         bool
	portMap     []string
	ignorePorts []string
	httpHeaders []string
	httpPath    string
	httpMethods []string
	noOutgoing  bool
	noPass      bool
	noJoin      bool
	local       filterFlags
	remote      filterFlags
	noRemoteDNS bool
	noEnv       bool
	envInclude  []string
	envExclude  []string
	env         []string
	fsMode      string
	fsRead      []string
	fsWrite     []string
	fsLocal     []string
	fsNotFound  []string
}

type filterFlags struct {
	cidrs, ports, hosts []string
}

// agentKubeFlags are the flags of the agent of a Kubernetes target.
type agentKubeFlags struct {
	image, pullPolicy, namespace string
	timeout                      time.Duration
	ephemeral, privileged        bool
	labels, annotations          []string
	nodeSelector, tolerations    []string
	cpu, memory                  string
}

// BindFlags registers the configuration flags on fs. It does not register
// -f/--config: the command that reads the file owns that flag.
func BindFlags(fs *pflag.FlagSet) *Flags {
	f := &Flags{fs: fs}
	fs.StringVarP(&f.target, "target", "t", "", `process or pod to run as: "pid:1234", "deployment/NAME", "pod/NAME/container/C", another KIND/NAME, or "none" (config: target)`)
	fs.StringVar(&f.logLevel, "log-level", "", "least severe level logged: debug, info, warn or error (default info; config: logLevel)")
	fs.DurationVar(&f.agentGrace, "agent-grace", 0, "how long the agent waits for a lost client before it exits (default 5s; config: agent.gracePeriod)")
	fs.StringVar(&f.agentListen, "agent-listen", "", `loopback address the agent listens on (default "127.0.0.1:0"; config: agent.listen)`)
	bindAgentKube(fs, &f.agentKube)
	fs.BoolVar(&f.noIncoming, "no-incoming", false, "receive none of the target's incoming traffic: the program's listening ports stay on this machine (config: incoming.enabled: false)")
	fs.BoolVar(&f.steal, "steal", false, "serve the target's incoming connections instead of copies of them; the target's own service no longer gets them (config: incoming.mode: steal)")
	fs.BoolVar(&f.capture, "mirror-capture", false, "mirror by passive packet capture: no rules written, no NET_ADMIN, but a stream that lost segments arrives marked incomplete (config: incoming.mirror: capture)")
	fs.BoolVar(&f.tap, "mirror-tap", false, "mirror with an eBPF tap at the target's interfaces: the agent is not in the connections' path, and a packet it cannot copy is dropped for the client to send again, so no copy is lost; needs Linux 6.6, CAP_BPF and NET_ADMIN (config: incoming.mirror: tap)")
	fs.StringSliceVar(&f.portMap, "port-map", nil, `when the program listens on LOCAL, give it the target's port TARGET, e.g. "8080:80"; repeatable (config: incoming.ports.map)`)
	fs.StringSliceVar(&f.ignorePorts, "ignore-port", nil, `keep the program's listens on this port or range on this machine, e.g. "9090" or "9000-9100"; repeatable (config: incoming.ports.ignore)`)
	fs.StringArrayVar(&f.httpHeaders, "http-header", nil, `with --steal, take only requests with a header matching "Name: regex", e.g. "X-Debug-User: alice"; repeatable, all must match (config: incoming.http.headers)`)
	fs.StringVar(&f.httpPath, "http-path", "", `with --steal, take only requests whose path and query match this regex, e.g. "^/api/" (config: incoming.http.path)`)
	fs.StringSliceVar(&f.httpMethods, "http-method", nil, `with --steal, take only requests with this method, e.g. "GET"; repeatable, any may match (config: incoming.http.methods)`)
	fs.BoolVar(&f.noOutgoing, "no-outgoing", false, "keep all outgoing connections on this machine (config: outgoing.enabled: false)")
	fs.BoolVar(&f.noPass, "no-socket-passing", false, "send TCP through doppel's proxy instead of handing the program sockets of the local target's network (config: outgoing.passSockets: false)")
	fs.BoolVar(&f.noJoin, "no-join-netns", false, "run the program in this machine's network namespace, not the local target's; doppel then hands it the target's sockets at socket(2) (config: outgoing.joinNetns: false)")
	bindFilter(fs, &f.local, "local", "stays on this machine")
	bindFilter(fs, &f.remote, "remote", "goes out from the target (wins over --local-*)")
	fs.BoolVar(&f.noRemoteDNS, "no-remote-dns", false, "resolve names on this machine, not as the target does (config: dns.enabled: false)")
	fs.BoolVar(&f.noEnv, "no-env", false, "do not take the target's environment variables (config: env.enabled: false)")
	fs.StringSliceVar(&f.envInclude, "env-include", nil, `take only the target's variables matching this glob, e.g. "DB_*"; repeatable (config: env.include)`)
	fs.StringSliceVar(&f.envExclude, "env-exclude", nil, "drop the target's variables matching this glob; repeatable (config: env.exclude)")
	fs.StringArrayVar(&f.env, "env", nil, "set KEY=VALUE in the program's environment, over everything; repeatable (config: env.override)")
	// The backquoted words name the flags' values in the help.
	fs.StringVar(&f.fsMode, "fs-mode", "", "`MODE` of the target's files: \"read\" (read there, written here), \"write\" (readWrite paths read and written there) or \"local\" (all files are this machine's) (default read; config: files.mode)")
	// Paths may hold commas, so these flags take one pattern each.
	fs.StringArrayVar(&f.fsRead, "fs-read", nil, "read paths matching `PATTERN` from the target and never write them there, e.g. \"/etc/app\" or \"/var/run/secrets/**\"; repeatable (config: files.readOnly)")
	fs.StringArrayVar(&f.fsWrite, "fs-write", nil, "read and write paths matching `PATTERN` on the target (with --fs-mode write; in read mode they are only read); repeatable (config: files.readWrite)")
	fs.StringArrayVar(&f.fsLocal, "fs-local", nil, "keep paths matching `PATTERN` on this machine, e.g. \"/home/**\"; repeatable (config: files.local)")
	fs.StringArrayVar(&f.fsNotFound, "fs-not-found", nil, "make paths matching `PATTERN` not exist for the program; repeatable (config: files.notFound)")
	return f
}

// bindAgentKube registers the flags of the agent of a Kubernetes target. It leaves out
// --kubeconfig, --context and --namespace: the command registers kubectl's own.
func bindAgentKube(fs *pflag.FlagSet, k *agentKubeFlags) {
	// The backquoted words name the flags' values in the help.
	fs.StringVar(&k.image, "agent-image", "", "Kubernetes agent's container `IMAGE` (default doppel's agent image of this version; config: agent.image)")
	fs.StringVar(&k.pullPolicy, "agent-pull-policy", "", "agent image's pull `POLICY`: Always, IfNotPresent or Never (default IfNotPresent; config: agent.pullPolicy)")
	fs.StringVar(&k.namespace, "agent-namespace", "", "`NAMESPACE` of the agent's Job and Secret (default the target's; config: agent.namespace)")
	fs.DurationVar(&k.timeout, "agent-timeout", 0, "how long the Kubernetes agent may take to be scheduled, pulled and running, as a `DURATION` like \"2m\" (default 60s; config: agent.startTimeout)")
	fs.BoolVar(&k.ephemeral, "ephemeral", false, "run the Kubernetes agent as an ephemeral container in the target's pod instead of in a Job's pod beside it (config: agent.ephemeral)")
	fs.BoolVar(&k.privileged, "agent-privileged", false, "run the Kubernetes agent as a privileged container instead of one with only the capabilities it needs (config: agent.privileged)")
	// Annotation values may hold commas, so these flags take one entry each.
	fs.StringArrayVar(&k.labels, "agent-label", nil, "add the label `KEY=VALUE` to the agent's Job, pod and Secret, over the file's of the same key; repeatable (config: agent.labels)")
	fs.StringArrayVar(&k.annotations, "agent-annotation", nil, "add the annotation `KEY=VALUE` to the agent's Job, pod and Secret, over the file's of the same key; repeatable (config: agent.annotations)")
	fs.StringArrayVar(&k.nodeSelector, "agent-node-selector", nil, "add `KEY=VALUE` to the agent pod's node selector, over the file's of the same key; repeatable (config: agent.nodeSelector)")
	fs.StringArrayVar(&k.tolerations, "agent-toleration", nil, "add a toleration to the agent's pod, replacing the default of tolerating every taint: `TOLERATION` is KEY=VALUE:EFFECT or KEY=VALUE (operator Equal), KEY:EFFECT or KEY (operator Exists), \"*\" (every taint) or \"*:EFFECT\"; without an effect it matches all; repeatable (config: agent.tolerations)")
	fs.StringVar(&k.cpu, "agent-cpu", "", "set the agent container's CPU request and limit to `QUANTITY`, like \"100m\" or \"0.5\" (config: agent.resources.requests.cpu and agent.resources.limits.cpu)")
	fs.StringVar(&k.memory, "agent-memory", "", "set the agent container's memory request and limit to `QUANTITY`, like \"64Mi\" (config: agent.resources.requests.memory and agent.resources.limits.memory)")
}

func bindFilter(fs *pflag.FlagSet, ff *filterFlags, side, does string) {
	fs.StringSliceVar(&ff.cidrs, side+"-cidr", nil, fmt.Sprintf(`traffic to this CIDR, e.g. "10.0.0.0/8", %s; repeatable (config: outgoing.%s.cidrs)`, does, side))
	fs.StringSliceVar(&ff.ports, side+"-port", nil, fmt.Sprintf(`traffic to this port or range, e.g. "5432" or "8000-8100", %s; repeatable (config: outgoing.%s.ports)`, does, side))
	fs.StringSliceVar(&ff.hosts, side+"-host", nil, fmt.Sprintf(`traffic to names matching this glob, e.g. "*.svc.cluster.local", %s; repeatable (config: outgoing.%s.hosts)`, does, side))
}

// Apply lays the flags that were set on the command line over c: single
// values replace the file's, list flags append to the file's lists, the
// KEY=VALUE entries of --env, --agent-label, --agent-annotation and
// --agent-node-selector replace the file's of the same key, and --agent-cpu
// and --agent-memory replace both the request and the limit of their
// resource. It then normalizes and validates c, naming the flag when a
// flag's value is at fault.
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
	errs = append(errs, f.applyAgentKube(c)...)
	errs = append(errs, f.applyIncoming(c)...)
	if changed("no-outgoing") {
		c.Outgoing.Enabled = ptr(!f.noOutgoing)
	}
	if changed("no-socket-passing") {
		c.Outgoing.PassSockets = ptr(!f.noPass)
	}
	if changed("no-join-netns") {
		c.Outgoing.JoinNetns = ptr(!f.noJoin)
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
	if changed("fs-mode") {
		check("fs-mode", f.fsMode, checkFilesMode(f.fsMode))
		c.Files.Mode = f.fsMode
	}
	for _, l := range []struct {
		flag     string
		patterns []string
		dst      *[]string
	}{
		{"fs-read", f.fsRead, &c.Files.ReadOnly},
		{"fs-write", f.fsWrite, &c.Files.ReadWrite},
		{"fs-local", f.fsLocal, &c.Files.Local},
		{"fs-not-found", f.fsNotFound, &c.Files.NotFound},
	} {
		for _, s := range l.patterns {
			check(l.flag, s, checkPathPattern(s))
		}
		*l.dst = append(*l.dst, l.patterns...)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	// The flags are fine on their own; the file may still hold a bad value
	// when c did not come from Load.
	c.normalize()
	return c.Validate()
}

// applyIncoming lays the incoming flags over c.Incoming. Besides each flag's
// own value, it reports the flags that contradict each other or the file, in
// terms of the flags, before Validate would report them in the file's terms.
func (f *Flags) applyIncoming(c *Config) []error {
	var errs []error
	check := func(flag, value string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("--%s %q: %w", flag, value, err))
		}
	}
	changed := f.fs.Changed
	in := &c.Incoming

	if changed("no-incoming") {
		in.Enabled = ptr(!f.noIncoming)
	}
	if changed("steal") {
		in.Mode = ModeMirror
		if f.steal {
			in.Mode = ModeSteal
		}
	}
	if changed("mirror-capture") || changed("mirror-tap") {
		in.Mirror = MirrorRedirect
		switch {
		case f.capture && f.tap:
			errs = append(errs, errors.New("--mirror-capture and --mirror-tap: a session mirrors one way; give one of the two"))
		case f.capture:
			in.Mirror = MirrorCapture
		case f.tap:
			in.Mirror = MirrorTap
		}
	}
	if in.Mode == ModeSteal && in.CopiesOnly() {
		flag := "--mirror-" + in.Mirror
		switch {
		case f.steal && (f.capture || f.tap):
			errs = append(errs, fmt.Errorf("--steal and %s: the %s only copies connections and cannot steal them; give one of the two", flag, in.Mirror))
		case f.steal:
			errs = append(errs, fmt.Errorf("--steal: incoming.mirror is %s in the configuration file, which only copies connections; set it to redirect, or drop --steal", in.Mirror))
		case f.capture || f.tap:
			errs = append(errs, fmt.Errorf("%s: incoming.mode is steal in the configuration file, and the %s cannot steal; set it to mirror, or drop %s", flag, in.Mirror, flag))
		}
	}

	for _, s := range f.portMap {
		check("port-map", s, checkPortMapping(s))
	}
	for _, s := range f.ignorePorts {
		check("ignore-port", s, checkPorts(s))
	}
	in.Ports.Map = append(in.Ports.Map, f.portMap...)
	in.Ports.Ignore = append(in.Ports.Ignore, f.ignorePorts...)
	// A flag's mapping may clash with the file's or another flag's.
	first := len(in.Ports.Map) - len(f.portMap)
	for i, err := range checkPortMap(in.Ports.Map) {
		if i >= first {
			check("port-map", in.Ports.Map[i], err)
		}
	}

	for _, s := range f.httpHeaders {
		check("http-header", s, checkHeaderFilter(s))
	}
	for _, s := range f.httpMethods {
		check("http-method", s, checkMethod(s))
	}
	if changed("http-path") {
		check("http-path", f.httpPath, checkPathFilter(f.httpPath))
		in.HTTP.Path = f.httpPath
	}
	in.HTTP.Headers = append(in.HTTP.Headers, f.httpHeaders...)
	in.HTTP.Methods = append(in.HTTP.Methods, f.httpMethods...)
	var filters []string
	if len(f.httpHeaders) > 0 {
		filters = append(filters, "--http-header")
	}
	if f.httpPath != "" {
		filters = append(filters, "--http-path")
	}
	if len(f.httpMethods) > 0 {
		filters = append(filters, "--http-method")
	}
	if len(filters) > 0 && in.Mode == ModeMirror {
		errs = append(errs, fmt.Errorf("%s: an HTTP filter picks the requests to steal, and incoming traffic is mirrored; add --steal (or incoming.mode: steal in the configuration file)",
			strings.Join(filters, ", ")))
	}
	return errs
}

// applyAgentKube lays the flags of a Kubernetes agent over c.Agent: single values replace the
// file's, --agent-toleration appends to the file's tolerations, and the KEY=VALUE flags replace
// the file's entry of the same key.
func (f *Flags) applyAgentKube(c *Config) []error {
	var errs []error
	check := func(flag, value string, err error) bool {
		if err != nil {
			errs = append(errs, fmt.Errorf("--%s %q: %w", flag, value, err))
		}
		return err == nil
	}
	changed := f.fs.Changed
	k, a := &f.agentKube, &c.Agent

	if changed("agent-image") {
		check("agent-image", k.image, checkImage(k.image))
		a.Image = k.image
	}
	if changed("agent-pull-policy") {
		check("agent-pull-policy", k.pullPolicy, checkPullPolicy(k.pullPolicy))
		a.PullPolicy = k.pullPolicy
	}
	if changed("agent-namespace") {
		check("agent-namespace", k.namespace, checkNamespace(k.namespace))
		a.Namespace = k.namespace
	}
	if changed("agent-timeout") {
		check("agent-timeout", k.timeout.String(), checkStartTimeout(Duration(k.timeout)))
		a.StartTimeout = Duration(k.timeout)
	}
	if changed("ephemeral") {
		a.Ephemeral = k.ephemeral
	}
	if changed("agent-privileged") {
		a.Privileged = k.privileged
	}
	for _, m := range []struct {
		flag    string
		entries []string
		dst     *map[string]string
		valid   func(key, value string) error
	}{
		{"agent-label", k.labels, &a.Labels, func(key, value string) error { return checkLabel("label", key, value) }},
		{"agent-annotation", k.annotations, &a.Annotations, func(key, _ string) error { return checkAnnotationKey(key) }},
		{"agent-node-selector", k.nodeSelector, &a.NodeSelector, func(key, value string) error { return checkLabel("node selector", key, value) }},
	} {
		for _, kv := range m.entries {
			key, value, ok := strings.Cut(kv, "=")
			if !ok {
				check(m.flag, kv, errors.New("want KEY=VALUE"))
				continue
			}
			if !check(m.flag, kv, m.valid(key, value)) {
				continue
			}
			if *m.dst == nil {
				*m.dst = map[string]string{}
			}
			(*m.dst)[key] = value
		}
	}
	for _, s := range k.tolerations {
		t, err := parseToleration(s)
		if check("agent-toleration", s, err) {
			a.Tolerations = append(a.Tolerations, t)
		}
	}
	for _, r := range []struct{ flag, name, quantity string }{
		{"agent-cpu", "cpu", k.cpu},
		{"agent-memory", "memory", k.memory},
	} {
		if !changed(r.flag) || !check(r.flag, r.quantity, checkQuantity(r.quantity)) {
			continue
		}
		for _, dst := range []*map[string]string{&a.Resources.Requests, &a.Resources.Limits} {
			if *dst == nil {
				*dst = map[string]string{}
			}
			(*dst)[r.name] = r.quantity
		}
	}
	return errs
}
