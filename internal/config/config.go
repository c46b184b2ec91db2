package config

import (
	"fmt"
	"time"
)

// Config is the whole configuration of a doppel session: the file's content
// with the flags of `doppel exec` laid over it.
type Config struct {
	// Schema is the address of the JSON Schema the file follows, for editors; doppel ignores it.
	Schema string `json:"$schema,omitempty" yaml:"$schema,omitempty"`
	// Target is the process or pod whose network and environment the program borrows, e.g.
	// "pid:1234" or "deployment/orders".
	Target string `json:"target,omitempty" yaml:"target,omitempty"`
	// LogLevel is the least severe level logged: debug, info, warn or error. Default info.
	LogLevel string `json:"logLevel,omitempty" yaml:"logLevel,omitempty"`
	// Kubernetes says how to reach the cluster of a Kubernetes target.
	Kubernetes Kubernetes `json:"kubernetes,omitempty" yaml:"kubernetes,omitempty"`
	// Agent configures the short-lived agent started beside the target.
	Agent AgentConfig `json:"agent" yaml:"agent"`
	// Incoming configures the target's incoming traffic that the program receives.
	Incoming Incoming `json:"incoming" yaml:"incoming"`
	// Outgoing chooses which of the program's outgoing connections leave from the target's network.
	Outgoing Outgoing `json:"outgoing" yaml:"outgoing"`
	// DNS configures name resolution as the target does it.
	DNS DNS `json:"dns" yaml:"dns"`
	// Env configures the environment variables the program gets from the target.
	Env Env `json:"env" yaml:"env"`
	// Files chooses which of the program's file paths are the target's.
	Files Files `json:"files" yaml:"files"`
}

// AgentConfig configures the agent that runs beside the target for the length of one session.
type AgentConfig struct {
	// GracePeriod is how long the agent waits for a lost client to come back before it exits
	// and removes its rules, as a duration like "5s". Default 5s.
	GracePeriod Duration `json:"gracePeriod" yaml:"gracePeriod"`
	// Listen is the address the agent listens on inside the target's network, as host:port.
	// Default "127.0.0.1:0" (any free port). It must be a loopback address unless
	// allowNonLoopback is true.
	Listen string `json:"listen,omitempty" yaml:"listen,omitempty"`
	// AllowNonLoopback lets listen be a non-loopback address, which makes the agent reachable
	// from the target's network, guarded only by the session's secret. Default false.
	AllowNonLoopback bool `json:"allowNonLoopback,omitempty" yaml:"allowNonLoopback,omitempty"`

	// The settings below apply to Kubernetes targets only.

	// Image is the agent's container image, like "registry.example.com/doppel-agent:v1.2.0".
	// Default doppel's own agent image, of the same version as this doppel. The flag
	// --agent-image sets it.
	Image string `json:"image,omitempty" yaml:"image,omitempty"`
	// PullPolicy is the agent image's pull policy: Always, IfNotPresent or Never. Default
	// IfNotPresent; the flag --agent-pull-policy sets it.
	PullPolicy string `json:"pullPolicy,omitempty" yaml:"pullPolicy,omitempty" jsonschema:"enum=Always,enum=IfNotPresent,enum=Never"`
	// Namespace is the namespace of the agent's Job and Secret, a DNS label like "doppel".
	// Default the target's namespace; an ephemeral agent is always in the target's pod. The
	// flag --agent-namespace sets it.
	Namespace string `json:"namespace,omitempty" yaml:"namespace,omitempty"`
	// Ephemeral runs the agent as an ephemeral container in the target's pod instead of in a
	// Job's pod beside it: no hostPID and no added capabilities unless incoming traffic needs
	// them, but the container stays in the pod's spec (stopped) after the session. Default
	// false; the flag --ephemeral sets it.
	Ephemeral bool `json:"ephemeral,omitempty" yaml:"ephemeral,omitempty"`
	// Privileged runs the agent as a privileged container instead of one holding only the
	// capabilities the session's features need. Default false; the flag --agent-privileged
	// sets it.
	Privileged bool `json:"privileged,omitempty" yaml:"privileged,omitempty"`
	// StartTimeout is how long the agent may take to be scheduled, pulled and running, as a
	// positive duration like "60s". Default 60s; the flag --agent-timeout sets it.
	StartTimeout Duration `json:"startTimeout,omitempty" yaml:"startTimeout,omitempty"`
	// Labels are added to the agent's Job, pod and Secret, like {team: orders}. Keys are
	// Kubernetes label keys ("name" or "prefix/name"), values Kubernetes label values (63
	// characters at most). The flag --agent-label adds one.
	Labels map[string]string `json:"labels,omitempty" yaml:"labels,omitempty"`
	// Annotations are added to the agent's Job, pod and Secret. Keys are Kubernetes
	// annotation keys ("name" or "prefix/name"); values may be any string. The flag
	// --agent-annotation adds one.
	Annotations map[string]string `json:"annotations,omitempty" yaml:"annotations,omitempty"`
	// NodeSelector is added to the agent's pod, with keys and values as in labels; the pod
	// runs on the target's node all the same. The flag --agent-node-selector adds one.
	NodeSelector map[string]string `json:"nodeSelector,omitempty" yaml:"nodeSelector,omitempty"`
	// Tolerations are the agent pod's tolerations. Default every taint is tolerated, as the
	// agent must run on the target's node whatever its taints; a list given here replaces
	// that default. The flag --agent-toleration adds one.
	Tolerations []Toleration `json:"tolerations,omitempty" yaml:"tolerations,omitempty"`
	// Resources are the agent container's requests and limits, like {requests: {cpu: 50m}}.
	// Default none. The flags --agent-cpu and --agent-memory set both the request and the
	// limit of one resource.
	Resources Resources `json:"resources,omitempty" yaml:"resources,omitempty"`
}

