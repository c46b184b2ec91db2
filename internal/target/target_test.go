package target

import (
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		spec    string
		want    Target
		wantErr string
	}{
		{"pid:4242", Target{PID: 4242}, ""},
		{" pid:1 ", Target{PID: 1}, ""},
		{"none", Target{None: true}, ""},
		{"nginx-7d9c-abcde", Target{Kind: "pod", Name: "nginx-7d9c-abcde"}, ""},
		{"deployment/nginx", Target{Kind: "deployment", Name: "nginx"}, ""},
		{"deploy/nginx", Target{Kind: "deployment", Name: "nginx"}, ""},
		{"Deployment/nginx", Target{Kind: "deployment", Name: "nginx"}, ""},
		{"svc/shop.api", Target{Kind: "service", Name: "shop.api"}, ""},
		{"statefulset/db/container/postgres", Target{Kind: "statefulset", Name: "db", Container: "postgres"}, ""},
		{"rollout/web", Target{Kind: "rollout", Name: "web"}, ""},
		{"", Target{}, "no target"},
		{"pid:abc", Target{}, "not a process id"},
		{"pid:-3", Target{}, "not a process id"},
		{"cgroup:foo", Target{}, "unknown kind"},
		{"cronjob/nightly", Target{}, "unknown kind"},
		{"deployment/Nginx", Target{}, "not a Kubernetes name"},
		{"deployment/nginx/sidecar/x", Target{}, "container/CONTAINER"},
		{"deployment/nginx/container/Bad_Name", Target{}, "not a container name"},
		{"a/b/c", Target{}, "want pid:PID"},
		{"deployment/", Target{}, "not a Kubernetes name"},
	} {
		got, err := Parse(tc.spec)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Parse(%q) error = %v, want one containing %q", tc.spec, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.spec, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("Parse(%q) (-want +got):\n%s", tc.spec, diff)
		}
		if back, err := Parse(got.String()); err != nil || back != got {
			t.Errorf("Parse(%q.String() = %q) = %+v, %v", tc.spec, got.String(), back, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"pid:1", "none", "deployment/nginx/container/app", "nginx"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		got, err := Parse(spec)
		if err != nil {
			return
		}
		if back, err := Parse(got.String()); err != nil || back != got {
			t.Fatalf("Parse(%q) = %+v; its String %q parses to %+v, %v", spec, got, got.String(), back, err)
		}
	})
}

func TestCheck(t *testing.T) {
	if err := (Target{PID: os.Getpid()}).Check(); err != nil {
		t.Errorf("Check of this process: %v", err)
	}
	if err := (Target{PID: 1 << 30}).Check(); err == nil || !strings.Contains(err.Error(), "no such process") {
		t.Errorf("Check of a dead pid: %v, want 'no such process'", err)
	}
}
