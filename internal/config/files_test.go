package config

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPathPatternMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		yes, no []string
	}{
		{
			pattern: "/etc/app",
			yes:     []string{"/etc/app", "/etc/app/x", "/etc/app/x/y.conf"},
			no:      []string{"/etc/apple", "/etc/ap", "/etc", "/", "/etc/app.d", "/x/etc/app"},
		},
		{
			pattern: "/etc/app/", // a trailing slash is ignored
			yes:     []string{"/etc/app", "/etc/app/x"},
			no:      []string{"/etc/apple", "/etc"},
		},
		{
			pattern: "/",
			yes:     []string{"/", "/etc", "/a/b/c"},
		},
		{
			pattern: `/odd\name`, // no metacharacter: the backslash is a plain character
			yes:     []string{`/odd\name`, `/odd\name/x`},
			no:      []string{"/oddname"},
		},
		{
			pattern: "/etc/*.conf",
			yes:     []string{"/etc/a.conf", "/etc/.conf", "/etc/x.y.conf"},
			no:      []string{"/etc/a.conf/x", "/etc/d/a.conf", "/etc/a.confx", "/etc"},
		},
		{
			pattern: "/etc/*/",
			yes:     []string{"/etc/a", "/etc/.hidden"},
			no:      []string{"/etc", "/etc/a/b"},
		},
		{
			pattern: "/*",
			yes:     []string{"/a", "/etc"},
			no:      []string{"/", "/a/b"},
		},
		{
			pattern: "/home/?ob",
			yes:     []string{"/home/bob", "/home/rob"},
			no:      []string{"/home/ob", "/home/boob", "/home/bob/x"},
		},
		{
			pattern: "/proc/[0-9]*/environ",
			yes:     []string{"/proc/1/environ", "/proc/1234/environ"},
			no:      []string{"/proc/self/environ", "/proc/1/environ/x", "/proc/1/cmdline"},
		},
		{
			pattern: "/x/[^a-c]",
			yes:     []string{"/x/d", "/x/z"},
			no:      []string{"/x/a", "/x/c", "/x/dd"},
		},
		{
			pattern: `/lit/\*`, // escaped star: only the name "*"
			yes:     []string{"/lit/*"},
			no:      []string{"/lit/a", `/lit/\*`},
		},
		{
			pattern: `/a\b/*`, // in a glob pattern the backslash escapes, in every element
			yes:     []string{"/ab/x"},
			no:      []string{`/a\b/x`},
		},
		{
			pattern: "/var/run/secrets/**", // ** at the end: the directory and everything below
			yes:     []string{"/var/run/secrets", "/var/run/secrets/a", "/var/run/secrets/a/b/c"},
			no:      []string{"/var/run/secretsx", "/var/run", "/var/run/secrets2/a"},
		},
		{
			pattern: "/**/.git", // ** at the start
			yes:     []string{"/.git", "/src/.git", "/a/b/c/.git"},
			no:      []string{"/src/.git/config", "/src/git", "/"},
		},
		{
			pattern: "/**",
			yes:     []string{"/", "/a", "/a/b"},
		},
		{
			pattern: "/home/**/.cache/**", // ** in the middle and at the end
			yes:     []string{"/home/.cache", "/home/u/.cache", "/home/u/v/.cache/x/y"},
			no:      []string{"/home", "/home/u", "/home/u/cache/x", "/homes/u/.cache"},
		},
		{
			pattern: "/a/**/b/c", // backtracking past a partial match
			yes:     []string{"/a/b/c", "/a/b/b/c", "/a/x/b/y/b/c", "/a/b/c/b/c"},
			no:      []string{"/a/b/c/d", "/a/b", "/a/c", "/a/b/x/c"},
		},
		{
			pattern: "/a/**/**/b",
			yes:     []string{"/a/b", "/a/x/b", "/a/x/y/b"},
			no:      []string{"/a", "/a/x"},
		},
		{
			pattern: "/a/**b", // "**" inside an element is two "*"
			yes:     []string{"/a/b", "/a/xb"},
			no:      []string{"/a/x/b"},
		},
		{
			pattern: "/*/x/*.log",
			yes:     []string{"/srv/x/a.log"},
			no:      []string{"/srv/y/a.log", "/srv/x/a.log/b", "/x/a.log"},
		},
	} {
		p, err := parsePathPattern(tc.pattern)
		if err != nil {
			t.Errorf("parsePathPattern(%q): %v", tc.pattern, err)
			continue
		}
		for _, s := range tc.yes {
			if !p.match(s) {
				t.Errorf("%q does not match %q, want a match", tc.pattern, s)
			}
		}
		for _, s := range tc.no {
			if p.match(s) {
				t.Errorf("%q matches %q, want no match", tc.pattern, s)
			}
		}
	}
}