// Toleration is a Kubernetes pod toleration: it lets the agent's pod run on a node with a
// taint it matches.
type Toleration struct {
	// Key is the taint key it matches, a Kubernetes label key like
	// "node-role.kubernetes.io/control-plane". Empty matches every key, and then operator
	// must be Exists.
	Key string `json:"key,omitempty" yaml:"key,omitempty"`
	// Operator is Exists (any value of the key matches) or Equal (only value matches).
	// Default Equal.
	Operator string `json:"operator,omitempty" yaml:"operator,omitempty" jsonschema:"enum=Exists,enum=Equal"`
	// Value is the taint value matched with operator Equal, a Kubernetes label value; it
	// must be empty with operator Exists.
	Value string `json:"value,omitempty" yaml:"value,omitempty"`
	// Effect is the taint effect matched: NoSchedule, PreferNoSchedule or NoExecute; empty
	// matches all.
	Effect string `json:"effect,omitempty" yaml:"effect,omitempty" jsonschema:"enum=,enum=NoSchedule,enum=PreferNoSchedule,enum=NoExecute"`
}

// Resources are a container's requests and limits by resource name: "cpu", "memory",
// "ephemeral-storage", "hugepages-<size>" or an extended resource like "example.com/gpu".
// Amounts are Kubernetes quantities like "100m", "0.5" or "64Mi".
type Resources struct {
	// Requests are the amounts the scheduler reserves for the agent, like {cpu: 50m, memory:
	// 32Mi}.
	Requests map[string]string `json:"requests,omitempty" yaml:"requests,omitempty"`
	// Limits are the most the agent may use, like {memory: 128Mi}; a request must not be
	// above the limit of the same resource.
	Limits map[string]string `json:"limits,omitempty" yaml:"limits,omitempty"`
}

