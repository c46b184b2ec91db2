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
	// Agent configures the short-lived agent started beside the target.
	Agent AgentConfig `json:"agent" yaml:"agent"`
	// Outgoing chooses which of the program's outgoing connections leave from the target's network.
	Outgoing Outgoing `json:"outgoing" yaml:"outgoing"`
	// DNS configures name resolution as the target does it.
	DNS DNS `json:"dns" yaml:"dns"`
	// Env configures the environment variables the program gets from the target.
	Env Env `json:"env" yaml:"env"`
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
)

// Default returns a Config with every default filled in: log level info, a
// 5s agent grace period, the agent on 127.0.0.1:0, and outgoing traffic, DNS
// and the environment all taken from the target.
func Default() *Config {
	return &Config{
		LogLevel: DefaultLogLevel,
		Agent: AgentConfig{
			GracePeriod: Duration(DefaultGracePeriod),
			Listen:      DefaultListen,
		},
		Outgoing: Outgoing{Enabled: ptr(true)},
		DNS:      DNS{Enabled: ptr(true)},
		Env:      Env{Enabled: ptr(true)},
	}
}

// IsEnabled reports whether outgoing connections go out from the target (nil means the default,
// true).
func (o Outgoing) IsEnabled() bool { return o.Enabled == nil || *o.Enabled }

// PassesSockets reports whether PassSockets is on (nil means on).
func (o Outgoing) PassesSockets() bool { return o.PassSockets == nil || *o.PassSockets }

// IsEnabled reports whether names resolve as the target resolves them (nil means the default,
// true).
func (d DNS) IsEnabled() bool { return d.Enabled == nil || *d.Enabled }

// IsEnabled reports whether the target's environment is merged (nil means the default, true).
func (e Env) IsEnabled() bool { return e.Enabled == nil || *e.Enabled }

func ptr[T any](v T) *T { return &v }
