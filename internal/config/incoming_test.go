package config

import (
	"regexp"
	"strings"
	"testing"
)

func TestTargetPort(t *testing.T) {
	rules := Incoming{Ports: IncomingPorts{
		Map:    []string{"8080:80", "8443:443", "9091:9090", "bad", "7000:7001"},
		Ignore: []string{"9090", "6000-6010", "7000"},
	}}
	off := rules
	off.Enabled = ptr(false)

	for _, tc := range []struct {
		name   string
		in     Incoming
		local  uint16
		target uint16
		ok     bool
	}{
		{"unmapped port is the same port", rules, 3000, 3000, true},
		{"mapped", rules, 8080, 80, true},
		{"another mapping", rules, 8443, 443, true},
		{"port another mapping takes stays local", rules, 80, 0, false},
		{"ignored", rules, 9090, 0, false},
		{"mapped to an ignored port's number", rules, 9091, 9090, true},
		{"ignored range, low end", rules, 6000, 0, false},
		{"ignored range, high end", rules, 6010, 0, false},
		{"past ignored range", rules, 6011, 6011, true},
		{"ignore wins over map", rules, 7000, 0, false},
		{"port 0 is no port", rules, 0, 0, false},
		{"explicitly enabled", Incoming{Enabled: ptr(true)}, 80, 80, true},
		{"disabled", off, 3000, 0, false},
		{"disabled, mapped", off, 8080, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target, ok := tc.in.TargetPort(tc.local)
			if target != tc.target || ok != tc.ok {
				t.Errorf("TargetPort(%d) = %d, %v; want %d, %v", tc.local, target, ok, tc.target, tc.ok)
			}
		})
	}
}

func TestIncomingHelpers(t *testing.T) {
	d := Default().Incoming
	if !d.IsEnabled() || d.Steals() || d.HTTP.IsSet() {
		t.Errorf("default incoming: IsEnabled %v, Steals %v, HTTP.IsSet %v; want true, false, false", d.IsEnabled(), d.Steals(), d.HTTP.IsSet())
	}
	if (Incoming{}).IsEnabled() != true {
		t.Errorf("nil Enabled is not enabled")
	}
	if !(Incoming{Mode: ModeSteal}).Steals() {
		t.Errorf("mode steal does not steal")
	}
	for _, h := range []HTTPFilter{{Headers: []string{"A:"}}, {Path: "/"}, {Methods: []string{"GET"}}} {
		if !h.IsSet() {
			t.Errorf("%+v.IsSet() = false", h)
		}
	}
}