// Kubernetes says how to reach the cluster of a Kubernetes target; kubectl's flags
// (--kubeconfig, --context, --namespace) win over it.
type Kubernetes struct {
	// Kubeconfig is the path of the kubeconfig file; a leading "~/" stands for the home
	// directory, and a relative path is relative to the working directory. Default
	// $KUBECONFIG, then ~/.kube/config, then the in-cluster configuration.
	Kubeconfig string `json:"kubeconfig,omitempty" yaml:"kubeconfig,omitempty"`
	// Context is the name of the kubeconfig context to use. Default its current context.
	Context string `json:"context,omitempty" yaml:"context,omitempty"`
	// Namespace is the target's namespace, a DNS label like "shop". Default the context's
	// namespace, then "default".
	Namespace string `json:"namespace,omitempty" yaml:"namespace,omitempty"`
}

// Incoming configures which of the target's incoming connections the program receives, and how.
type Incoming struct {
	// Enabled subscribes the program to the target's incoming traffic: when the program listens
	// on a port, it receives the connections that reach that port of the target (or the port
	// ports.map names). Default true; the flag --no-incoming sets it to false.
	Enabled *bool `json:"enabled,omitempty" yaml:"enabled,omitempty"`
	// Mode is "mirror" or "steal". In mirror mode the program gets a copy of each connection
	// while the target's own service keeps answering the real clients, and the program's answers
	// are discarded. In steal mode the program serves the connections, or only the HTTP requests
	// that http matches, and the target's service does not see them. Default mirror; the flag
	// --steal sets steal.
	Mode string `json:"mode,omitempty" yaml:"mode,omitempty" jsonschema:"enum=mirror,enum=steal,default=mirror"`
	// Mirror is how mirror mode copies connections: "redirect" passes them through the agent
	// with nftables rules in the target's network namespace; "capture" copies packets passively
	// with a packet socket, writes no rules and needs no NET_ADMIN, but delivers a stream that
	// lost segments marked incomplete; "tap" copies packets with an eBPF program at the
	// target's interfaces, outside the connections' path, and drops a packet it cannot copy so
	// that the client sends it again: no copy is lost (Linux 6.6, CAP_BPF and NET_ADMIN).
	// Capture and tap cannot steal, so they need mode mirror. Default redirect; the flags
	// --mirror-capture and --mirror-tap set capture and tap.
	Mirror string `json:"mirror,omitempty" yaml:"mirror,omitempty" jsonschema:"enum=redirect,enum=capture,enum=tap,default=redirect"`
	// Ports chooses which of the target's ports each port the program listens on receives.
	Ports IncomingPorts `json:"ports" yaml:"ports"`
	// HTTP steals only the HTTP requests it matches and leaves the others to the target's own
	// service. It needs mode steal.
	HTTP HTTPFilter `json:"http" yaml:"http"`
}

// IncomingPorts chooses which of the target's ports each port the program listens on receives.
// A port that map does not name receives the target's port of the same number, unless map sends
// another local port there; then it stays on this machine.
type IncomingPorts struct {
	// Map lists "LOCAL:TARGET" pairs like "8080:80": when the program listens on port 8080 it
	// receives the target's port 80. A local port may map to one target port only, and a target
	// port may receive one local port only. The flag --port-map adds one.
	Map []string `json:"map,omitempty" yaml:"map,omitempty" jsonschema:"pattern=^[0-9]+:[0-9]+$"`
	// Ignore lists ports like "9090" or inclusive ranges like "9000-9100" on which the program's
	// listens stay on this machine; ignore wins over map. The flag --ignore-port adds one.
	Ignore []string `json:"ignore,omitempty" yaml:"ignore,omitempty"`
}

// HTTPFilter matches HTTP requests. A request matches when every entry of headers, the path
// and any one of methods match it; a part left empty matches every request.
type HTTPFilter struct {
	// Headers lists "Name: regex" entries like "X-Debug-User: alice": the request must have the
	// header, its name compared without regard to case, with a value the regular expression
	// (Go RE2 syntax) matches; the expression matches anywhere in the value unless anchored with
	// ^ and $, and an empty one matches any value. The flag --http-header adds one.
	Headers []string `json:"headers,omitempty" yaml:"headers,omitempty"`
	// Path is a regular expression (Go RE2 syntax) that must match the request's path and query,
	// like "/api/orders?id=7", anywhere unless anchored with ^ and $. The flag --http-path sets it.
	Path string `json:"path,omitempty" yaml:"path,omitempty"`
	// Methods lists HTTP methods like "GET" or "POST", written in any case: the request's method
	// must be one of them. The flag --http-method adds one.
	Methods []string `json:"methods,omitempty" yaml:"methods,omitempty"`
}

