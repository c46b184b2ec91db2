package config

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestDescriptions keeps the descriptions map equal to the doc comments in
// config.go, which the JSON Schema cannot read at run time.
func TestDescriptions(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "config.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.TYPE {
			continue
		}
		for _, spec := range gd.Specs {
			ts := spec.(*ast.TypeSpec)
			doc := ts.Doc
			if doc == nil {
				doc = gd.Doc
			}
			want[ts.Name.Name] = commentText(doc)
			st, ok := ts.Type.(*ast.StructType)
			if !ok {
				continue
			}
			for _, field := range st.Fields.List {
				for _, name := range field.Names {
					want[ts.Name.Name+"."+name.Name] = commentText(field.Doc)
				}
			}
		}
	}
	for k, v := range want {
		if v == "" {
			t.Errorf("%s has no doc comment", k)
		}
	}
	if diff := cmp.Diff(want, descriptions); diff != "" {
		var b strings.Builder
		for _, k := range slices.Sorted(maps.Keys(want)) {
			fmt.Fprintf(&b, "\t%q: %q,\n", k, want[k])
		}
		t.Errorf("descriptions differ from the doc comments in config.go (-comments +map):\n%s\nwant:\n%s", diff, b.String())
	}
}

func commentText(g *ast.CommentGroup) string {
	if g == nil {
		return ""
	}
	return strings.Join(strings.Fields(g.Text()), " ")
}

func TestSchema(t *testing.T) {
	b, err := Schema()
	if err != nil {
		t.Fatal(err)
	}
	var s map[string]any
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("schema is not JSON: %v", err)
	}
	if got, want := s["$schema"], "https://json-schema.org/draft/2020-12/schema"; got != want {
		t.Errorf("$schema = %v, want %v", got, want)
	}
	// Walk every object schema: closed unless it is the override map, and
	// every property described.
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if props, ok := v["properties"].(map[string]any); ok {
				if v["additionalProperties"] != false {
					t.Errorf("%s: additionalProperties = %v, want false", path, v["additionalProperties"])
				}
				if _, ok := v["required"]; ok {
					t.Errorf("%s: has required keys %v, want all optional", path, v["required"])
				}
				for name, p := range props {
					if d, _ := p.(map[string]any)["description"].(string); d == "" {
						t.Errorf("%s.%s: no description", path, name)
					}
				}
			}
			for k, c := range v {
				walk(path+"/"+k, c)
			}
		case []any:
			for i, c := range v {
				walk(fmt.Sprintf("%s/%d", path, i), c)
			}
		}
	}
	walk("#", s)

	defs := s["$defs"].(map[string]any)
	override := defs["Env"].(map[string]any)["properties"].(map[string]any)["override"].(map[string]any)
	if diff := cmp.Diff(map[string]any{"type": "string"}, override["additionalProperties"]); diff != "" {
		t.Errorf("env.override values (-want +got):\n%s", diff)
	}

	// The enums in the struct tags are the values the checks accept, the
	// default (what Default sets) first.
	incoming := defs["Incoming"].(map[string]any)["properties"].(map[string]any)
	for key, values := range map[string][]string{"mode": IncomingModes, "mirror": MirrorMethods} {
		p := incoming[key].(map[string]any)
		var want []any
		for _, v := range values {
			want = append(want, v)
		}
		if diff := cmp.Diff(want, p["enum"]); diff != "" {
			t.Errorf("incoming.%s enum (-want +got):\n%s", key, diff)
		}
		if p["default"] != values[0] {
			t.Errorf("incoming.%s default = %v, want %v", key, p["default"], values[0])
		}
	}
	if d := Default().Incoming; d.Mode != IncomingModes[0] || d.Mirror != MirrorMethods[0] {
		t.Errorf("Default() incoming mode %q, mirror %q; want the first of IncomingModes and MirrorMethods", d.Mode, d.Mirror)
	}
	files := defs["Files"].(map[string]any)["properties"].(map[string]any)
	filesMode := files["mode"].(map[string]any)
	var wantModes []any
	for _, v := range FilesModes {
		wantModes = append(wantModes, v)
	}
	if diff := cmp.Diff(wantModes, filesMode["enum"]); diff != "" {
		t.Errorf("files.mode enum (-want +got):\n%s", diff)
	}
	if filesMode["default"] != FilesModes[0] || Default().Files.Mode != FilesModes[0] {
		t.Errorf("files.mode default = %v, Default() sets %q; want both %q", filesMode["default"], Default().Files.Mode, FilesModes[0])
	}
	for _, key := range []string{"readOnly", "readWrite", "local", "notFound"} {
		p := files[key].(map[string]any)
		if d, _ := p["description"].(string); !strings.Contains(d, `"**"`) {
			t.Errorf("files.%s description does not explain the patterns: %q", key, d)
		}
		re := regexp.MustCompile(p["items"].(map[string]any)["pattern"].(string))
		for _, s := range []string{"/etc/app", "/", "/**/x", "etc/app", "", "~/x", "*.conf"} {
			// The pattern may accept bad patterns; it must not reject good ones nor accept relative ones.
			if got, want := re.MatchString(s), checkPathPattern(s) == nil; got != want {
				t.Errorf("files.%s pattern on %q = %v, want %v", key, s, got, want)
			}
		}
	}
	mapItems := defs["IncomingPorts"].(map[string]any)["properties"].(map[string]any)["map"].(map[string]any)["items"].(map[string]any)
	re := regexp.MustCompile(mapItems["pattern"].(string))
	for _, s := range []string{"8080:80", "1:65535", "80", "8080:", "a:b", "8080-8081:80"} {
		// The pattern may accept out-of-range ports; it must not reject good entries nor accept bad shapes.
		if got, want := re.MatchString(s), checkPortMapping(s) == nil; got != want {
			t.Errorf("incoming.ports.map pattern on %q = %v, want %v", s, got, want)
		}
	}
}

