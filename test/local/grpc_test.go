//go:build linux

package local_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"doppel.dev/doppel/internal/testenv"
)

// grpcPort is where the pod's own gRPC service listens.
const grpcPort = 9090

// TestIncomingFilteredGRPC steals gRPC calls (HTTP/2 without TLS) by a metadata header: on one
// client connection, alice's calls (metadata x-dev: alice) reach the program and everyone
// else's reach the pod's own gRPC service, with their messages, streams, headers, trailers and
// error statuses whole, also when the calls run concurrently.
func TestIncomingFilteredGRPC(t *testing.T) {
	tp, doppel := setup(t)
	s, cc, dials := startGRPC(t, tp, doppel)
	ctxFor := func(user string) (context.Context, context.CancelFunc) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		if user != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "x-dev", user)
		}
		return ctx, cancel
	}
	// say makes a unary call and returns the answer with the server named by its header and
	// its trailer.
	say := func(user, text string) (string, error) {
		ctx, cancel := ctxFor(user)
		defer cancel()
		var header, trailer metadata.MD
		out := new(wrapperspb.StringValue)
		err := cc.Invoke(ctx, "/doppel.test.Echo/Say", wrapperspb.String(text), out, grpc.Header(&header), grpc.Trailer(&trailer))
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%s [header %v trailer %v]", out.Value, header.Get("served-by"), trailer.Get("trailer-by")), nil
	}
	wantSay := func(who, text string) string {
		return fmt.Sprintf("%s: %s [header [%s] trailer [%s]]", who, text, who, who)
	}
	for _, c := range []struct{ user, who string }{{"alice", "program"}, {"", "pod"}, {"bob", "pod"}} {
		if got, err := say(c.user, "hello"); err != nil || got != wantSay(c.who, "hello") {
			t.Errorf("Say as %q: %q, %v; want %q", c.user, got, err, wantSay(c.who, "hello"))
		}
	}

	// A server stream: every message, then the status and the trailer.
	count := func(user string, n int) ([]string, string, error) {
		ctx, cancel := ctxFor(user)
		defer cancel()
		st, err := cc.NewStream(ctx, &grpc.StreamDesc{StreamName: "Count", ServerStreams: true}, "/doppel.test.Echo/Count")
		if err != nil {
			return nil, "", err
		}
		if err := st.SendMsg(wrapperspb.String(fmt.Sprint(n))); err != nil {
			return nil, "", err
		}
		if err := st.CloseSend(); err != nil {
			return nil, "", err
		}
		var got []string
		for {
			m := new(wrapperspb.StringValue)
			err := st.RecvMsg(m)
			if errors.Is(err, io.EOF) {
				return got, strings.Join(st.Trailer().Get("trailer-by"), ","), nil
			}
			if err != nil {
				return got, "", err
			}
			got = append(got, m.Value)
		}
	}
	for _, c := range []struct{ user, who string }{{"alice", "program"}, {"", "pod"}} {
		got, trailer, err := count(c.user, 50)
		if err != nil || len(got) != 50 || got[0] != c.who+" 0" || got[49] != c.who+" 49" || trailer != c.who {
			t.Errorf("Count as %q: %d messages (%v...), trailer %q, %v; want 50 from %s", c.user, len(got), first(got), trailer, err, c.who)
		}
	}

	// An error status crosses whole.
	for _, c := range []struct{ user, who string }{{"alice", "program"}, {"", "pod"}} {
		ctx, cancel := ctxFor(c.user)
		err := cc.Invoke(ctx, "/doppel.test.Echo/Fail", wrapperspb.String("luck"), new(wrapperspb.StringValue))
		cancel()
		if st, _ := status.FromError(err); st.Code() != codes.NotFound || st.Message() != c.who+": no luck" {
			t.Errorf("Fail as %q: %v; want NotFound %q", c.user, err, c.who+": no luck")
		}
	}

	// Concurrent calls of both kinds, interleaved on the one connection.
	var wg sync.WaitGroup
	for i := range 40 {
		user, who := "", "pod"
		if i%2 == 0 {
			user, who = "alice", "program"
		}
		wg.Go(func() {
			text := fmt.Sprint("concurrent ", i)
			if got, err := say(user, text); err != nil || got != wantSay(who, text) {
				t.Errorf("Say %d as %q: %q, %v; want %q", i, user, got, err, wantSay(who, text))
			}
		})
		if i%10 == 0 {
			wg.Go(func() {
				if got, _, err := count(user, 20); err != nil || len(got) != 20 || got[19] != fmt.Sprint(who, " 19") {
					t.Errorf("Count %d as %q: %d messages, %v", i, user, len(got), err)
				}
			})
		}
	}
	wg.Wait()
	if n := dials.Load(); n != 1 {
		t.Errorf("the client dialled %d times, want 1 (every call on one HTTP/2 connection)", n)
	}
	cc.Close()
	s.cmd.Process.Signal(unix.SIGTERM)
	r := s.wait(t)
	// alice's calls: Say, Count, Fail, then 20 concurrent Says and 4 Counts (every even i).
	if got := strings.Count(r.stdout, "call "); got != 27 {
		t.Errorf("the program served %d calls, want alice's 27: %s", got, r)
	}
}

func first(s []string) []string { return s[:min(len(s), 3)] }