// Outgoing chooses which outgoing connections of the program leave from the target's network
// and which stay on this machine.
type Outgoing struct {
	// Enabled sends outgoing connections out from the target's network. Default true; the flag
	// --no-outgoing sets it to false.
	Enabled *bool `json:"enabled,omitempty" yaml:"enabled,omitempty"`
	// Local lists destinations that stay on this machine. Loopback and unspecified addresses
	// always stay local unless remote lists them.
	Local Filter `json:"local" yaml:"local"`
	// Remote lists destinations that always leave from the target's network; remote wins over
	// local.
	Remote Filter `json:"remote" yaml:"remote"`
	// PassSockets lets the agent of a local target hand over sockets of the target's network,
	// which doppel puts in the place of the program's TCP sockets, so the program's bytes do not
	// pass through doppel. Default true; the flag --no-socket-passing sets it to false, and then
	// TCP goes through doppel's local proxy and the agent connection.
	PassSockets *bool `json:"passSockets,omitempty" yaml:"passSockets,omitempty"`
	// JoinNetns runs the program in the network namespace of a local target (with PassSockets),
	// so that its TCP sockets are the target's from the start and a remote connect costs
	// doppel the least; sockets that stay on this machine (local destinations, listening
	// sockets, UDP, unix sockets) are this machine's. Default true; the flag --no-join-netns
	// sets it to false, and then the program runs in this machine's network namespace and doppel
	// hands it sockets of the target's network at socket(2).
	JoinNetns *bool `json:"joinNetns,omitempty" yaml:"joinNetns,omitempty"`
}

// Filter matches connection destinations. A destination matches when any entry of any list
// matches it.
type Filter struct {
	// CIDRs lists address prefixes like "10.0.0.0/8" or single addresses like "192.168.1.5";
	// IPv4-mapped IPv6 addresses match their IPv4 form.
	CIDRs []string `json:"cidrs,omitempty" yaml:"cidrs,omitempty"`
	// Ports lists destination ports like "5432" or inclusive ranges like "8000-8100".
	Ports []string `json:"ports,omitempty" yaml:"ports,omitempty"`
	// Hosts lists glob patterns (path.Match syntax) on the DNS names the program resolved for
	// the address, like "*.svc.cluster.local"; matching ignores case and a trailing dot, and
	// "*" also matches dots.
	Hosts []string `json:"hosts,omitempty" yaml:"hosts,omitempty"`
}

// DNS configures name resolution.
type DNS struct {
	// Enabled makes the program resolve names as the target does: the target's resolv.conf,
	// hosts file and hostname, with nameserver traffic sent from the target's network. Default
	// true; the flag --no-remote-dns sets it to false.
	Enabled *bool `json:"enabled,omitempty" yaml:"enabled,omitempty"`
}

// Env configures the environment variables the program gets from the target.
type Env struct {
	// Enabled merges the target's environment variables into the program's. Default true; the
	// flag --no-env sets it to false.
	Enabled *bool `json:"enabled,omitempty" yaml:"enabled,omitempty"`
	// Include lists glob patterns (path.Match syntax) of the target's variable names to take.
	// Default all.
	Include []string `json:"include,omitempty" yaml:"include,omitempty"`
	// Exclude lists glob patterns of the target's variable names to drop; exclude wins over
	// include.
	Exclude []string `json:"exclude,omitempty" yaml:"exclude,omitempty"`
	// Override sets variables last, over both the target's and the program's own.
	Override map[string]string `json:"override,omitempty" yaml:"override,omitempty"`
}

