package agent

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/hashicorp/yamux"

	"doppel.dev/doppel/internal/wire"
)

// muxPair returns the two ends of one yamux session over a pipe: the agent's and the client's.
func muxPair(t *testing.T) (agentSide, clientSide *yamux.Session) {
	t.Helper()
	a, c := net.Pipe()
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	var err error
	if agentSide, err = yamux.Server(a, cfg); err != nil {
		t.Fatal(err)
	}
	if clientSide, err = yamux.Client(c, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agentSide.Close(); clientSide.Close() })
	return agentSide, clientSide
}

// The client's answer decides whether the agent gets the stream, or gives the connection to the
// target's own service (an error).
func TestOpenIncomingAnswers(t *testing.T) {
	in := wire.Incoming{Port: 80, Mode: wire.ModeSteal,
		Remote: netip.MustParseAddrPort("10.0.0.2:40000"), Local: netip.MustParseAddrPort("10.0.0.1:80")}
	for _, tc := range []struct {
		name   string
		answer func(st net.Conn) // the client's side, after reading the request
		taken  bool
	}{
		{"taken", func(st net.Conn) { st.Write([]byte{wire.IncomingTaken}); st.Write([]byte("hello")) }, true},
		{"refused", func(st net.Conn) { st.Write([]byte{wire.IncomingRefused}); st.Close() }, false},
		{"closed without an answer", func(st net.Conn) { st.Close() }, false},
		{"garbage", func(st net.Conn) { st.Write([]byte{'H'}); st.Close() }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			agentSide, clientSide := muxPair(t)
			go func() {
				st, err := clientSide.AcceptStream()
				if err != nil {
					return
				}
				req, err := wire.ReadRequest(st)
				if err != nil || req.Kind != wire.KindIncoming || req.Incoming != in {
					t.Errorf("the client read %+v, %v", req, err)
				}
				tc.answer(st)
			}()
			c, err := openIncoming(context.Background(), agentSide, in)
			if tc.taken != (err == nil) {
				t.Fatalf("openIncoming: %v, want taken %v", err, tc.taken)
			}
			if !tc.taken {
				if !errors.Is(err, errIncomingRefused) {
					t.Errorf("error %v, want errIncomingRefused", err)
				}
				return
			}
			defer c.Close()
			got := make([]byte, 5)
			if _, err := io.ReadFull(c, got); err != nil || string(got) != "hello" {
				t.Errorf("after the answer the stream carries %q, %v", got, err)
			}
		})
	}
}

// A client that never answers holds the connection only until ctx ends.
func TestOpenIncomingContext(t *testing.T) {
	agentSide, clientSide := muxPair(t)
	go func() {
		st, err := clientSide.AcceptStream()
		if err == nil {
			wire.ReadRequest(st) // and never answer
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := openIncoming(ctx, agentSide, wire.Incoming{Port: 80, Mode: wire.ModeSteal}); err == nil {
		t.Fatal("openIncoming returned a stream the client never took")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("openIncoming waited %v after its context ended", d)
	}
}
