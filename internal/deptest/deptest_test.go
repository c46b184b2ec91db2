package deptest

import (
	"os/exec"
	"strings"
	"testing"
)

func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-test=false", pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

func TestImportRules(t *testing.T) {
	const mod = "doppel.dev/doppel/internal/"
	for pkg, banned := range map[string][]string{
		"agent":     {"cli", "session", "config", "environ"},
		"wire":      {"cli", "session", "agent", "intercept", "config"},
		"incoming":  {"cli", "session", "agent", "config", "environ"},
		"httproute": {"cli", "session", "agent", "intercept", "config", "wire", "incoming"},
	} {
		for _, d := range deps(t, mod+pkg) {
			for _, b := range banned {
				if d == mod+b {
					t.Errorf("%s imports %s (directly or not); it must not", pkg, b)
				}
			}
		}
	}
}
