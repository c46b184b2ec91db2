package incoming

import (
	"context"
	"log/slog"
	"net"

	"doppel.dev/doppel/internal/wire"
)

// Deliver opens a stream to the client for one incoming connection.
type Deliver func(ctx context.Context, in wire.Incoming) (net.Conn, error)

// Options configure an Engine.
type Options struct {
	// NetnsFD is the target's network namespace (-1: the caller's own).
	NetnsFD int
	// InNetns runs fn on a thread inside the target's network namespace (sockets keep the
	// namespace they were made in).
	InNetns func(fn func() error) error
	Logger  *slog.Logger
}
