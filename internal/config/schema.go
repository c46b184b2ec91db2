package config

import (
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/invopop/jsonschema"
)

// Schema returns the JSON Schema (draft 2020-12) of the configuration file,
// indented, for editors and `doppel config schema`. Objects admit no keys
// besides their own, and every property carries its doc comment as its
// description.
func Schema() ([]byte, error) {
	r := &jsonschema.Reflector{
		Anonymous:                  true,
		ExpandedStruct:             true,
		RequiredFromJSONSchemaTags: true, // every key is optional
		LookupComment:              lookupDescription,
		Mapper:                     mapType,
	}
	s := r.Reflect(&Config{})
	s.Title = "doppel configuration"
	if err := refine(s); err != nil {
		return nil, fmt.Errorf("build JSON Schema: %w", err)
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode JSON Schema: %w", err)
	}
	return append(b, '\n'), nil
}

// lookupDescription gives the JSON Schema the doc comments of this package's
// types and fields. The reflector cannot read comments from a built binary,
// so they live in descriptions too; a test keeps the two the same.
func lookupDescription(t reflect.Type, field string) string {
	if t.PkgPath() != reflect.TypeFor[Config]().PkgPath() {
		return ""
	}
	key := t.Name()
	if field != "" {
		key += "." + field
	}
	return descriptions[key]
}

// durationPattern matches the non-negative durations time.ParseDuration reads.
const durationPattern = `^\+?(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$`

// mapType gives a Duration its schema: a Go duration string.
func mapType(t reflect.Type) *jsonschema.Schema {
	if t != reflect.TypeFor[Duration]() {
		return nil
	}
	return &jsonschema.Schema{
		Type:        "string",
		Pattern:     durationPattern,
		Description: descriptions["Duration"],
		Examples:    []any{"5s", "1m30s", "500ms"},
	}
}

// refine adds what reflection cannot know: the log levels, and ports that
// may be numbers as well as strings.
func refine(s *jsonschema.Schema) error {
	level, ok := s.Properties.Get("logLevel")
	if !ok {
		return fmt.Errorf("no logLevel property")
	}
	for _, l := range LogLevels {
		level.Enum = append(level.Enum, l)
	}
	filter := s.Definitions["Filter"]
	if filter == nil {
		return fmt.Errorf("no Filter definition")
	}
	ports, ok := filter.Properties.Get("ports")
	if !ok {
		return fmt.Errorf("no ports property in Filter")
	}
	ports.Items = &jsonschema.Schema{AnyOf: []*jsonschema.Schema{
		{Type: "string", Pattern: `^[0-9]+(-[0-9]+)?$`},
		{Type: "integer", Minimum: json.Number("1"), Maximum: json.Number("65535")},
	}}
	return nil
}

// descriptions holds the doc comment of every type and field in config.go,
// keyed "Type" or "Type.Field", for the JSON Schema. TestDescriptions fails
// when they differ and prints the map to paste here.
var descriptions = map[string]string{
	"AgentConfig":                  "AgentConfig configures the agent that runs beside the target for the length of one session.",
	"AgentConfig.AllowNonLoopback": "AllowNonLoopback lets listen be a non-loopback address, which makes the agent reachable from the target's network, guarded only by the session's secret. Default false.",
	"AgentConfig.GracePeriod":      "GracePeriod is how long the agent waits for a lost client to come back before it exits and removes its rules, as a duration like \"5s\". Default 5s.",
	"AgentConfig.Listen":           "Listen is the address the agent listens on inside the target's network, as host:port. Default \"127.0.0.1:0\" (any free port). It must be a loopback address unless allowNonLoopback is true.",
	"Config":                       "Config is the whole configuration of a doppel session: the file's content with the flags of `doppel exec` laid over it.",
	"Config.Agent":                 "Agent configures the short-lived agent started beside the target.",
	"Config.DNS":                   "DNS configures name resolution as the target does it.",
	"Config.Env":                   "Env configures the environment variables the program gets from the target.",
	"Config.LogLevel":              "LogLevel is the least severe level logged: debug, info, warn or error. Default info.",
	"Config.Outgoing":              "Outgoing chooses which of the program's outgoing connections leave from the target's network.",
	"Config.Schema":                "Schema is the address of the JSON Schema the file follows, for editors; doppel ignores it.",
	"Config.Target":                "Target is the process or pod whose network and environment the program borrows, e.g. \"pid:1234\" or \"deployment/orders\".",
	"DNS":                          "DNS configures name resolution.",
	"DNS.Enabled":                  "Enabled makes the program resolve names as the target does: the target's resolv.conf, hosts file and hostname, with nameserver traffic sent from the target's network. Default true; the flag --no-remote-dns sets it to false.",
	"Duration":                     "Duration is a time.Duration written as a Go duration string like \"5s\" or \"1m30s\".",
	"Env":                          "Env configures the environment variables the program gets from the target.",
	"Env.Enabled":                  "Enabled merges the target's environment variables into the program's. Default true; the flag --no-env sets it to false.",
	"Env.Exclude":                  "Exclude lists glob patterns of the target's variable names to drop; exclude wins over include.",
	"Env.Include":                  "Include lists glob patterns (path.Match syntax) of the target's variable names to take. Default all.",
	"Env.Override":                 "Override sets variables last, over both the target's and the program's own.",
	"Filter":                       "Filter matches connection destinations. A destination matches when any entry of any list matches it.",
	"Filter.CIDRs":                 "CIDRs lists address prefixes like \"10.0.0.0/8\" or single addresses like \"192.168.1.5\"; IPv4-mapped IPv6 addresses match their IPv4 form.",
	"Filter.Hosts":                 "Hosts lists glob patterns (path.Match syntax) on the DNS names the program resolved for the address, like \"*.svc.cluster.local\"; matching ignores case and a trailing dot, and \"*\" also matches dots.",
	"Filter.Ports":                 "Ports lists destination ports like \"5432\" or inclusive ranges like \"8000-8100\".",
	"Outgoing":                     "Outgoing chooses which outgoing connections of the program leave from the target's network and which stay on this machine.",
	"Outgoing.PassSockets":         "PassSockets lets the agent of a local target hand over sockets of the target's network, which doppel puts in the place of the program's TCP sockets, so the program's bytes do not pass through doppel. Default true; the flag --no-socket-passing sets it to false, and then TCP goes through doppel's local proxy and the agent connection.",
	"Outgoing.Enabled":             "Enabled sends outgoing connections out from the target's network. Default true; the flag --no-outgoing sets it to false.",
	"Outgoing.Local":               "Local lists destinations that stay on this machine. Loopback and unspecified addresses always stay local unless remote lists them.",
	"Outgoing.Remote":              "Remote lists destinations that always leave from the target's network; remote wins over local.",
}
