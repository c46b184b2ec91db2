package config

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
)

// PathClass is what a path is for the program.
type PathClass int

// The classes of paths, from PathRules.Decide.
const (
	// PathLocal is this machine's file.
	PathLocal PathClass = iota
	// PathRemoteRead is the target's file, for reading; opening it for writing works on this
	// machine's file instead.
	PathRemoteRead
	// PathRemoteWrite is the target's file, read and written on the target.
	PathRemoteWrite
	// PathNotFound does not exist for the program: opening it fails with ENOENT.
	PathNotFound
)

// String names the class for logs: "local", "remote-read", "remote-write" or "not-found".
func (c PathClass) String() string {
	switch c {
	case PathLocal:
		return "local"
	case PathRemoteRead:
		return "remote-read"
	case PathRemoteWrite:
		return "remote-write"
	case PathNotFound:
		return "not-found"
	}
	return "PathClass(" + strconv.Itoa(int(c)) + ")"
}

// PathRule is one rule: a pattern (the syntax of the files section), the
// class it gives the paths it matches, and where it came from, for logs:
// "files.readOnly[2]", "default: mounted volume of the target".
type PathRule struct {
	Pattern string
	Class   PathClass
	Origin  string
}

// Origins of the decisions that no rule of the lists or the defaults made.
const (
	OriginModeLocal   = "files.mode: local"
	OriginNoMatch     = "default: everything else is this machine's"
	OriginNotAbsolute = "not an absolute path: this machine's"
)

// PathRules decides, path by path, whether the program's file operations use
// the target's files or this machine's. Build it with Files.PathRules; it is
// read-only afterwards and safe for concurrent use.
type PathRules struct {
	mode  string
	rules []compiledRule // in the order they are tried
}

type compiledRule struct {
	pattern pathPattern
	rule    PathRule
}

// PathRules compiles f's lists, followed by defaults, the rules the caller
// adds below the user's (mounted volumes of the target, this machine's
// toolchain and temporary files), in the order they are tried. It fails on
// an entry Check would reject and on a default that is not a valid rule.
func (f Files) PathRules(defaults []PathRule) (*PathRules, error) {
	if err := checkFilesMode(f.Mode); err != nil {
		return nil, fmt.Errorf("files.mode: %w", err)
	}
	r := &PathRules{mode: f.Mode}
	for _, l := range f.lists() {
		for i, s := range l.patterns {
			p, err := parsePathPattern(s)
			origin := fmt.Sprintf("files.%s[%d]", l.name, i)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", origin, err)
			}
			r.rules = append(r.rules, compiledRule{p, PathRule{Pattern: s, Class: l.class, Origin: origin}})
		}
	}
	for i, d := range defaults {
		if d.Class < PathLocal || d.Class > PathNotFound {
			return nil, fmt.Errorf("default rule %d (%s): unknown class %d", i, d.Origin, d.Class)
		}
		p, err := parsePathPattern(d.Pattern)
		if err != nil {
			return nil, fmt.Errorf("default rule %d (%s): %w", i, d.Origin, err)
		}
		r.rules = append(r.rules, compiledRule{p, d})
	}
	return r, nil
}

// filesList is one list of the files section, with the class its patterns give.
type filesList struct {
	name     string
	class    PathClass
	patterns []string
}

// lists returns f's lists in the order Decide tries them.
func (f Files) lists() []filesList {
	return []filesList{
		{"notFound", PathNotFound, f.NotFound},
		{"local", PathLocal, f.Local},
		{"readWrite", PathRemoteWrite, f.ReadWrite},
		{"readOnly", PathRemoteRead, f.ReadOnly},
	}
}

// Mode returns the files mode the rules were built with: read, write or local.
func (r *PathRules) Mode() string { return r.mode }

// Rules returns the rules in the order Decide tries them: the user's
// notFound, local, readWrite and readOnly lists, then the defaults. In local
// mode Decide tries none of them.
func (r *PathRules) Rules() []PathRule {
	out := make([]PathRule, len(r.rules))
	for i, cr := range r.rules {
		out[i] = cr.rule
	}
	return out
}

// Decide returns the class of path p and the rule that decided it. p must be
// absolute and clean (path.Clean); a path that does not start with "/" is
// this machine's. In local mode every path is this machine's, notFound
// patterns included. Otherwise the first matching rule decides, and in read
// mode a rule that gives PathRemoteWrite gives PathRemoteRead instead; the
// rule is returned as it was given, so its Class then differs from the
// result. A path no rule matches is this machine's, with a rule whose only
// field is Origin. Decide does not allocate.
func (r *PathRules) Decide(p string) (PathClass, PathRule) {
	if r.mode == FilesModeLocal {
		return PathLocal, PathRule{Origin: OriginModeLocal}
	}
	if len(p) == 0 || p[0] != '/' {
		return PathLocal, PathRule{Origin: OriginNotAbsolute}
	}
	for i := range r.rules {
		cr := &r.rules[i]
		if !cr.pattern.match(p) {
			continue
		}
		c := cr.rule.Class
		if c == PathRemoteWrite && r.mode != FilesModeWrite {
			c = PathRemoteRead
		}
		return c, cr.rule
	}
	return PathLocal, PathRule{Origin: OriginNoMatch}
}

// pathPattern is a compiled pattern: its leading literal elements as one
// string, compared by whole elements, and the elements after them.
type pathPattern struct {
	// prefix is the leading elements without "*", "?", "[" or "\", like
	// "/var/run"; "" when the first element has one, or for the pattern "/".
	prefix string
	// rest are the elements after prefix. Empty for a literal pattern, which
	// matches prefix and everything below it.
	rest []elemPattern
}

// elemPattern is one element of a glob pattern.
type elemPattern struct {
	s    string
	kind elemKind
}

