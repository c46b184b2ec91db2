package httproute

import (
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
)

// Filter says which requests go to the program. Every part that is set must match (AND); the
// zero Filter, and a nil *Filter, match every request. Regular expressions use RE2 syntax and
// are not anchored: add ^ and $ to match a whole value.
type Filter struct {
	// Headers must all match.
	Headers []HeaderMatch
	// Path is matched against the request target's path and query as the client sent them
	// (for example "/api/v1?x=1"). For an absolute-form target ("http://host/p?q") only the
	// path and query part is used; other targets ("*", CONNECT's "host:port") are used as is.
	Path *regexp.Regexp
	// Methods lists the accepted request methods. Methods are case-sensitive; the configured
	// ones are upper-cased before comparing, so "get" accepts "GET".
	Methods []string
}

// HeaderMatch matches a request that has a header Name (case-insensitive) with at least one
// field value matching Value.
type HeaderMatch struct {
	Name  string
	Value *regexp.Regexp
}

// String formats m the way ParseHeaderMatch reads it.
func (m HeaderMatch) String() string {
	return m.Name + ": " + m.Value.String()
}

// ParseHeaderMatch parses "Name: regexp", for example "X-Debug-User: alice.*". Spaces around
// the name and the regexp are ignored; an empty regexp matches any value of the header.
func ParseHeaderMatch(s string) (HeaderMatch, error) {
	name, value, ok := strings.Cut(s, ":")
	if !ok {
		return HeaderMatch{}, fmt.Errorf("header filter %q: want \"Name: regexp\", found no ':'", s)
	}
	name = strings.TrimSpace(name)
	if name == "" {
		return HeaderMatch{}, fmt.Errorf("header filter %q: header name is empty", s)
	}
	if !isToken(name) {
		return HeaderMatch{}, fmt.Errorf("header filter %q: header name %q has characters not allowed in HTTP header names", s, name)
	}
	re, err := regexp.Compile(strings.TrimSpace(value))
	if err != nil {
		return HeaderMatch{}, fmt.Errorf("header filter %q: value regexp: %w", s, err)
	}
	return HeaderMatch{Name: name, Value: re}, nil
}

// Match reports whether a request with this method, request target (as in the request line, or
// :path for HTTP/2) and header goes to the program.
func (f *Filter) Match(method, target string, h http.Header) bool {
	if f == nil {
		return true
	}
	if len(f.Methods) > 0 && !slices.ContainsFunc(f.Methods, func(m string) bool { return strings.ToUpper(m) == method }) {
		return false
	}
	if f.Path != nil && !f.Path.MatchString(pathAndQuery(target)) {
		return false
	}
	for _, hm := range f.Headers {
		if !headerMatches(h, hm) {
			return false
		}
	}
	return true
}

func headerMatches(h http.Header, hm HeaderMatch) bool {
	values := h.Values(hm.Name) // both h and Values use canonical keys
	if hm.Value == nil {
		return len(values) > 0
	}
	return slices.ContainsFunc(values, hm.Value.MatchString)
}

// pathAndQuery returns the path and query of an absolute-form target ("http://h/p?q" gives
// "/p?q"), and any other target unchanged.
func pathAndQuery(target string) string {
	scheme, rest, ok := strings.Cut(target, "://")
	if !ok || scheme == "" || strings.ContainsAny(scheme, "/?") {
		return target
	}
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		if rest[i] == '?' {
			return "/" + rest[i:]
		}
		return rest[i:]
	}
	return "/"
}

// isToken reports whether s is a non-empty RFC 9110 token (method names, header names).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenByte(s[i]) {
			return false
		}
	}
	return true
}

func isTokenByte(c byte) bool {
	if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
