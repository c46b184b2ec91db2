//go:build !linux

package incoming

import (
	"fmt"
	"io"
	"runtime"

	"doppel.dev/doppel/internal/intercept"
	"doppel.dev/doppel/internal/wire"
)

// Engine is the incoming half of one agent; it needs Linux.
type Engine struct{}

// New returns an Engine whose Subscribe always fails.
func New(Options) *Engine { return &Engine{} }

// Subscribe fails: redirecting a target's port needs Linux nftables.
func (e *Engine) Subscribe(wire.Subscription, Deliver, io.Writer) (func(), error) {
	return nil, fmt.Errorf("incoming traffic on %s: %w", runtime.GOOS, intercept.ErrNotSupported)
}

// Close does nothing.
func (e *Engine) Close() {}

// Table is always "".
func (e *Engine) Table() string { return "" }

// ProbeOwnedTables fails: nftables is Linux's.
func ProbeOwnedTables() error {
	return fmt.Errorf("nftables on %s: %w", runtime.GOOS, intercept.ErrNotSupported)
}