func TestCheckPathPattern(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{in: "/etc/app"},
		{in: "/etc/app/"},
		{in: "/"},
		{in: "/**"},
		{in: "/a/[!x]/b"},
		{in: "/has space/and,comma"},
		{in: "", want: `empty path pattern: want an absolute path like "/etc/app" or a glob like "/var/run/secrets/**"`},
		{in: "etc/app", want: `path pattern "etc/app" is not absolute: want a path that starts with "/", like "/etc/app"`},
		{in: "*.conf", want: `path pattern "*.conf" is not absolute: want a path that starts with "/", like "/*.conf"`},
		{in: "~/.config", want: `path pattern "~/.config" is not absolute, and "~" is not expanded: write the home directory's absolute path`},
		{in: "/etc/../app", want: `path pattern "/etc/../app" has a ".." element: write the clean path "/app"`},
		{in: "/etc/./app/", want: `path pattern "/etc/./app/" has a "." element: write the clean path "/etc/app"`},
		{in: "/etc/..", want: `path pattern "/etc/.." has a ".." element: write the clean path "/"`},
		{in: "/etc//app", want: `path pattern "/etc//app" has an empty element ("//"): write "/etc/app"`},
		{in: "//", want: `path pattern "//" has an empty element ("//"): write "/"`},
		{in: "/etc/app//", want: `path pattern "/etc/app//" has an empty element ("//"): write "/etc/app"`},
		{in: "/etc/[a-", want: `invalid path pattern "/etc/[a-": element "[a-": syntax error in pattern`},
		{in: "/x/*/[]", want: `invalid path pattern "/x/*/[]": element "[]": syntax error in pattern`},
		{in: `/x/*\`, want: `invalid path pattern "/x/*\\": element "*\\": syntax error in pattern`},
		{in: "/a\x00b", want: `path pattern "/a\x00b" contains a NUL byte, which no path has`},
	} {
		err := checkPathPattern(tc.in)
		var got string
		if err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("checkPathPattern(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// decision is what Decide returned, for comparing with cmp.
type decision struct {
	Class PathClass
	Rule  PathRule
}

func TestPathRulesDecide(t *testing.T) {
	defaults := []PathRule{
		{Pattern: "/etc/resolv.conf", Class: PathRemoteRead, Origin: "default: the target's resolver"},
		{Pattern: "/var/run/secrets", Class: PathRemoteWrite, Origin: "default: mounted volume of the target"},
		{Pattern: "/tmp", Class: PathLocal, Origin: "default: this machine's /tmp"},
		{Pattern: "/**/*.pem", Class: PathNotFound, Origin: "default: no keys"},
		{Pattern: "/var/**", Class: PathRemoteRead, Origin: "default: the target's /var"},
	}
	files := Files{
		Mode:      FilesModeWrite,
		ReadOnly:  []string{"/etc/app", "/data/ro/**", "/shared"},
		ReadWrite: []string{"/data", "/shared/*.log"},
		Local:     []string{"/data/local", "/etc/app/local.conf", "/shared/own.log"},
		NotFound:  []string{"/etc/app/debug", "/data/local/gone", "/var/run/secrets/token"},
	}
	rule := func(list string, i int, class PathClass) PathRule {
		l := map[string][]string{"readOnly": files.ReadOnly, "readWrite": files.ReadWrite, "local": files.Local, "notFound": files.NotFound}[list]
		return PathRule{Pattern: l[i], Class: class, Origin: fmt.Sprintf("files.%s[%d]", list, i)}
	}
	noMatch := PathRule{Origin: "default: everything else is this machine's"}
	withMode := func(mode string) Files { f := files; f.Mode = mode; return f }

	for _, tc := range []struct {
		name  string
		files Files
		path  string
		want  decision
	}{
		{"readOnly", files, "/etc/app/config.yaml", decision{PathRemoteRead, rule("readOnly", 0, PathRemoteRead)}},
		{"readWrite", files, "/data/db", decision{PathRemoteWrite, rule("readWrite", 0, PathRemoteWrite)}},
		{"readWrite wins over readOnly", files, "/data/ro/x", decision{PathRemoteWrite, rule("readWrite", 0, PathRemoteWrite)}},
		{"readWrite glob wins over readOnly prefix", files, "/shared/app.log", decision{PathRemoteWrite, rule("readWrite", 1, PathRemoteWrite)}},
		{"readOnly when the glob does not match", files, "/shared/app.txt", decision{PathRemoteRead, rule("readOnly", 2, PathRemoteRead)}},
		{"local wins over readOnly", files, "/etc/app/local.conf", decision{PathLocal, rule("local", 1, PathLocal)}},
		{"local wins over readWrite", files, "/data/local/x", decision{PathLocal, rule("local", 0, PathLocal)}},
		{"local wins over readWrite glob", files, "/shared/own.log", decision{PathLocal, rule("local", 2, PathLocal)}},
		{"notFound wins over readOnly", files, "/etc/app/debug", decision{PathNotFound, rule("notFound", 0, PathNotFound)}},
		{"notFound wins over local", files, "/data/local/gone/x", decision{PathNotFound, rule("notFound", 1, PathNotFound)}},
		{"notFound wins over defaults", files, "/var/run/secrets/token", decision{PathNotFound, rule("notFound", 2, PathNotFound)}},
		{"prefix by whole elements", files, "/etc/apple", decision{PathLocal, noMatch}},
		{"user rules win over defaults", files, "/data/key.pem", decision{PathRemoteWrite, rule("readWrite", 0, PathRemoteWrite)}},
		{"first default", files, "/etc/resolv.conf", decision{PathRemoteRead, defaults[0]}},
		{"default read-write", files, "/var/run/secrets/ca.crt", decision{PathRemoteWrite, defaults[1]}},
		{"default local", files, "/tmp/go-build1", decision{PathLocal, defaults[2]}},
		{"defaults in their order", files, "/var/lib/x.pem", decision{PathNotFound, defaults[3]}},
		{"later default", files, "/var/lib/x", decision{PathRemoteRead, defaults[4]}},
		{"no rule", files, "/usr/bin/go", decision{PathLocal, noMatch}},
		{"root", files, "/", decision{PathLocal, noMatch}},
		{"not absolute", files, "etc/app", decision{PathLocal, PathRule{Origin: "not an absolute path: this machine's"}}},
		{"empty", files, "", decision{PathLocal, PathRule{Origin: "not an absolute path: this machine's"}}},

		{"read mode: readWrite is only read", withMode("read"), "/data/db", decision{PathRemoteRead, rule("readWrite", 0, PathRemoteWrite)}},
		{"read mode: default read-write is only read", withMode("read"), "/var/run/secrets/ca.crt", decision{PathRemoteRead, defaults[1]}},
		{"read mode: readOnly", withMode("read"), "/etc/app", decision{PathRemoteRead, rule("readOnly", 0, PathRemoteRead)}},
		{"read mode: notFound", withMode("read"), "/etc/app/debug", decision{PathNotFound, rule("notFound", 0, PathNotFound)}},
		{"read mode: local", withMode("read"), "/data/local", decision{PathLocal, rule("local", 0, PathLocal)}},

		{"local mode: readOnly", withMode("local"), "/etc/app", decision{PathLocal, PathRule{Origin: "files.mode: local"}}},
		{"local mode: notFound too", withMode("local"), "/etc/app/debug", decision{PathLocal, PathRule{Origin: "files.mode: local"}}},
		{"local mode: defaults too", withMode("local"), "/etc/resolv.conf", decision{PathLocal, PathRule{Origin: "files.mode: local"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := tc.files.PathRules(defaults)
			if err != nil {
				t.Fatal(err)
			}
			class, rule := r.Decide(tc.path)
			if diff := cmp.Diff(tc.want, decision{class, rule}); diff != "" {
				t.Errorf("Decide(%q) (-want +got):\n%s", tc.path, diff)
			}
		})
	}
}

func TestPathRulesOrder(t *testing.T) {
	f := Files{Mode: FilesModeRead, ReadOnly: []string{"/ro"}, ReadWrite: []string{"/rw"}, Local: []string{"/l"}, NotFound: []string{"/nf0", "/nf1"}}
	d := []PathRule{{Pattern: "/d", Class: PathRemoteWrite, Origin: "default: d"}}
	r, err := f.PathRules(d)
	if err != nil {
		t.Fatal(err)
	}
	want := []PathRule{
		{Pattern: "/nf0", Class: PathNotFound, Origin: "files.notFound[0]"},
		{Pattern: "/nf1", Class: PathNotFound, Origin: "files.notFound[1]"},
		{Pattern: "/l", Class: PathLocal, Origin: "files.local[0]"},
		{Pattern: "/rw", Class: PathRemoteWrite, Origin: "files.readWrite[0]"},
		{Pattern: "/ro", Class: PathRemoteRead, Origin: "files.readOnly[0]"},
		{Pattern: "/d", Class: PathRemoteWrite, Origin: "default: d"},
	}
	if diff := cmp.Diff(want, r.Rules()); diff != "" {
		t.Errorf("Rules() (-want +got):\n%s", diff)
	}
	if r.Mode() != FilesModeRead {
		t.Errorf("Mode() = %q, want read", r.Mode())
	}
}

func TestPathRulesErrors(t *testing.T) {
	for _, tc := range []struct {
		files    Files
		defaults []PathRule
		want     string
	}{
		{files: Files{}, want: `files.mode: unknown mode "": want read, write or local`},
		{files: Files{Mode: "rw"}, want: `files.mode: unknown mode "rw": want read, write or local`},
		{files: Files{Mode: FilesModeRead, Local: []string{"/ok", "tmp"}}, want: `files.local[1]: path pattern "tmp" is not absolute`},
		{files: Files{Mode: FilesModeRead, NotFound: []string{"/[x"}}, want: `files.notFound[0]: invalid path pattern "/[x"`},
		{
			files:    Files{Mode: FilesModeRead},
			defaults: []PathRule{{Pattern: "/a/../b", Origin: "default: b"}},
			want:     `default rule 0 (default: b): path pattern "/a/../b" has a ".." element`,
		},
		{
			files:    Files{Mode: FilesModeRead},
			defaults: []PathRule{{Pattern: "/a"}, {Pattern: "/b", Class: PathNotFound + 1, Origin: "default: b"}},
			want:     `default rule 1 (default: b): unknown class 4`,
		},
	} {
		_, err := tc.files.PathRules(tc.defaults)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v.PathRules(%v) error = %v, want one containing %q", tc.files, tc.defaults, err, tc.want)
		}
	}
}

func TestPathClassString(t *testing.T) {
	for c, want := range map[PathClass]string{
		PathLocal: "local", PathRemoteRead: "remote-read", PathRemoteWrite: "remote-write", PathNotFound: "not-found", 9: "PathClass(9)",
	} {
		if got := c.String(); got != want {
			t.Errorf("PathClass(%d).String() = %q, want %q", int(c), got, want)
		}
	}
}

func TestFilesHelpers(t *testing.T) {
	if !Default().Files.IsEnabled() || !(Files{Mode: FilesModeWrite}).IsEnabled() {
		t.Errorf("read and write modes are not enabled")
	}
	if (Files{Mode: FilesModeLocal}).IsEnabled() {
		t.Errorf("local mode is enabled")
	}
}

// TestValidateFiles checks the messages of Validate for the files section.
func TestValidateFiles(t *testing.T) {
	c := Default()
	c.Files = Files{
		Mode:      "on",
		ReadOnly:  []string{"/ok", "rel"},
		ReadWrite: []string{"/a/./b"},
		Local:     []string{"/[z"},
		NotFound:  []string{"/x//y", "/fine/**"},
	}
	want := []string{
		`files.mode: unknown mode "on": want read, write or local`,
		`files.readOnly[1]: path pattern "rel" is not absolute: want a path that starts with "/", like "/rel"`,
		`files.readWrite[0]: path pattern "/a/./b" has a "." element: write the clean path "/a/b"`,
		`files.local[0]: invalid path pattern "/[z": element "[z": syntax error in pattern`,
		`files.notFound[0]: path pattern "/x//y" has an empty element ("//"): write "/x/y"`,
	}
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate() = nil")
	}
	if diff := cmp.Diff(want, strings.Split(err.Error(), "\n")); diff != "" {
		t.Errorf("Validate() (-want +got):\n%s", diff)
	}
}

func TestDecideAllocs(t *testing.T) {
	r := benchRules(t)
	for _, p := range benchPaths {
		if n := testing.AllocsPerRun(100, func() { r.Decide(p) }); n != 0 {
			t.Errorf("Decide(%q) allocates %v times, want 0", p, n)
		}
	}
}

// benchRules is a typical session: a few rules of the user's and the
// defaults a session gives.
func benchRules(tb testing.TB) *PathRules {
	tb.Helper()
	f := Files{
		Mode:     FilesModeWrite,
		ReadOnly: []string{"/etc/app", "/opt/config/**/*.yaml"},
		Local:    []string{"/home/**/.cache"},
		NotFound: []string{"/etc/app/debug.flag"},
	}
	r, err := f.PathRules([]PathRule{
		{Pattern: "/var/run/secrets", Class: PathRemoteRead, Origin: "default: mounted volume of the target"},
		{Pattern: "/etc/config", Class: PathRemoteRead, Origin: "default: mounted volume of the target"},
		{Pattern: "/etc/resolv.conf", Class: PathRemoteRead, Origin: "default: the target's resolver"},
		{Pattern: "/etc/hosts", Class: PathRemoteRead, Origin: "default: the target's resolver"},
		{Pattern: "/tmp", Class: PathLocal, Origin: "default: this machine's /tmp"},
		{Pattern: "/proc/[0-9]*/**", Class: PathLocal, Origin: "default: this machine's /proc"},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// benchPaths are what a program opens: its libraries and toolchain (no rule
// matches, every rule is tried), its config, a secret, temp files.
var benchPaths = []string{
	"/usr/lib/x86_64-linux-gnu/libc.so.6",
	"/home/dev/go/pkg/mod/cache/download/x/@v/list",
	"/etc/app/config.yaml",
	"/var/run/secrets/kubernetes.io/serviceaccount/token",
	"/tmp/go-build123/b001/exe/main",
	"/proc/1234/status",
	"/opt/config/a/b/app.yaml",
}

func BenchmarkDecide(b *testing.B) {
	r := benchRules(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r.Decide(benchPaths[i%len(benchPaths)])
		i++
	}
}

// BenchmarkDecideMiss is the most common case: a path that no rule matches.
func BenchmarkDecideMiss(b *testing.B) {
	r := benchRules(b)
	b.ReportAllocs()
	for b.Loop() {
		r.Decide("/usr/lib/x86_64-linux-gnu/libc.so.6")
	}
}

// refMatch is the plain recursive reading of the pattern rules, for the fuzz
// test to compare the compiled matcher with.
func refMatch(pattern, p string) bool {
	pat := strings.Split(strings.TrimSuffix(pattern, "/"), "/")[1:]
	elems := strings.Split(p, "/")[1:]
	if p == "/" {
		elems = nil
	}
	if pattern == "/" {
		pat = nil
	}
	if !strings.ContainsAny(pattern, "*?[") {
		return len(elems) >= len(pat) && slices.Equal(pat, elems[:len(pat)])
	}
	var rec func(pat, elems []string) bool
	rec = func(pat, elems []string) bool {
		if len(pat) == 0 {
			return len(elems) == 0
		}
		if pat[0] == "**" {
			return rec(pat[1:], elems) || len(elems) > 0 && rec(pat, elems[1:])
		}
		if len(elems) == 0 {
			return false
		}
		ok, _ := path.Match(pat[0], elems[0])
		return ok && rec(pat[1:], elems[1:])
	}
	return rec(pat, elems)
}

// FuzzPathPattern checks that parsing and matching never panic, that a
// pattern without metacharacters matches itself and what is below it, and
// that the compiled matcher agrees with the plain recursive reading.
func FuzzPathPattern(f *testing.F) {
	for _, s := range [][2]string{
		{"/etc/app", "/etc/app/x"},
		{"/etc/app/", "/etc/apple"},
		{"/", "/a"},
		{"/**/.git", "/a/b/.git"},
		{"/a/**/b/**/c", "/a/b/x/b/c"},
		{"/proc/[0-9]*/environ", "/proc/12/environ"},
		{`/x/\*`, "/x/*"},
		{"/a/[", "/a/["},
		{"rel", "/rel"},
		{"/a/../b", "/b"},
		{"/*?/**", "/ab/c"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, p string) {
		pp, err := parsePathPattern(pattern)
		pp.match(p) // any string, even one Decide's callers must not pass
		if err != nil {
			return
		}
		if !strings.HasPrefix(pattern, "/") {
			t.Fatalf("%q accepted, but it is not absolute", pattern)
		}
		if !strings.ContainsAny(pattern, "*?[") {
			self := strings.TrimSuffix(pattern, "/")
			if self == "" {
				self = "/"
			}
			if !pp.match(self) || !pp.match(path.Join(self, "x")) {
				t.Fatalf("%q does not match itself or what is below it", pattern)
			}
		}
		if strings.Count(pattern, "**") > 6 {
			return // the reference is exponential in the number of "**"
		}
		clean := path.Clean("/" + p)
		if got, want := pp.match(clean), refMatch(pattern, clean); got != want {
			t.Fatalf("%q on %q: match = %v, reference = %v", pattern, clean, got, want)
		}
	})
}
