// Command grpcecho is a gRPC server over HTTP/2 without TLS for the incoming tests: the pod runs
// one as its own service and the program under doppel exec another, and a test tells their
// answers apart by the name each puts in them. Its service, doppel.test.Echo, has a unary call
// (Say), a server-streaming call (Count) and a call that fails with a status (Fail), every answer
// carrying the name in a header and a trailer too (-delay slows Count down). It prints "listening on ADDR" once it
// listens and "call METHOD" for each call, and exits after -n calls (0: never).
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func main() {
	name := flag.String("name", "grpcecho", "the name in every answer")
	addr := flag.String("listen", ":9090", "address to listen on")
	n := flag.Int64("n", 0, "exit after this many calls (0: never)")
	delay := flag.Duration("delay", 0, "wait this long before each message of Count")
	flag.Parse()
	if err := run(*name, *addr, *n, *delay); err != nil {
		fmt.Fprintln(os.Stderr, "grpcecho:", err)
		os.Exit(1)
	}
}

type server struct {
	name  string
	delay time.Duration
	calls atomic.Int64
	n     int64
	done  chan struct{}
}

func run(name, addr string, n int64, delay time.Duration) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s := &server{name: name, delay: delay, n: n, done: make(chan struct{})}
	gs := grpc.NewServer()
	gs.RegisterService(&grpc.ServiceDesc{
		ServiceName: "doppel.test.Echo",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{
			{MethodName: "Say", Handler: s.say},
			{MethodName: "Fail", Handler: s.fail},
		},
		Streams: []grpc.StreamDesc{{StreamName: "Count", Handler: s.count, ServerStreams: true}},
	}, s)
	fmt.Printf("listening on %s\n", ln.Addr())
	go func() {
		<-s.done
		gs.GracefulStop()
	}()
	return gs.Serve(ln)
}

// called counts a call and marks the answer with the server's name.
func (s *server) called(ctx context.Context, method string) {
	fmt.Printf("call %s\n", method)
	grpc.SetHeader(ctx, metadata.Pairs("served-by", s.name))
	grpc.SetTrailer(ctx, metadata.Pairs("trailer-by", s.name))
	if s.calls.Add(1) == s.n {
		close(s.done)
	}
}

func (s *server) say(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
	in := new(wrapperspb.StringValue)
	if err := dec(in); err != nil {
		return nil, err
	}
	s.called(ctx, "Say")
	return wrapperspb.String(s.name + ": " + in.Value), nil
}

func (s *server) fail(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
	in := new(wrapperspb.StringValue)
	if err := dec(in); err != nil {
		return nil, err
	}
	s.called(ctx, "Fail")
	return nil, status.Error(codes.NotFound, s.name+": no "+in.Value)
}

func (s *server) count(_ any, stream grpc.ServerStream) error {
	in := new(wrapperspb.StringValue)
	if err := stream.RecvMsg(in); err != nil {
		return err
	}
	n, err := strconv.Atoi(in.Value)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	s.called(stream.Context(), "Count")
	for i := range n {
		time.Sleep(s.delay)
		if err := stream.SendMsg(wrapperspb.String(s.name + " " + strconv.Itoa(i))); err != nil {
			return err
		}
	}
	return nil
}