type elemKind uint8

const (
	elemLiteral    elemKind = iota // compared as a string
	elemGlob                       // matched by path.Match
	elemDoubleStar                 // "**": zero or more elements
)

// parsePathPattern checks and compiles one pattern of the files section.
func parsePathPattern(s string) (pathPattern, error) {
	elems, err := splitPathPattern(s)
	if err != nil {
		return pathPattern{}, err
	}
	if !strings.ContainsAny(s, "*?[") {
		return pathPattern{prefix: joinElems(elems)}, nil
	}
	n := 0
	for n < len(elems) && !strings.ContainsAny(elems[n], `*?[\`) {
		n++
	}
	p := pathPattern{prefix: joinElems(elems[:n])}
	for _, e := range elems[n:] {
		switch {
		case e == "**":
			p.rest = append(p.rest, elemPattern{e, elemDoubleStar})
		case strings.ContainsAny(e, `*?[\`):
			if _, err := path.Match(e, ""); err != nil {
				return pathPattern{}, fmt.Errorf("invalid path pattern %q: element %q: %w", s, e, err)
			}
			p.rest = append(p.rest, elemPattern{e, elemGlob})
		default:
			p.rest = append(p.rest, elemPattern{e, elemLiteral})
		}
	}
	return p, nil
}

// splitPathPattern returns the elements of pattern s after checking that s is
// absolute and clean but for one trailing "/". The pattern "/" has none.
func splitPathPattern(s string) ([]string, error) {
	switch {
	case s == "":
		return nil, errors.New(`empty path pattern: want an absolute path like "/etc/app" or a glob like "/var/run/secrets/**"`)
	case strings.IndexByte(s, 0) >= 0:
		return nil, fmt.Errorf("path pattern %q contains a NUL byte, which no path has", s)
	case s[0] == '~':
		return nil, fmt.Errorf("path pattern %q is not absolute, and \"~\" is not expanded: write the home directory's absolute path", s)
	case s[0] != '/':
		return nil, fmt.Errorf("path pattern %q is not absolute: want a path that starts with \"/\", like %q", s, path.Join("/", s))
	}
	elems := strings.Split(s[1:], "/")
	if elems[len(elems)-1] == "" {
		elems = elems[:len(elems)-1] // a trailing "/", or the pattern "/"
	}
	for _, e := range elems {
		switch e {
		case "":
			return nil, fmt.Errorf("path pattern %q has an empty element (\"//\"): write %q", s, path.Clean(s))
		case ".", "..":
			return nil, fmt.Errorf("path pattern %q has a %q element: write the clean path %q", s, e, path.Clean(s))
		}
	}
	return elems, nil
}

func joinElems(elems []string) string {
	if len(elems) == 0 {
		return ""
	}
	return "/" + strings.Join(elems, "/")
}

func checkPathPattern(s string) error {
	_, err := parsePathPattern(s)
	return err
}

// match reports whether the absolute, clean path p matches. It does not allocate.
func (pp *pathPattern) match(p string) bool {
	if !strings.HasPrefix(p, pp.prefix) {
		return false
	}
	// The prefix must end at an element boundary: "/etc/app" is no prefix of "/etc/apple".
	if len(p) > len(pp.prefix) && p[len(pp.prefix)] != '/' {
		return false
	}
	if len(pp.rest) == 0 {
		return true
	}
	return matchElems(pp.rest, p, len(pp.prefix)+1)
}

// matchElems reports whether the elements of p from byte offset i on match
// pat. Elements of p are separated by "/"; i >= len(p) means none are left.
// A "**" first matches no element and takes one more each time what follows
// it fails, from the last "**" met: as with "*" in a string, that one
// backtracking point is enough.
func matchElems(pat []elemPattern, p string, i int) bool {
	pi := 0
	starPi, starI := -1, 0
	for i < len(p) {
		if pi < len(pat) {
			e := &pat[pi]
			if e.kind == elemDoubleStar {
				starPi, starI = pi, i
				pi++
				continue
			}
			name, next := elemAt(p, i)
			if e.matches(name) {
				pi, i = pi+1, next
				continue
			}
		}
		if starPi < 0 {
			return false
		}
		_, starI = elemAt(p, starI)
		pi, i = starPi+1, starI
	}
	for pi < len(pat) && pat[pi].kind == elemDoubleStar {
		pi++
	}
	return pi == len(pat)
}

// elemAt returns the element of p that starts at offset i and the offset of
// the element after it.
func elemAt(p string, i int) (name string, next int) {
	j := strings.IndexByte(p[i:], '/')
	if j < 0 {
		return p[i:], len(p) + 1
	}
	return p[i : i+j], i + j + 1
}

func (e *elemPattern) matches(name string) bool {
	if e.kind == elemLiteral {
		return e.s == name
	}
	ok, _ := path.Match(e.s, name)
	return ok
}

func checkFilesMode(s string) error {
	if !slices.Contains(FilesModes, s) {
		return fmt.Errorf("unknown mode %q: want %s, %s or %s", s, FilesModeRead, FilesModeWrite, FilesModeLocal)
	}
	return nil
}

// validate checks the files section; paths start with "files.".
func (f Files) validate() []fieldError {
	var fes []fieldError
	if err := checkFilesMode(f.Mode); err != nil {
		fes = append(fes, fieldError{path: "files.mode", err: err})
	}
	// In the order of the fields, which is how a file usually lists them.
	lists := f.lists()
	slices.Reverse(lists)
	for _, l := range lists {
		for i, s := range l.patterns {
			if err := checkPathPattern(s); err != nil {
				fes = append(fes, fieldError{path: fmt.Sprintf("files.%s[%d]", l.name, i), err: err})
			}
		}
	}
	return fes
}
