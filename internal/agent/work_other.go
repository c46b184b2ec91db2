//go:build !linux

package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"

	"doppel.dev/doppel/internal/incoming"
	"doppel.dev/doppel/internal/intercept"
)

type target struct{}

func openTarget(pid int) (*target, error) {
	return nil, fmt.Errorf("agent on %s: %w", runtime.GOOS, intercept.ErrNotSupported)
}

func (t *target) Close()                                           {}
func (t *target) waitExit(ctx context.Context) error               { <-ctx.Done(); return ctx.Err() }
func (a *agent) dialTCP(context.Context, net.Conn, netip.AddrPort) {}
func (a *agent) udpFlow(context.Context, net.Conn)                 {}
func (a *agent) readFile(net.Conn, string)                         {}
func (a *agent) lookup(net.Conn, string)                           {}
func (a *agent) info(net.Conn)                                     {}
func errnoOf(error) uint16                                         { return 5 }

func (a *agent) serveSockets(context.Context, *os.File) {}

func (t *target) newIncoming(log *slog.Logger) *incoming.Engine {
	return incoming.New(incoming.Options{Logger: log})
}