// startGRPC starts grpcecho as the pod's own service on grpcPort (with podArgs) and under a
// steal session that takes alice's calls (metadata x-dev: alice), and returns the session and a
// client in the client namespace, with the count of its dials.
func startGRPC(t *testing.T, tp *testenv.Topology, doppel string, podArgs ...string) (*session, *grpc.ClientConn, *atomic.Int32) {
	t.Helper()
	prog := testenv.BuildGo(t, "./test/local/testdata/grpcecho")
	startInPod(t, tp, append(append([]string{prog, "-name", "pod"}, podArgs...), "-listen", fmt.Sprintf("%s:%d", testenv.PodIP, grpcPort))...)
	s := startSession(t, tp, doppel, []string{"--steal", "--http-header", "x-dev: alice"},
		prog, "-name", "program", "-listen", fmt.Sprintf(":%d", grpcPort))
	dials := new(atomic.Int32)
	cc, err := grpc.NewClient(fmt.Sprintf("passthrough:///%s:%d", testenv.PodIP, grpcPort),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			dials.Add(1)
			return tp.DialClient(ctx, "tcp", addr)
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return s, cc, dials
}

// startInPod starts argv in the pod's network namespace, waits until it prints a line starting
// with "listening on", and ends it when the test ends.
func startInPod(t *testing.T, tp *testenv.Topology, argv ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := tp.InPod(ctx, argv[0], argv[1:]...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &lockedWriter{mu: new(sync.Mutex), w: &stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	listening := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		once := sync.Once{}
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "listening on") {
				once.Do(func() { close(listening) })
			}
		}
		cmd.Wait()
	}()
	t.Cleanup(func() {
		cancel() // kills it, by its pid
		<-done
	})
	select {
	case <-listening:
	case <-done:
		t.Fatalf("%v ended before it listened", argv)
	case <-time.After(20 * time.Second):
		t.Fatalf("%v did not listen within 20s", argv)
	}
}

// TestIncomingGRPCSessionEnd ends a filtered steal session while gRPC clients keep calling the
// pod's service on one connection through the agent: the agent asks the client to go (HTTP/2
// GOAWAY) and the client moves its next calls to a new connection, which reaches the pod's
// service directly. None of those calls fails, a stream in flight finishes whole, and alice's
// calls reach the pod afterwards. (alice's calls in flight in the program when it is killed
// fail with it; that is the program's end, not the session's.)
func TestIncomingGRPCSessionEnd(t *testing.T) {
	tp, doppel := setup(t)
	s, cc, dials := startGRPC(t, tp, doppel, "-delay", "100ms")
	call := func(user string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if user != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "x-dev", user)
		}
		out := new(wrapperspb.StringValue)
		err := cc.Invoke(ctx, "/doppel.test.Echo/Say", wrapperspb.String("hi"), out)
		return out.Value, err
	}
	if got, err := call("alice"); err != nil || got != "program: hi" {
		t.Fatalf("alice before the end: %q, %v", got, err)
	}

	// A stream in flight to the pod's service (15 messages, 100 ms apart) across the end.
	streamDone := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		st, err := cc.NewStream(ctx, &grpc.StreamDesc{StreamName: "Count", ServerStreams: true}, "/doppel.test.Echo/Count")
		if err == nil {
			err = st.SendMsg(wrapperspb.String("15"))
		}
		if err == nil {
			err = st.CloseSend()
		}
		n := 0
		for err == nil {
			m := new(wrapperspb.StringValue)
			if err = st.RecvMsg(m); err == nil {
				if want := fmt.Sprint("pod ", n); m.Value != want {
					err = fmt.Errorf("message %d is %q, want %q", n, m.Value, want)
				}
				n++
			}
		}
		if errors.Is(err, io.EOF) && n == 15 {
			err = nil
		} else if errors.Is(err, io.EOF) {
			err = fmt.Errorf("%d messages, want 15", n)
		}
		streamDone <- err
	}()

	// Callers that keep calling the pod's service until after doppel has exited.
	stop := make(chan struct{})
	var calls, failed atomic.Int32
	var mu sync.Mutex
	var failures []string
	var wg sync.WaitGroup
	for _, user := range []string{"", "bob", "", "bob"} {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				calls.Add(1)
				if got, err := call(user); err != nil || got != "pod: hi" {
					failed.Add(1)
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%q: %q, %v", user, got, err))
					mu.Unlock()
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	s.cmd.Process.Signal(unix.SIGTERM)
	s.wait(t)
	before := calls.Load()
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	if err := <-streamDone; err != nil {
		t.Errorf("the stream in flight at the end: %v", err)
	}
	if n := failed.Load(); n > 0 {
		t.Errorf("%d of %d calls failed across the session's end, first: %v", n, calls.Load(), failures[:min(len(failures), 3)])
	}
	if after := calls.Load() - before; after == 0 {
		t.Error("no call after doppel exited")
	}
	if got, err := call("alice"); err != nil || got != "pod: hi" {
		t.Errorf("alice after the end: %q, %v; want the pod's answer", got, err)
	}
	if n := dials.Load(); n != 2 {
		t.Errorf("the client dialled %d times, want 2 (a new connection after the session's end)", n)
	}
	t.Logf("%d calls, %d after doppel exited", calls.Load(), calls.Load()-before)
}
