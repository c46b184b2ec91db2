package config

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agnivade/levenshtein"
	"gopkg.in/yaml.v3"
)

// Problem is one thing wrong with a configuration file, at a 1-based line and
// column. Line or Column is 0 when the parser could not say.
type Problem struct {
	File   string
	Line   int
	Column int
	Msg    string
}

// String formats p as FILE:LINE:COL: msg, leaving out a position part that is 0.
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
		if p.Column > 0 {
			fmt.Fprintf(&b, ":%d", p.Column)
		}
	}
	b.WriteString(": ")
	b.WriteString(p.Msg)
	return b.String()
}

// ProblemsError is the error Load returns for a file that fails Check.
type ProblemsError struct {
	File     string
	Problems []Problem
}

func (e *ProblemsError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Check reports every problem in the configuration file data: YAML syntax,
// unknown keys, values of the wrong type and invalid values, sorted by
// position. name is the file name the problems carry. An empty file has no
// problems.
func Check(name string, data []byte) []Problem {
	_, problems := parse(name, data)
	return problems
}

// maxNodes bounds the work of one decode, so that aliases nested in aliases
// (the "billion laughs") cannot make it exponential.
const maxNodes = 100_000

// maxMerges bounds nested "<<" merges, which could otherwise loop.
const maxMerges = 16

// decoder sets a Config from a yaml.v3 node tree by reflection, recording
// problems instead of stopping at the first.
type decoder struct {
	file     string
	problems []Problem
	// pos maps each field path ("outgoing.local.cidrs[1]") to the node that
	// set it, to place value problems found after decoding.
	pos   map[string]*yaml.Node
	nodes int
	// bad holds the paths with a type problem, whose zero values are not
	// worth a second complaint from validate.
	bad map[string]bool
	// merges counts the "<<" merges being applied, to stop one that merges itself.
	merges int
}

// parse decodes data over Default(), normalizes it and validates the result.
func parse(name string, data []byte) (*Config, []Problem) {
	c := Default()
	d := &decoder{file: name, pos: map[string]*yaml.Node{}, bad: map[string]bool{}}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return c, nil
		}
		return c, []Problem{d.syntaxProblem(err)}
	}
	d.document(&doc, c)

	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		// A lone "---" at the end is an empty document and harmless.
		if len(extra.Content) > 0 && !isNull(resolve(extra.Content[0])) {
			d.errorf(extra.Content[0], "a second YAML document: a configuration file holds one")
		}
	case !errors.Is(err, io.EOF):
		d.problems = append(d.problems, d.syntaxProblem(err))
	}

	c.normalize()
	for _, fe := range c.validate() {
		if d.bad[fe.path] || slices.ContainsFunc(fe.reads, func(p string) bool { return d.bad[p] }) {
			continue
		}
		p := Problem{File: name, Msg: fe.path + ": " + fe.err.Error()}
		if n := d.pos[fe.path]; n != nil {
			p.Line, p.Column = n.Line, n.Column
		}
		d.problems = append(d.problems, p)
	}
	slices.SortStableFunc(d.problems, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
	// A problem met twice, as through a merge applied twice, is reported once.
	return c, slices.Compact(d.problems)
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// syntaxProblem turns a yaml.v3 parse error into a Problem, taking the line
// out of the message when it has one.
func (d *decoder) syntaxProblem(err error) Problem {
	p := Problem{File: d.file}
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		p.Line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	p.Msg = "syntax error: " + msg
	return p
}

// typeErrorf reports that the value at path has the wrong type.
func (d *decoder) typeErrorf(n *yaml.Node, path, format string, args ...any) {
	d.bad[path] = true
	d.errorf(n, "%s: "+format, append([]any{path}, args...)...)
}

func (d *decoder) errorf(n *yaml.Node, format string, args ...any) {
	d.problems = append(d.problems, Problem{File: d.file, Line: n.Line, Column: n.Column, Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) document(doc *yaml.Node, c *Config) {
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return
	}
	n := resolve(doc.Content[0])
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "want a mapping of keys like \"target:\" at the top, got %s", describe(n))
		return
	}
	d.decode(n, reflect.ValueOf(c).Elem(), "")
}

var durationType = reflect.TypeFor[Duration]()

