package session

import (
	"testing"

	"doppel.dev/doppel/internal/wire"
)

// A lookup's entries must stay inside the staging directory whatever the agent sends.
func TestValidEntry(t *testing.T) {
	for p, want := range map[string]bool{
		"/etc/shop":        true,
		"/":                true,
		"/etc/..data":      true,
		"/..":              false,
		"/etc/../..":       false,
		"etc/shop":         false,
		"":                 false,
		"/etc/shop/":       false,
		"/etc//shop":       false,
		"/etc/./shop":      false,
		"/etc/sh\x00op":    false,
		"/a/b/../../../..": false,
	} {
		if got := validEntry(wire.Entry{Path: p}); got != want {
			t.Errorf("validEntry(%q) = %v, want %v", p, got, want)
		}
	}
}
