package config

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// TargetPort returns the target's port whose connections the program
// receives when it listens on local port local, or false when that listen
// stays on this machine: incoming traffic is off, local is 0 or ignored, or
// ports.map sends another local port to the target's port of the same number.
// Entries that Validate rejects are skipped.
func (in Incoming) TargetPort(local uint16) (target uint16, ok bool) {
	if !in.IsEnabled() || local == 0 {
		return 0, false
	}
	for _, s := range in.Ports.Ignore {
		if r, err := parsePorts(s); err == nil && r.lo <= local && local <= r.hi {
			return 0, false
		}
	}
	taken := false
	for _, s := range in.Ports.Map {
		m, err := parsePortMapping(s)
		if err != nil {
			continue
		}
		if m.local == local {
			return m.target, true
		}
		if m.target == local {
			taken = true
		}
	}
	if taken {
		return 0, false
	}
	return local, true
}

// portMapping is a parsed "LOCAL:TARGET" entry of incoming.ports.map.
type portMapping struct{ local, target uint16 }

func parsePortMapping(s string) (portMapping, error) {
	localS, targetS, ok := strings.Cut(s, ":")
	local, err1 := parsePort(localS)
	target, err2 := parsePort(targetS)
	if !ok || err1 != nil || err2 != nil {
		return portMapping{}, fmt.Errorf("invalid port mapping %q: want LOCAL:TARGET like \"8080:80\", with ports from 1 to 65535", s)
	}
	return portMapping{local, target}, nil
}

func checkPortMapping(s string) error {
	_, err := parsePortMapping(s)
	return err
}

// checkPortMap finds the mappings that contradict each other: a local port
// sent to two target ports, or two local ports sent to one target port. The
// same mapping written twice is harmless. It returns one error per index of
// m, nil where the entry is fine or invalid on its own.
func checkPortMap(m []string) []error {
	errs := make([]error, len(m))
	byLocal := map[uint16]string{}
	byTarget := map[uint16]string{}
	for i, s := range m {
		pm, err := parsePortMapping(s)
		if err != nil {
			continue
		}
		if prev, ok := byLocal[pm.local]; ok {
			if prev != s {
				errs[i] = fmt.Errorf("local port %d is mapped twice, by %q and %q: keep one", pm.local, prev, s)
			}
			continue
		}
		if prev, ok := byTarget[pm.target]; ok {
			errs[i] = fmt.Errorf("target port %d is mapped to by both %q and %q: only one local port can receive it", pm.target, prev, s)
			continue
		}
		byLocal[pm.local], byTarget[pm.target] = s, s
	}
	return errs
}

func checkMode(s string) error {
	if !slices.Contains(IncomingModes, s) {
		return fmt.Errorf("unknown mode %q: want %s or %s", s, ModeMirror, ModeSteal)
	}
	return nil
}

func checkMirror(s string) error {
	if !slices.Contains(MirrorMethods, s) {
		return fmt.Errorf("unknown mirror method %q: want %s, %s or %s", s, MirrorRedirect, MirrorCapture, MirrorTap)
	}
	return nil
}

// Errors for settings that contradict each other. Validate reports them in
// the file's terms; Apply names the flags instead when flags caused them.
var (
	errFilterMirror = errors.New("an HTTP filter picks the requests to steal, and incoming.mode is mirror: add incoming.mode: steal (or the flag --steal)")
)

// validate checks the incoming section; paths start with "incoming.".
func (in Incoming) validate() []fieldError {
	var fes []fieldError
	add := func(path string, err error, reads ...string) {
		if err != nil {
			fes = append(fes, fieldError{path: path, err: err, reads: reads})
		}
	}
	add("incoming.mode", checkMode(in.Mode))
	add("incoming.mirror", checkMirror(in.Mirror))
	if in.Mode == ModeSteal && in.CopiesOnly() {
		add("incoming.mirror", fmt.Errorf("%q only copies connections and cannot steal them: set incoming.mode to mirror or incoming.mirror to redirect", in.Mirror), "incoming.mode")
	}
	clashes := checkPortMap(in.Ports.Map)
	for i, s := range in.Ports.Map {
		err := checkPortMapping(s)
		if err == nil {
			err = clashes[i]
		}
		add(fmt.Sprintf("incoming.ports.map[%d]", i), err)
	}
	for i, s := range in.Ports.Ignore {
		add(fmt.Sprintf("incoming.ports.ignore[%d]", i), checkPorts(s))
	}
	h := in.HTTP
	for i, s := range h.Headers {
		add(fmt.Sprintf("incoming.http.headers[%d]", i), checkHeaderFilter(s))
	}
	if h.Path != "" {
		add("incoming.http.path", checkPathFilter(h.Path))
	}
	for i, s := range h.Methods {
		add(fmt.Sprintf("incoming.http.methods[%d]", i), checkMethod(s))
	}
	if in.Mode == ModeMirror && h.IsSet() {
		add("incoming.http", errFilterMirror, "incoming.mode")
	}
	return fes
}

// normalize upper-cases the HTTP methods that are valid tokens; the others
// stay as written for Validate to report.
func (h *HTTPFilter) normalize() {
	for i, m := range h.Methods {
		if isToken(m) {
			h.Methods[i] = strings.ToUpper(m)
		}
	}
}

// headerFilter is a parsed "Name: regex" entry of incoming.http.headers.
type headerFilter struct {
	name string
	re   *regexp.Regexp
}

// parseHeaderFilter reads "Name: regex", dropping the spaces around the name
// and the expression, as the agent's filter (package httproute) does; it
// accepts what the agent accepts.
func parseHeaderFilter(s string) (headerFilter, error) {
	name, pattern, ok := strings.Cut(s, ":")
	name = strings.TrimSpace(name)
	if !ok {
		return headerFilter{}, fmt.Errorf("invalid header filter %q: want \"Name: regex\" like \"X-Debug-User: alice\"", s)
	}
	if name == "" {
		return headerFilter{}, fmt.Errorf("empty header name in header filter %q: want \"Name: regex\" like \"X-Debug-User: alice\"", s)
	}
	if !isToken(name) {
		return headerFilter{}, fmt.Errorf("invalid header name %q in header filter %q: want a name like \"X-Debug-User\", without spaces or separators", name, s)
	}
	re, err := regexp.Compile(strings.TrimSpace(pattern))
	if err != nil {
		return headerFilter{}, fmt.Errorf("invalid regular expression in header filter %q: %w", s, err)
	}
	return headerFilter{name, re}, nil
}

func checkHeaderFilter(s string) error {
	_, err := parseHeaderFilter(s)
	return err
}

func parsePathFilter(s string) (*regexp.Regexp, error) {
	re, err := regexp.Compile(s)
	if err != nil {
		return nil, fmt.Errorf("invalid path regular expression %q: %w", s, err)
	}
	return re, nil
}

func checkPathFilter(s string) error {
	_, err := parsePathFilter(s)
	return err
}

func checkMethod(s string) error {
	if s == "" {
		return errors.New(`empty HTTP method: want a method like "GET"`)
	}
	if !isToken(s) {
		return fmt.Errorf("invalid HTTP method %q: want a method like \"GET\"", s)
	}
	return nil
}

// isToken reports whether s is an HTTP token (RFC 9110, section 5.6.2), the
// syntax of header names and methods.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}
