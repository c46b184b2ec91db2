package target

import (
	"os"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		spec    string
		pid     int
		wantErr string
	}{
		{"pid:4242", 4242, ""},
		{" pid:1 ", 1, ""},
		{"", 0, "no target"},
		{"pid:abc", 0, "not a process id"},
		{"pid:-3", 0, "not a process id"},
		{"deployment/nginx", 0, "Kubernetes targets"},
		{"nginx", 0, "Kubernetes targets"},
		{"cgroup:foo", 0, "unknown kind"},
	} {
		got, err := Parse(tc.spec)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Parse(%q) error = %v, want one containing %q", tc.spec, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got.PID != tc.pid {
			t.Errorf("Parse(%q) = %v, %v; want pid %d", tc.spec, got, err, tc.pid)
		}
	}
}

func TestCheck(t *testing.T) {
	if err := (Target{PID: os.Getpid()}).Check(); err != nil {
		t.Errorf("Check of this process: %v", err)
	}
	if err := (Target{PID: 1 << 30}).Check(); err == nil || !strings.Contains(err.Error(), "no such process") {
		t.Errorf("Check of a dead pid: %v, want 'no such process'", err)
	}
}