// decode sets v from n. path names v the way the file does, "" for the top.
// A null leaves v as it was, so that it keeps its default.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	d.nodes++
	if d.nodes > maxNodes {
		if d.nodes == maxNodes+1 {
			d.errorf(n, "too many values (aliases nested too deep?): stopped checking here")
		}
		return
	}
	n = resolve(n)
	if path != "" {
		d.pos[path] = n
	}
	if isNull(n) {
		return
	}
	if !standardTags[n.ShortTag()] {
		d.typeErrorf(n, path, "unsupported tag %s", n.ShortTag())
		return
	}

	if v.Type() == durationType {
		if n.Kind != yaml.ScalarNode {
			d.typeErrorf(n, path, "want a duration like \"5s\", got %s", describe(n))
			return
		}
		t, err := time.ParseDuration(n.Value)
		if err != nil {
			d.typeErrorf(n, path, "want a duration like \"5s\", got %q", n.Value)
			return
		}
		v.SetInt(int64(t))
		return
	}

	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			// A problem below leaves the field unset rather than zero.
			e := reflect.New(v.Type().Elem())
			before := len(d.problems)
			d.decode(n, e.Elem(), path)
			if len(d.problems) == before {
				v.Set(e)
			}
			return
		}
		d.decode(n, v.Elem(), path)
	case reflect.Bool:
		b, ok := parseBool(n)
		if !ok {
			d.typeErrorf(n, path, "want true or false, got %s", describe(n))
			return
		}
		v.SetBool(b)
	case reflect.String:
		// Numbers and booleans are taken as written: ports: [5432] is fine.
		if n.Kind != yaml.ScalarNode {
			d.typeErrorf(n, path, "want a string, got %s", describe(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.typeErrorf(n, path, "want a list, got %s", describe(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.Map:
		d.mapping(n, path, func(key *yaml.Node, val *yaml.Node) {
			if v.IsNil() {
				v.Set(reflect.MakeMap(v.Type()))
			}
			e := reflect.New(v.Type().Elem()).Elem()
			d.decode(val, e, path+"."+key.Value)
			v.SetMapIndex(reflect.ValueOf(key.Value).Convert(v.Type().Key()), e)
		})
	case reflect.Struct:
		fields := yamlFields(v.Type())
		d.mapping(n, path, func(key *yaml.Node, val *yaml.Node) {
			i, ok := fields[key.Value]
			if !ok {
				d.unknownKey(key, path, fields)
				return
			}
			d.decode(val, v.Field(i), join(path, key.Value))
		})
	default:
		// Config holds no other kinds; a new field of another kind needs a case here.
		panic(fmt.Sprintf("config: cannot decode into %s at %s", v.Type(), path))
	}
}

// mapping calls set for each key and value of the mapping n, after the
// entries merged in with "<<", so that keys written out win over merged ones
// as in YAML. It reports keys that are not strings and keys set twice.
func (d *decoder) mapping(n *yaml.Node, path string, set func(key, val *yaml.Node)) {
	if n.Kind != yaml.MappingNode {
		d.typeErrorf(n, path, "want a mapping, got %s", describe(n))
		return
	}
	seen := map[string]*yaml.Node{}
	for pass := range 2 {
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := resolve(n.Content[i]), n.Content[i+1]
			isMerge := key.Kind == yaml.ScalarNode && key.ShortTag() == "!!merge"
			if isMerge != (pass == 0) {
				continue
			}
			if isMerge {
				d.merge(val, path, set)
				continue
			}
			if key.Kind != yaml.ScalarNode || isNull(key) {
				d.errorf(key, "%s: want a name as key, got %s", orTop(path), describe(key))
				continue
			}
			if prev := seen[key.Value]; prev != nil {
				d.errorf(key, "%q set again (first set on line %d)", join(path, key.Value), prev.Line)
				continue
			}
			seen[key.Value] = key
			set(key, val)
		}
	}
}

// merge applies a "<<" value: a mapping or a list of mappings, earlier ones
// winning over later ones.
func (d *decoder) merge(val *yaml.Node, path string, set func(key, val *yaml.Node)) {
	val = resolve(val)
	d.nodes++
	if d.nodes > maxNodes {
		return
	}
	if d.merges >= maxMerges {
		d.errorf(val, "%s: merges with << nested more than %d deep", orTop(path), maxMerges)
		return
	}
	d.merges++
	defer func() { d.merges-- }()
	switch val.Kind {
	case yaml.MappingNode:
		d.mapping(val, path, set)
	case yaml.SequenceNode:
		// Set the list back to front so that the first mapping wins.
		for i := len(val.Content) - 1; i >= 0; i-- {
			m := resolve(val.Content[i])
			if m.Kind != yaml.MappingNode {
				d.errorf(m, "%s: want a mapping to merge with <<, got %s", orTop(path), describe(m))
				continue
			}
			d.mapping(m, path, set)
		}
	default:
		d.errorf(val, "%s: want a mapping or a list of mappings to merge with <<, got %s", orTop(path), describe(val))
	}
}

func (d *decoder) unknownKey(key *yaml.Node, path string, fields map[string]int) {
	msg := fmt.Sprintf("unknown key %q", key.Value)
	if path != "" {
		msg += " in " + path
	}
	if s := closest(key.Value, fields); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	d.errorf(key, "%s", msg)
}

// closest returns the known key nearest to key by edit distance, ignoring
// case, or "" when none is near enough to be a likely typo.
func closest(key string, fields map[string]int) string {
	best, bestDist := "", -1
	for _, name := range slices.Sorted(maps.Keys(fields)) {
		dist := levenshtein.ComputeDistance(strings.ToLower(key), strings.ToLower(name))
		if bestDist < 0 || dist < bestDist {
			best, bestDist = name, dist
		}
	}
	if bestDist < 0 || bestDist > max(2, len(key)/3) || bestDist >= len(key) {
		return ""
	}
	return best
}

// yamlFields maps the yaml key of each field of struct type t to its index.
func yamlFields(t reflect.Type) map[string]int {
	fields := map[string]int{}
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name != "" && name != "-" {
			fields[name] = i
		}
	}
	return fields
}

// standardTags are the YAML tags a configuration file may use, explicitly or
// not; local tags like "!foo" and !!binary mean nothing to doppel.
// A plain "<<" is tagged !!merge; as a value rather than a key it is a string.
var standardTags = map[string]bool{
	"!!str": true, "!!int": true, "!!float": true, "!!bool": true, "!!null": true,
	"!!timestamp": true, "!!merge": true, "!!seq": true, "!!map": true,
}

// parseBool reads a YAML 1.2 boolean, true or false in any of its three
// spellings; "yes" and "on" are strings.
func parseBool(n *yaml.Node) (b, ok bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
		return false, false
	}
	switch n.Value {
	case "true", "True", "TRUE":
		return true, true
	case "false", "False", "FALSE":
		return false, true
	}
	return false, false
}

// resolve follows an alias to the node it names.
func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names what n is, for "want X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return strconv.Quote(n.Value)
	}
	return "nothing"
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func orTop(path string) string {
	if path == "" {
		return "top level"
	}
	return path
}
