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

// tokenChars matches the characters of an HTTP token: header names and methods.
const tokenChars = "[!#$%&'*+.^_`|~0-9A-Za-z-]"

// Patterns of the entries of incoming.http.headers and incoming.http.methods,
// for editors; the checks in incoming.go are the rule.
const (
	headerFilterPattern = `^\s*` + tokenChars + `+\s*:`
	methodPattern       = "^" + tokenChars + "+$"
)

// refine adds what reflection cannot know: the log levels, ports and resource
// quantities that may be numbers as well as strings, and the shape of HTTP
// filter entries. The enums of incoming.mode, incoming.mirror, files.mode,
// agent.pullPolicy and the tolerations come from struct tags.
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
	ports.Items = portItems()
	incomingPorts := s.Definitions["IncomingPorts"]
	if incomingPorts == nil {
		return fmt.Errorf("no IncomingPorts definition")
	}
	ignore, ok := incomingPorts.Properties.Get("ignore")
	if !ok {
		return fmt.Errorf("no ignore property in IncomingPorts")
	}
	ignore.Items = portItems()
	httpFilter := s.Definitions["HTTPFilter"]
	if httpFilter == nil {
		return fmt.Errorf("no HTTPFilter definition")
	}
	for name, pattern := range map[string]string{"headers": headerFilterPattern, "methods": methodPattern} {
		p, ok := httpFilter.Properties.Get(name)
		if !ok || p.Items == nil {
			return fmt.Errorf("no %s list in HTTPFilter", name)
		}
		p.Items.Pattern = pattern
	}
	resources := s.Definitions["Resources"]
	if resources == nil {
		return fmt.Errorf("no Resources definition")
	}
	for _, name := range []string{"requests", "limits"} {
		p, ok := resources.Properties.Get(name)
		if !ok {
			return fmt.Errorf("no %s property in Resources", name)
		}
		p.AdditionalProperties = quantitySchema()
	}
	return nil
}

// quantitySchema is the schema of a Kubernetes quantity: "100m", "64Mi", or a number like 0.5.
func quantitySchema() *jsonschema.Schema {
	return &jsonschema.Schema{AnyOf: []*jsonschema.Schema{
		{Type: "string"},
		{Type: "number", Minimum: json.Number("0")},
	}}
}

// portItems is the schema of a port or port range: "5432", "8000-8100" or 5432.
func portItems() *jsonschema.Schema {
	return &jsonschema.Schema{AnyOf: []*jsonschema.Schema{
		{Type: "string", Pattern: `^[0-9]+(-[0-9]+)?$`},
		{Type: "integer", Minimum: json.Number("1"), Maximum: json.Number("65535")},
	}}
}

