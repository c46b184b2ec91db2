// Package target parses and checks what a doppel session runs against. It owns no state: a
// Target is a value, checked against the system when the session starts.
package target

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Target is a parsed --target.
type Target struct {
	// PID is the process of a local target ("pid:PID").
	PID int
}

func (t Target) String() string { return "pid:" + strconv.Itoa(t.PID) }

// ErrNoTarget is returned by Parse for an empty spec.
var ErrNoTarget = errors.New("no target given: pass --target pid:PID (or set target in the config file)")

// Parse parses a target spec. Local processes are "pid:PID".
func Parse(spec string) (Target, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return Target{}, ErrNoTarget
	}
	kind, rest, ok := strings.Cut(spec, ":")
	if !ok || kind != "pid" {
		if strings.Contains(spec, "/") || !ok {
			return Target{}, fmt.Errorf("target %q: Kubernetes targets are not supported by this build yet; use pid:PID for a local process", spec)
		}
		return Target{}, fmt.Errorf("target %q: unknown kind %q; use pid:PID", spec, kind)
	}
	pid, err := strconv.Atoi(rest)
	if err != nil || pid <= 0 {
		return Target{}, fmt.Errorf("target %q: %q is not a process id; use pid:PID", spec, rest)
	}
	return Target{PID: pid}, nil
}

// Check says whether the target exists now.
func (t Target) Check() error {
	if _, err := os.Stat("/proc/" + strconv.Itoa(t.PID)); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("target %s: no such process", t)
		}
		return fmt.Errorf("target %s: %w", t, err)
	}
	return nil
}