// TestSchemaKubernetes checks what the schema says of the Kubernetes settings against the
// checks: the enums, and quantities that may be numbers.
func TestSchemaKubernetes(t *testing.T) {
	b, err := Schema()
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Properties map[string]json.RawMessage `json:"properties"`
		Defs       map[string]struct {
			Properties map[string]struct {
				Enum                 []string       `json:"enum"`
				AdditionalProperties map[string]any `json:"additionalProperties"`
			} `json:"properties"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Properties["kubernetes"]; !ok {
		t.Errorf("no kubernetes property")
	}
	for _, tc := range []struct {
		def, prop string
		want      []string
	}{
		{"AgentConfig", "pullPolicy", pullPolicies},
		{"Toleration", "operator", tolerationOperators},
		// An empty effect matches every effect.
		{"Toleration", "effect", append([]string{""}, taintEffects...)},
	} {
		if diff := cmp.Diff(tc.want, s.Defs[tc.def].Properties[tc.prop].Enum); diff != "" {
			t.Errorf("%s.%s enum (-checks +schema):\n%s", tc.def, tc.prop, diff)
		}
	}
	for _, v := range append(pullPolicies, "") {
		if err := checkPullPolicy(v); err != nil {
			t.Errorf("checkPullPolicy(%q) = %v", v, err)
		}
	}
	for _, side := range []string{"requests", "limits"} {
		got := s.Defs["Resources"].Properties[side].AdditionalProperties
		want := map[string]any{"anyOf": []any{
			map[string]any{"type": "string"},
			map[string]any{"type": "number", "minimum": float64(0)},
		}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("resources.%s values (-want +got):\n%s", side, diff)
		}
	}
}

// TestDurationPattern checks the schema's pattern against the parser.
func TestDurationPattern(t *testing.T) {
	re := regexp.MustCompile(durationPattern)
	for _, s := range []string{"0", "5s", "1m30s", "1.5h", ".5s", "5.s", "300ms", "1us", "1µs", "+5s", "1h2m3s4ms5us6ns"} {
		if _, err := time.ParseDuration(s); err != nil {
			t.Errorf("test case %q does not parse: %v", s, err)
		}
		if !re.MatchString(s) {
			t.Errorf("pattern rejects %q", s)
		}
	}
	for _, s := range []string{"", "5", "five", "-5s", "5 s", "s", ".s", "5d", "1e3s"} {
		if re.MatchString(s) {
			t.Errorf("pattern accepts %q", s)
		}
	}
}