// descriptions holds the doc comment of every type and field in config.go,
// keyed "Type" or "Type.Field", for the JSON Schema. TestDescriptions fails
// when they differ and prints the map to paste here.
var descriptions = map[string]string{
	"AgentConfig":                  "AgentConfig configures the agent that runs beside the target for the length of one session.",
	"AgentConfig.AllowNonLoopback": "AllowNonLoopback lets listen be a non-loopback address, which makes the agent reachable from the target's network, guarded only by the session's secret. Default false.",
	"AgentConfig.Annotations":      "Annotations are added to the agent's Job, pod and Secret. Keys are Kubernetes annotation keys (\"name\" or \"prefix/name\"); values may be any string. The flag --agent-annotation adds one.",
	"AgentConfig.Ephemeral":        "Ephemeral runs the agent as an ephemeral container in the target's pod instead of in a Job's pod beside it: no hostPID and no added capabilities unless incoming traffic needs them, but the container stays in the pod's spec (stopped) after the session. Default false; the flag --ephemeral sets it.",
	"AgentConfig.GracePeriod":      "GracePeriod is how long the agent waits for a lost client to come back before it exits and removes its rules, as a duration like \"5s\". Default 5s.",
	"AgentConfig.Image":            "Image is the agent's container image, like \"registry.example.com/doppel-agent:v1.2.0\". Default doppel's own agent image, of the same version as this doppel. The flag --agent-image sets it.",
	"AgentConfig.Labels":           "Labels are added to the agent's Job, pod and Secret, like {team: orders}. Keys are Kubernetes label keys (\"name\" or \"prefix/name\"), values Kubernetes label values (63 characters at most). The flag --agent-label adds one.",
	"AgentConfig.Listen":           "Listen is the address the agent listens on inside the target's network, as host:port. Default \"127.0.0.1:0\" (any free port). It must be a loopback address unless allowNonLoopback is true.",
	"AgentConfig.Namespace":        "Namespace is the namespace of the agent's Job and Secret, a DNS label like \"doppel\". Default the target's namespace; an ephemeral agent is always in the target's pod. The flag --agent-namespace sets it.",
	"AgentConfig.NodeSelector":     "NodeSelector is added to the agent's pod, with keys and values as in labels; the pod runs on the target's node all the same. The flag --agent-node-selector adds one.",
	"AgentConfig.Privileged":       "Privileged runs the agent as a privileged container instead of one holding only the capabilities the session's features need. Default false; the flag --agent-privileged sets it.",
	"AgentConfig.PullPolicy":       "PullPolicy is the agent image's pull policy: Always, IfNotPresent or Never. Default IfNotPresent; the flag --agent-pull-policy sets it.",
	"AgentConfig.Resources":        "Resources are the agent container's requests and limits, like {requests: {cpu: 50m}}. Default none. The flags --agent-cpu and --agent-memory set both the request and the limit of one resource.",
	"AgentConfig.StartTimeout":     "StartTimeout is how long the agent may take to be scheduled, pulled and running, as a positive duration like \"60s\". Default 60s; the flag --agent-timeout sets it.",
	"AgentConfig.Tolerations":      "Tolerations are the agent pod's tolerations. Default every taint is tolerated, as the agent must run on the target's node whatever its taints; a list given here replaces that default. The flag --agent-toleration adds one.",
	"Config":                       "Config is the whole configuration of a doppel session: the file's content with the flags of `doppel exec` laid over it.",
	"Config.Agent":                 "Agent configures the short-lived agent started beside the target.",
	"Config.DNS":                   "DNS configures name resolution as the target does it.",
	"Config.Env":                   "Env configures the environment variables the program gets from the target.",
	"Config.Files":                 "Files chooses which of the program's file paths are the target's.",
	"Config.Incoming":              "Incoming configures the target's incoming traffic that the program receives.",
	"Config.Kubernetes":            "Kubernetes says how to reach the cluster of a Kubernetes target.",
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
	"Files":                        "Files chooses, path by path, whether the program's file operations use the target's files or this machine's. The lists are tried in the order notFound, local, readWrite, readOnly, and the first that matches a path decides it; then doppel's defaults, which give the target's mounted volumes (config maps, secrets) to the target and keep the program's own binary, libraries, toolchain, home and temporary files on this machine; any other path is this machine's. Each entry is a pattern: an absolute path in which \"*\" matches any run of characters within one path element (names starting with a dot too), \"?\" one character and \"[...]\" a class, as in path.Match, with \"\\\" escaping the next character; \"**\" as a whole element matches zero or more elements, so \"/var/run/secrets/**\" is that directory and everything below it. A pattern without any of \"*\", \"?\" or \"[\" is taken literally and matches the path itself and everything below it, by whole elements: \"/etc/app\" matches \"/etc/app\" and \"/etc/app/x\" but not \"/etc/apple\". A trailing \"/\" is ignored; a pattern must otherwise be clean, without empty, \".\" or \"..\" elements.",
	"Files.Local":                  "Local lists patterns of paths that stay on this machine, like \"/home/**\" or \"/tmp\". A pattern is an absolute path with \"*\", \"?\" and \"[...]\" matching within one element and \"**\" any number of elements; one without \"*\", \"?\" or \"[\" also matches everything below it. The flag --fs-local adds one.",
	"Files.Mode":                   "Mode is \"read\", \"write\" or \"local\". In read mode the target's paths are read from the target, and opening one for writing works on this machine's file instead. In write mode they are read and written on the target, except those that readOnly or a read-only default names. In local mode every path is this machine's and the lists are ignored, notFound included. Default read; the flag --fs-mode sets it.",
	"Files.NotFound":               "NotFound lists patterns of paths that do not exist for the program: opening one fails as for a missing file (ENOENT). A pattern is an absolute path with \"*\", \"?\" and \"[...]\" matching within one element and \"**\" any number of elements; one without \"*\", \"?\" or \"[\" also matches everything below it. The flag --fs-not-found adds one.",
	"Files.ReadOnly":               "ReadOnly lists patterns of paths read from the target and never written there, even in write mode, like \"/etc/app\" or \"/var/run/secrets/**\". A pattern is an absolute path with \"*\", \"?\" and \"[...]\" matching within one element and \"**\" any number of elements; one without \"*\", \"?\" or \"[\" also matches everything below it. The flag --fs-read adds one.",
	"Files.ReadWrite":              "ReadWrite lists patterns of paths read and written on the target in write mode; in read mode they are only read. A pattern is an absolute path with \"*\", \"?\" and \"[...]\" matching within one element and \"**\" any number of elements; one without \"*\", \"?\" or \"[\" also matches everything below it. The flag --fs-write adds one.",
	"Filter":                       "Filter matches connection destinations. A destination matches when any entry of any list matches it.",
	"Filter.CIDRs":                 "CIDRs lists address prefixes like \"10.0.0.0/8\" or single addresses like \"192.168.1.5\"; IPv4-mapped IPv6 addresses match their IPv4 form.",
	"Filter.Hosts":                 "Hosts lists glob patterns (path.Match syntax) on the DNS names the program resolved for the address, like \"*.svc.cluster.local\"; matching ignores case and a trailing dot, and \"*\" also matches dots.",
	"Filter.Ports":                 "Ports lists destination ports like \"5432\" or inclusive ranges like \"8000-8100\".",
	"HTTPFilter":                   "HTTPFilter matches HTTP requests. A request matches when every entry of headers, the path and any one of methods match it; a part left empty matches every request.",
	"HTTPFilter.Headers":           "Headers lists \"Name: regex\" entries like \"X-Debug-User: alice\": the request must have the header, its name compared without regard to case, with a value the regular expression (Go RE2 syntax) matches; the expression matches anywhere in the value unless anchored with ^ and $, and an empty one matches any value. The flag --http-header adds one.",
	"HTTPFilter.Methods":           "Methods lists HTTP methods like \"GET\" or \"POST\", written in any case: the request's method must be one of them. The flag --http-method adds one.",
	"HTTPFilter.Path":              "Path is a regular expression (Go RE2 syntax) that must match the request's path and query, like \"/api/orders?id=7\", anywhere unless anchored with ^ and $. The flag --http-path sets it.",
	"Incoming":                     "Incoming configures which of the target's incoming connections the program receives, and how.",
	"Incoming.Enabled":             "Enabled subscribes the program to the target's incoming traffic: when the program listens on a port, it receives the connections that reach that port of the target (or the port ports.map names). Default true; the flag --no-incoming sets it to false.",
	"Incoming.HTTP":                "HTTP steals only the HTTP requests it matches and leaves the others to the target's own service. It needs mode steal.",
	"Incoming.Mirror":              "Mirror is how mirror mode copies connections: \"redirect\" passes them through the agent with nftables rules in the target's network namespace; \"capture\" copies packets passively with a packet socket, writes no rules and needs no NET_ADMIN, but delivers a stream that lost segments marked incomplete; \"tap\" copies packets with an eBPF program at the target's interfaces, outside the connections' path, and drops a packet it cannot copy so that the client sends it again: no copy is lost (Linux 6.6, CAP_BPF and NET_ADMIN). Capture and tap cannot steal, so they need mode mirror. Default redirect; the flags --mirror-capture and --mirror-tap set capture and tap.",
	"Incoming.Mode":                "Mode is \"mirror\" or \"steal\". In mirror mode the program gets a copy of each connection while the target's own service keeps answering the real clients, and the program's answers are discarded. In steal mode the program serves the connections, or only the HTTP requests that http matches, and the target's service does not see them. Default mirror; the flag --steal sets steal.",
	"Incoming.Ports":               "Ports chooses which of the target's ports each port the program listens on receives.",
	"IncomingPorts":                "IncomingPorts chooses which of the target's ports each port the program listens on receives. A port that map does not name receives the target's port of the same number, unless map sends another local port there; then it stays on this machine.",
	"IncomingPorts.Ignore":         "Ignore lists ports like \"9090\" or inclusive ranges like \"9000-9100\" on which the program's listens stay on this machine; ignore wins over map. The flag --ignore-port adds one.",
	"IncomingPorts.Map":            "Map lists \"LOCAL:TARGET\" pairs like \"8080:80\": when the program listens on port 8080 it receives the target's port 80. A local port may map to one target port only, and a target port may receive one local port only. The flag --port-map adds one.",
	"Kubernetes":                   "Kubernetes says how to reach the cluster of a Kubernetes target; kubectl's flags (--kubeconfig, --context, --namespace) win over it.",
	"Kubernetes.Context":           "Context is the name of the kubeconfig context to use. Default its current context.",
	"Kubernetes.Kubeconfig":        "Kubeconfig is the path of the kubeconfig file; a leading \"~/\" stands for the home directory, and a relative path is relative to the working directory. Default $KUBECONFIG, then ~/.kube/config, then the in-cluster configuration.",
	"Kubernetes.Namespace":         "Namespace is the target's namespace, a DNS label like \"shop\". Default the context's namespace, then \"default\".",
	"Outgoing":                     "Outgoing chooses which outgoing connections of the program leave from the target's network and which stay on this machine.",
	"Outgoing.Enabled":             "Enabled sends outgoing connections out from the target's network. Default true; the flag --no-outgoing sets it to false.",
	"Outgoing.Local":               "Local lists destinations that stay on this machine. Loopback and unspecified addresses always stay local unless remote lists them.",
	"Outgoing.JoinNetns":           "JoinNetns runs the program in the network namespace of a local target (with PassSockets), so that its TCP sockets are the target's from the start and a remote connect costs doppel the least; sockets that stay on this machine (local destinations, listening sockets, UDP, unix sockets) are this machine's. Default true; the flag --no-join-netns sets it to false, and then the program runs in this machine's network namespace and doppel hands it sockets of the target's network at socket(2).",
	"Outgoing.PassSockets":         "PassSockets lets the agent of a local target hand over sockets of the target's network, which doppel puts in the place of the program's TCP sockets, so the program's bytes do not pass through doppel. Default true; the flag --no-socket-passing sets it to false, and then TCP goes through doppel's local proxy and the agent connection.",
	"Outgoing.Remote":              "Remote lists destinations that always leave from the target's network; remote wins over local.",
	"Resources":                    "Resources are a container's requests and limits by resource name: \"cpu\", \"memory\", \"ephemeral-storage\", \"hugepages-<size>\" or an extended resource like \"example.com/gpu\". Amounts are Kubernetes quantities like \"100m\", \"0.5\" or \"64Mi\".",
	"Resources.Limits":             "Limits are the most the agent may use, like {memory: 128Mi}; a request must not be above the limit of the same resource.",
	"Resources.Requests":           "Requests are the amounts the scheduler reserves for the agent, like {cpu: 50m, memory: 32Mi}.",
	"Toleration":                   "Toleration is a Kubernetes pod toleration: it lets the agent's pod run on a node with a taint it matches.",
	"Toleration.Effect":            "Effect is the taint effect matched: NoSchedule, PreferNoSchedule or NoExecute; empty matches all.",
	"Toleration.Key":               "Key is the taint key it matches, a Kubernetes label key like \"node-role.kubernetes.io/control-plane\". Empty matches every key, and then operator must be Exists.",
	"Toleration.Operator":          "Operator is Exists (any value of the key matches) or Equal (only value matches). Default Equal.",
	"Toleration.Value":             "Value is the taint value matched with operator Equal, a Kubernetes label value; it must be empty with operator Exists.",
}