// Files chooses, path by path, whether the program's file operations use the target's files or
// this machine's. The lists are tried in the order notFound, local, readWrite, readOnly, and the
// first that matches a path decides it; then doppel's defaults, which give the target's mounted
// volumes (config maps, secrets) to the target and keep the program's own binary, libraries,
// toolchain, home and temporary files on this machine; any other path is this machine's. Each
// entry is a pattern: an absolute path in which "*" matches any run of characters within one
// path element (names starting with a dot too), "?" one character and "[...]" a class, as in
// path.Match, with "\" escaping the next character; "**" as a whole element matches zero or more
// elements, so "/var/run/secrets/**" is that directory and everything below it. A pattern
// without any of "*", "?" or "[" is taken literally and matches the path itself and everything
// below it, by whole elements: "/etc/app" matches "/etc/app" and "/etc/app/x" but not
// "/etc/apple". A trailing "/" is ignored; a pattern must otherwise be clean, without empty, "."
// or ".." elements.
type Files struct {
	// Mode is "read", "write" or "local". In read mode the target's paths are read from the
	// target, and opening one for writing works on this machine's file instead. In write mode
	// they are read and written on the target, except those that readOnly or a read-only default
	// names. In local mode every path is this machine's and the lists are ignored, notFound
	// included. Default read; the flag --fs-mode sets it.
	Mode string `json:"mode,omitempty" yaml:"mode,omitempty" jsonschema:"enum=read,enum=write,enum=local,default=read"`
	// ReadOnly lists patterns of paths read from the target and never written there, even in
	// write mode, like "/etc/app" or "/var/run/secrets/**". A pattern is an absolute path with
	// "*", "?" and "[...]" matching within one element and "**" any number of elements; one
	// without "*", "?" or "[" also matches everything below it. The flag --fs-read adds one.
	ReadOnly []string `json:"readOnly,omitempty" yaml:"readOnly,omitempty" jsonschema:"pattern=^/"`
	// ReadWrite lists patterns of paths read and written on the target in write mode; in read
	// mode they are only read. A pattern is an absolute path with "*", "?" and "[...]" matching
	// within one element and "**" any number of elements; one without "*", "?" or "[" also
	// matches everything below it. The flag --fs-write adds one.
	ReadWrite []string `json:"readWrite,omitempty" yaml:"readWrite,omitempty" jsonschema:"pattern=^/"`
	// Local lists patterns of paths that stay on this machine, like "/home/**" or "/tmp". A
	// pattern is an absolute path with "*", "?" and "[...]" matching within one element and "**"
	// any number of elements; one without "*", "?" or "[" also matches everything below it. The
	// flag --fs-local adds one.
	Local []string `json:"local,omitempty" yaml:"local,omitempty" jsonschema:"pattern=^/"`
	// NotFound lists patterns of paths that do not exist for the program: opening one fails as
	// for a missing file (ENOENT). A pattern is an absolute path with "*", "?" and "[...]"
	// matching within one element and "**" any number of elements; one without "*", "?" or "["
	// also matches everything below it. The flag --fs-not-found adds one.
	NotFound []string `json:"notFound,omitempty" yaml:"notFound,omitempty" jsonschema:"pattern=^/"`
}

// Duration is a time.Duration written as a Go duration string like "5s" or "1m30s".
type Duration time.Duration

// String returns the duration in Go's notation, like "5s".
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes the duration as a Go duration string; YAML and JSON use it.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads a Go duration string like "5s".
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("want a duration like \"5s\", got %q", b)
	}
	*d = Duration(v)
	return nil
}

// Defaults that Default fills in and the documentation above promises.
const (
	DefaultLogLevel    = "info"
	DefaultGracePeriod = 5 * time.Second
	DefaultListen      = "127.0.0.1:0"
	// DefaultStartTimeout is how long a Kubernetes agent may take to be scheduled, pulled
	// and running.
	DefaultStartTimeout = 60 * time.Second
)

