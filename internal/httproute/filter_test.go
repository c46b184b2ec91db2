package httproute

import (
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseHeaderMatch(t *testing.T) {
	tests := []struct {
		in        string
		wantName  string
		wantRegex string
		wantErr   string
	}{
		{in: "X-Debug-User: alice.*", wantName: "X-Debug-User", wantRegex: "alice.*"},
		{in: "  x-debug-user:alice  ", wantName: "x-debug-user", wantRegex: "alice"},
		{in: "X-Empty:", wantName: "X-Empty", wantRegex: ""},
		{in: "X-Url: https?://a:b", wantName: "X-Url", wantRegex: "https?://a:b"},
		{in: "X-Debug-User alice", wantErr: "found no ':'"},
		{in: ": alice", wantErr: "header name is empty"},
		{in: "X Debug: alice", wantErr: `header name "X Debug" has characters not allowed`},
		{in: "X-Debug: (alice", wantErr: "value regexp: error parsing regexp"},
		{in: "X-Debug: a\\C", wantErr: "value regexp"}, // RE2 has no \C
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			m, err := ParseHeaderMatch(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseHeaderMatch(%q) = %v, %v; want an error containing %q", tc.in, m, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseHeaderMatch(%q): %v", tc.in, err)
			}
			got := []string{m.Name, m.Value.String()}
			if diff := cmp.Diff([]string{tc.wantName, tc.wantRegex}, got); diff != "" {
				t.Errorf("ParseHeaderMatch(%q) (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

func TestFilterMatch(t *testing.T) {
	alice := HeaderMatch{Name: "x-debug-user", Value: regexp.MustCompile(`^alice$`)}
	beta := HeaderMatch{Name: "X-Features", Value: regexp.MustCompile(`beta`)}
	header := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Add(kv[i], kv[i+1])
		}
		return h
	}
	tests := []struct {
		name   string
		filter *Filter
		method string
		target string
		header http.Header
		want   bool
	}{
		{"nil filter matches all", nil, "GET", "/", nil, true},
		{"zero filter matches all", &Filter{}, "DELETE", "*", nil, true},
		{"header matches", &Filter{Headers: []HeaderMatch{alice}}, "GET", "/", header("X-Debug-User", "alice"), true},
		{"header name is case-insensitive", &Filter{Headers: []HeaderMatch{beta}}, "GET", "/", header("x-features", "a,beta,c"), true},
		{"header value differs", &Filter{Headers: []HeaderMatch{alice}}, "GET", "/", header("X-Debug-User", "alice2"), false},
		{"header missing", &Filter{Headers: []HeaderMatch{alice}}, "GET", "/", header("X-Other", "alice"), false},
		{"any of several values", &Filter{Headers: []HeaderMatch{alice}}, "GET", "/", header("X-Debug-User", "bob", "X-Debug-User", "alice"), true},
		{"all headers must match", &Filter{Headers: []HeaderMatch{alice, beta}}, "GET", "/", header("X-Debug-User", "alice"), false},
		{"both headers match", &Filter{Headers: []HeaderMatch{alice, beta}}, "GET", "/", header("X-Debug-User", "alice", "X-Features", "beta"), true},
		{"path matches with query", &Filter{Path: regexp.MustCompile(`^/api/.*\?debug=1`)}, "GET", "/api/v1?debug=1", nil, true},
		{"path does not match", &Filter{Path: regexp.MustCompile(`^/api/`)}, "GET", "/web/api/", nil, false},
		{"absolute-form target uses path", &Filter{Path: regexp.MustCompile(`^/api/`)}, "GET", "http://svc:8080/api/x", nil, true},
		{"absolute-form target without path", &Filter{Path: regexp.MustCompile(`^/\?q$`)}, "GET", "http://svc?q", nil, true},
		{"asterisk target", &Filter{Path: regexp.MustCompile(`^/`)}, "OPTIONS", "*", nil, false},
		{"method matches after upper-casing", &Filter{Methods: []string{"get", "post"}}, "POST", "/", nil, true},
		{"method is case-sensitive", &Filter{Methods: []string{"GET"}}, "get", "/", nil, false},
		{"method not listed", &Filter{Methods: []string{"GET"}}, "PUT", "/", nil, false},
		{
			"AND of all parts",
			&Filter{Headers: []HeaderMatch{alice}, Path: regexp.MustCompile(`^/api`), Methods: []string{"PUT"}},
			"PUT", "/api", header("X-Debug-User", "alice"), true,
		},
		{
			"AND fails on one part",
			&Filter{Headers: []HeaderMatch{alice}, Path: regexp.MustCompile(`^/api`), Methods: []string{"PUT"}},
			"POST", "/api", header("X-Debug-User", "alice"), false,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.filter.Match(tc.method, tc.target, tc.header); got != tc.want {
				t.Errorf("Match(%q, %q, %v) = %v, want %v", tc.method, tc.target, tc.header, got, tc.want)
			}
		})
	}
}

func FuzzParseHeaderMatch(f *testing.F) {
	for _, s := range []string{"X-Debug-User: alice.*", "a:", ":", "X: (", "x-y:\t^v$ ", "é: x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseHeaderMatch(s)
		if err != nil {
			return
		}
		if !isToken(m.Name) || m.Value == nil {
			t.Fatalf("ParseHeaderMatch(%q) = %q, %v: bad result", s, m.Name, m.Value)
		}
		// What String prints parses back to the same match.
		again, err := ParseHeaderMatch(m.String())
		if err != nil || again.Name != m.Name || again.Value.String() != m.Value.String() {
			t.Fatalf("ParseHeaderMatch(%q) = %v, which reparses as %v, %v", s, m, again, err)
		}
	})
}
