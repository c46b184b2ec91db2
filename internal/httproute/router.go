package httproute

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
)

// Dialer opens a new connection to an upstream. ctx bounds the dial only: the connection
// outlives it.
type Dialer func(ctx context.Context) (net.Conn, error)

// Router routes the requests of client connections between two upstreams. One Router serves
// any number of connections concurrently (except with a Handover, which is per connection);
// its fields must not change while it does.
type Router struct {
	// Filter picks the requests that go to Program; the others go to Original. A nil Filter
	// sends every request to Program.
	Filter *Filter
	// Program dials the developer's program; Original dials the pod's own service.
	Program, Original Dialer
	// Logger, if set, gets a debug line per routed request and the details of upstream
	// failures.
	Logger *slog.Logger
	// OnRequest, if set, is called with each request before it is forwarded.
	OnRequest func(method, target string, toProgram bool)
	// Handover, if set, lets the caller take an HTTP/1 connection back between requests
	// (one ServeHTTP1 call per Handover).
	Handover *Handover
}

// side names an upstream.
type side int

const (
	original side = iota
	program
)

func (s side) String() string {
	if s == program {
		return "program"
	}
	return "original"
}

func (r *Router) dialer(s side) Dialer {
	if s == program {
		return r.Program
	}
	return r.Original
}

func (r *Router) logger() *slog.Logger {
	if r.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Logger
}

// route matches a request and reports it to the hook.
func (r *Router) route(method, target string, h http.Header) side {
	toProgram := r.Filter.Match(method, target, h)
	if r.OnRequest != nil {
		r.OnRequest(method, target, toProgram)
	}
	s := original
	if toProgram {
		s = program
	}
	r.logger().Debug("route request", "method", method, "target", target, "upstream", s)
	return s
}

// closeWrite shuts down the writing side of c if it can, and closes it otherwise.
func closeWrite(c io.Closer) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}
