// Package httproute routes the HTTP requests of one client connection, one request at a time,
// either to the developer's program or to the pod's original service, by matching each request
// against a Filter. It is the "steal with HTTP filter" data path of the agent.
//
// Sniff classifies a fresh connection (HTTP/1.x, h2c with prior knowledge, or something else)
// without consuming its bytes. Router.ServeHTTP1 relays HTTP/1.x byte for byte: it parses only
// what it needs to find message boundaries and to match the filter, and writes requests and
// responses exactly as they were received. Router.ServeHTTP2 terminates h2c on the client side
// and forwards each stream over h2c to the chosen upstream, streaming bodies and trailers.
//
// What it owns, and for how long (all of it for one Serve call, nothing after it returns):
//
//   - The client connection passed to ServeHTTP1 or ServeHTTP2: it is closed before the call
//     returns.
//   - Upstream connections: dialed lazily through the Router's Dialers, at most one per side at a
//     time for HTTP/1.x (the HTTP/2 transport may open more if the upstream limits concurrent
//     streams), reused across requests, and all closed before the call returns.
//   - Goroutines: ServeHTTP1 runs one per request body being copied, one per idle upstream
//     connection (watching whether the upstream closes it) and two while an upgraded connection
//     (101 Switching Protocols or CONNECT) is spliced. ServeHTTP2 runs a net/http server for
//     the one client connection (its connection and frame-reading goroutines and one handler
//     per stream) and a net/http transport per upstream (a read loop per connection). All of
//     them have ended, or are ending because their connections are closed, when the Serve call
//     returns.
//
// Cancelling the context passed to a Serve call closes every connection it owns, which makes
// the call return promptly.
package httproute