// Values of Incoming.Mode.
const (
	ModeMirror = "mirror" // the program gets a copy of each connection
	ModeSteal  = "steal"  // the program serves the connections
)

// Values of Incoming.Mirror.
const (
	MirrorRedirect = "redirect" // nftables rules send the connections through the agent
	MirrorCapture  = "capture"  // a packet socket copies the packets passively
	MirrorTap      = "tap"      // an eBPF program copies the packets, and drops those it cannot copy
)

// Values of Files.Mode.
const (
	FilesModeRead  = "read"  // the target's paths are read from the target, written here
	FilesModeWrite = "write" // the target's paths are read and written on the target
	FilesModeLocal = "local" // every path is this machine's
)

// IncomingModes, MirrorMethods and FilesModes are the values Incoming.Mode,
// Incoming.Mirror and Files.Mode accept, the default first.
var (
	IncomingModes = []string{ModeMirror, ModeSteal}
	MirrorMethods = []string{MirrorRedirect, MirrorCapture, MirrorTap}
	FilesModes    = []string{FilesModeRead, FilesModeWrite, FilesModeLocal}
)

// Default returns a Config with every default filled in: log level info, a
// 5s agent grace period, the agent on 127.0.0.1:0, 60s for a Kubernetes agent
// to start, incoming traffic mirrored through redirect rules, outgoing
// traffic, DNS and the environment all taken from the target, and the
// target's files read in read mode. The agent image stays empty: the CLI
// picks the image of its own version.
func Default() *Config {
	return &Config{
		LogLevel: DefaultLogLevel,
		Agent: AgentConfig{
			GracePeriod:  Duration(DefaultGracePeriod),
			Listen:       DefaultListen,
			StartTimeout: Duration(DefaultStartTimeout),
		},
		Incoming: Incoming{Enabled: ptr(true), Mode: ModeMirror, Mirror: MirrorRedirect},
		Outgoing: Outgoing{Enabled: ptr(true)},
		DNS:      DNS{Enabled: ptr(true)},
		Env:      Env{Enabled: ptr(true)},
		Files:    Files{Mode: FilesModeRead},
	}
}

// IsEnabled reports whether the program receives the target's incoming traffic (nil means the
// default, true).
func (in Incoming) IsEnabled() bool { return in.Enabled == nil || *in.Enabled }

// Steals reports whether the program serves the target's connections rather than copies of them.
func (in Incoming) Steals() bool { return in.Mode == ModeSteal }

// CopiesOnly reports whether the mirror method copies packets beside the connections (capture,
// tap) rather than passing them through the agent, and so cannot steal.
func (in Incoming) CopiesOnly() bool { return in.Mirror == MirrorCapture || in.Mirror == MirrorTap }

// IsSet reports whether h filters anything: any header, a path or any method.
func (h HTTPFilter) IsSet() bool { return len(h.Headers) > 0 || h.Path != "" || len(h.Methods) > 0 }

// IsEnabled reports whether outgoing connections go out from the target (nil means the default,
// true).
func (o Outgoing) IsEnabled() bool { return o.Enabled == nil || *o.Enabled }

// PassesSockets reports whether PassSockets is on (nil means on).
func (o Outgoing) PassesSockets() bool { return o.PassSockets == nil || *o.PassSockets }

// JoinsNetns reports whether JoinNetns is on (nil means on).
func (o Outgoing) JoinsNetns() bool { return o.JoinNetns == nil || *o.JoinNetns }

// IsEnabled reports whether names resolve as the target resolves them (nil means the default,
// true).
func (d DNS) IsEnabled() bool { return d.Enabled == nil || *d.Enabled }

// IsEnabled reports whether the target's environment is merged (nil means the default, true).
func (e Env) IsEnabled() bool { return e.Enabled == nil || *e.Enabled }

// IsEnabled reports whether any path can be the target's: the mode is not local.
func (f Files) IsEnabled() bool { return f.Mode != FilesModeLocal }

func ptr[T any](v T) *T { return &v }