// TestValidateIncoming checks the messages of Validate, which Apply uses
// for a Config that did not come from Load.
func TestValidateIncoming(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   Incoming
		want []string // lines of the error, in order; none means valid
	}{
		{name: "defaults", in: Default().Incoming},
		{
			name: "steal with every filter",
			in: Incoming{Mode: ModeSteal, Mirror: MirrorRedirect, HTTP: HTTPFilter{
				Headers: []string{"X-Debug-User: alice", "x-empty:", "X-Tab:\t^a b$\t", " X-Spaced : a "},
				Path:    `^/api/(orders|users)\?`,
				Methods: []string{"GET", "patch", "M-SEARCH"},
			}},
		},
		{
			name: "mirror by capture",
			in:   Incoming{Mode: ModeMirror, Mirror: MirrorCapture, Ports: IncomingPorts{Map: []string{"1:65535", "65535:1"}, Ignore: []string{"1-65535"}}},
		},
		{
			name: "capture cannot steal",
			in:   Incoming{Mode: ModeSteal, Mirror: MirrorCapture},
			want: []string{`incoming.mirror: "capture" only copies connections and cannot steal them: set incoming.mode to mirror or incoming.mirror to redirect`},
		},
		{
			name: "filter without steal",
			in:   Incoming{Mode: ModeMirror, Mirror: MirrorRedirect, HTTP: HTTPFilter{Methods: []string{"GET"}}},
			want: []string{`incoming.http: an HTTP filter picks the requests to steal, and incoming.mode is mirror: add incoming.mode: steal (or the flag --steal)`},
		},
		{
			name: "unknown mode and method, and no complaint about the filter",
			in:   Incoming{Mode: "Steal", Mirror: "copy", HTTP: HTTPFilter{Path: "x"}},
			want: []string{
				`incoming.mode: unknown mode "Steal": want mirror or steal`,
				`incoming.mirror: unknown mirror method "copy": want redirect, capture or tap`,
			},
		},
		{
			name: "port maps",
			in: Incoming{Mode: ModeMirror, Mirror: MirrorRedirect, Ports: IncomingPorts{
				Map: []string{"8080:80", "8080:80", "8080:81", "8081:80", "80:8080", " 1:2", "1:2:3", "+1:2", "1-2:3", ":80", "65536:1"},
			}},
			want: []string{
				`incoming.ports.map[2]: local port 8080 is mapped twice, by "8080:80" and "8080:81": keep one`,
				`incoming.ports.map[3]: target port 80 is mapped to by both "8080:80" and "8081:80": only one local port can receive it`,
				`incoming.ports.map[5]: invalid port mapping " 1:2": want LOCAL:TARGET like "8080:80", with ports from 1 to 65535`,
				`incoming.ports.map[6]: invalid port mapping "1:2:3": want LOCAL:TARGET like "8080:80", with ports from 1 to 65535`,
				`incoming.ports.map[7]: invalid port mapping "+1:2": want LOCAL:TARGET like "8080:80", with ports from 1 to 65535`,
				`incoming.ports.map[8]: invalid port mapping "1-2:3": want LOCAL:TARGET like "8080:80", with ports from 1 to 65535`,
				`incoming.ports.map[9]: invalid port mapping ":80": want LOCAL:TARGET like "8080:80", with ports from 1 to 65535`,
				`incoming.ports.map[10]: invalid port mapping "65536:1": want LOCAL:TARGET like "8080:80", with ports from 1 to 65535`,
			},
		},
		{
			name: "ignored ports",
			in:   Incoming{Mode: ModeMirror, Mirror: MirrorRedirect, Ports: IncomingPorts{Ignore: []string{"80", "x", "0-10"}}},
			want: []string{
				`incoming.ports.ignore[1]: invalid port "x": want a port like "5432" or a range like "8000-8100", from 1 to 65535`,
				`incoming.ports.ignore[2]: invalid port "0-10": want a port like "5432" or a range like "8000-8100", from 1 to 65535`,
			},
		},
		{
			name: "HTTP filter entries",
			in: Incoming{Mode: ModeSteal, Mirror: MirrorRedirect, HTTP: HTTPFilter{
				Headers: []string{"alice", "X User: a", "(x): a", "X-User: a(", "X-User: \\p{Nope}", "Ünïcode: a"},
				Path:    "a**",
				Methods: []string{"GET /", "", "GÉT"},
			}},
			want: []string{
				`incoming.http.headers[0]: invalid header filter "alice": want "Name: regex" like "X-Debug-User: alice"`,
				`incoming.http.headers[1]: invalid header name "X User" in header filter "X User: a": want a name like "X-Debug-User", without spaces or separators`,
				`incoming.http.headers[2]: invalid header name "(x)" in header filter "(x): a": want a name like "X-Debug-User", without spaces or separators`,
				"incoming.http.headers[3]: invalid regular expression in header filter \"X-User: a(\": error parsing regexp: missing closing ): `a(`",
				"incoming.http.headers[4]: invalid regular expression in header filter \"X-User: \\\\p{Nope}\": error parsing regexp: invalid character class range: `\\p{Nope}`",
				`incoming.http.headers[5]: invalid header name "Ünïcode" in header filter "Ünïcode: a": want a name like "X-Debug-User", without spaces or separators`,
				"incoming.http.path: invalid path regular expression \"a**\": error parsing regexp: invalid nested repetition operator: `**`",
				`incoming.http.methods[0]: invalid HTTP method "GET /": want a method like "GET"`,
				`incoming.http.methods[1]: empty HTTP method: want a method like "GET"`,
				`incoming.http.methods[2]: invalid HTTP method "GÉT": want a method like "GET"`,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			c.Incoming = tc.in
			err := c.Validate()
			var got []string
			if err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("Validate():\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestNormalizeMethods(t *testing.T) {
	c := Default()
	c.Incoming.HTTP.Methods = []string{"get", "Post", "m-search", "ſet", "x y"}
	c.normalize()
	want := []string{"GET", "POST", "M-SEARCH", "ſet", "x y"} // invalid ones stay for Validate to report
	if strings.Join(c.Incoming.HTTP.Methods, ",") != strings.Join(want, ",") {
		t.Errorf("normalized methods = %q, want %q", c.Incoming.HTTP.Methods, want)
	}
}

// TestSchemaPatterns checks the schema's patterns for incoming entries
// against the checks they stand for.
func TestSchemaPatterns(t *testing.T) {
	header := regexp.MustCompile(headerFilterPattern)
	method := regexp.MustCompile(methodPattern)
	for _, s := range []string{"X-Debug-User: alice", "a:", "!#$%&'*+-.^_`|~09azAZ: x", "X: (", " X :a", "\tX\t:"} {
		name, _, _ := strings.Cut(s, ":")
		if got, want := header.MatchString(s), isToken(strings.TrimSpace(name)); got != want {
			t.Errorf("header pattern on %q = %v, want %v", s, got, want)
		}
	}
	for _, s := range []string{"", "X", "x y", "X User: a", ": a", " : a", "Ü: a", "X-\u00e9: a"} {
		if header.MatchString(s) {
			t.Errorf("header pattern accepts %q", s)
		}
	}
	for _, s := range []string{"GET", "get", "M-SEARCH", "", "G T", "GÉT", "GET\n"} {
		if got, want := method.MatchString(s), checkMethod(s) == nil; got != want {
			t.Errorf("method pattern on %q = %v, want %v", s, got, want)
		}
	}
}

// FuzzHeaderFilter checks that a header filter Check accepts keeps its
// meaning when written back as "Name: pattern", the form the CLI shows.
func FuzzHeaderFilter(f *testing.F) {
	for _, s := range []string{"X-Debug-User: alice", "a:", "X: ^a b$ ", "X:\t(", ": a", "X Y: z", "Host: ^orders\\."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		hf, err := parseHeaderFilter(s)
		if err != nil {
			return
		}
		if !isToken(hf.name) {
			t.Fatalf("%q: name %q is not a token", s, hf.name)
		}
		again, err := parseHeaderFilter(hf.name + ": " + hf.re.String())
		if err != nil {
			t.Fatalf("%q written back as %q: %v", s, hf.name+": "+hf.re.String(), err)
		}
		if again.name != hf.name || again.re.String() != hf.re.String() {
			t.Fatalf("%q: parsed as %q %q, then as %q %q", s, hf.name, hf.re, again.name, again.re)
		}
	})
}
