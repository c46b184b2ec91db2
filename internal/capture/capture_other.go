//go:build !linux

package capture

import (
	"fmt"
	"runtime"

	"doppel.dev/doppel/internal/intercept"
)

// Capture needs Linux (AF_PACKET sockets).
type Capture struct{}

// Start fails with an error wrapping intercept.ErrNotSupported.
func Start(Options) (*Capture, error) {
	return nil, fmt.Errorf("passive capture (AF_PACKET packet sockets, Linux only) on %s: %w", runtime.GOOS, intercept.ErrNotSupported)
}

// SetPorts fails with an error wrapping intercept.ErrNotSupported.
func (c *Capture) SetPorts([]uint16) error {
	return fmt.Errorf("passive capture on %s: %w", runtime.GOOS, intercept.ErrNotSupported)
}

// Stats returns zero counts.
func (c *Capture) Stats() Stats { return Stats{} }

// Close does nothing.
func (c *Capture) Close() {}

// Probe fails: packet sockets are Linux's.
func Probe() error {
	return fmt.Errorf("packet sockets on %s: %w", runtime.GOOS, intercept.ErrNotSupported)
}

// TapPrograms finds none: taps are Linux's.
func TapPrograms(int) (int, error) { return 0, nil }

// ProbeTap fails: the tap is Linux's.
func ProbeTap() error {
	return fmt.Errorf("eBPF tap on %s: %w", runtime.GOOS, intercept.ErrNotSupported)
}
