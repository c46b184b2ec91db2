package cli

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"doppel.dev/doppel/internal/agent"
	"doppel.dev/doppel/internal/wire"
)

type agentOptions struct {
	pid              int
	containerID      string
	self             bool
	streamWindow     uint32
	listen           string
	listenFD         int
	socketsFD        int
	allowNonLoopback bool
	grace            time.Duration
	logLevel         string
}

// newAgentCmd is the hidden agent role of the doppel binary. The session secret comes as hex on
// the first line of standard input, or in DOPPEL_AGENT_SECRET.
func newAgentCmd() *cobra.Command {
	var o agentOptions
	cmd := &cobra.Command{
		Use:    "agent",
		Short:  "Serve one doppel session from beside its target (started by doppel exec)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.pid, "pid", 0, "target process id")
	f.Uint32Var(&o.streamWindow, "stream-window", 0, "bytes a stream may receive before its reader reads them (default 1 MiB; more for a client far away)")
	f.BoolVar(&o.self, "self", false, "no target: serve the agent's own network, files and environment (a session without a target)")
	f.StringVar(&o.containerID, "container-id", "", "target container's runtime id: the target is its first process (needs the node's process list, hostPID)")
	f.StringVar(&o.listen, "listen", "127.0.0.1:0", "address to listen on (loopback unless --allow-non-loopback)")
	f.IntVar(&o.listenFD, "listen-fd", -1, "inherited listening socket to serve instead of --listen")
	f.IntVar(&o.socketsFD, "sockets-fd", -1, "inherited unix SOCK_SEQPACKET socket on which to hand out sockets of the target's network to a client on this machine")
	f.BoolVar(&o.allowNonLoopback, "allow-non-loopback", false, "allow --listen on a non-loopback address")
	f.DurationVar(&o.grace, "grace", 5*time.Second, "how long to wait for a (lost) client before exiting")
	f.StringVar(&o.logLevel, "log-level", "warn", "debug, info, warn or error")
	return cmd
}

func (o *agentOptions) run(ctx context.Context) error {
	log, err := newLogger(o.logLevel)
	if err != nil {
		return err
	}
	if o.self {
		if o.pid != 0 || o.containerID != "" {
			return fmt.Errorf("agent: --self excludes --pid and --container-id")
		}
		o.pid = os.Getpid()
	}
	if o.containerID != "" {
		if o.pid != 0 {
			return fmt.Errorf("agent: --pid and --container-id exclude each other")
		}
		if o.pid, err = agent.FindContainer("/proc", o.containerID); err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		log.Info("found the target container", "id", o.containerID, "pid", o.pid)
	}
	if o.pid <= 0 {
		return fmt.Errorf("agent: --pid or --container-id is required")
	}
	secret, err := readSecret()
	if err != nil {
		return err
	}
	var ln net.Listener
	if o.listenFD >= 0 {
		f := os.NewFile(uintptr(o.listenFD), "listener")
		ln, err = net.FileListener(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("agent: inherited listener: %w", err)
		}
	} else {
		ap, err := netip.ParseAddrPort(o.listen)
		if err != nil {
			return fmt.Errorf("agent: --listen %q: %w", o.listen, err)
		}
		if !ap.Addr().IsLoopback() && !o.allowNonLoopback {
			return fmt.Errorf("agent: --listen %s is not a loopback address; pass --allow-non-loopback to mean it", o.listen)
		}
		if ln, err = net.Listen("tcp", o.listen); err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		fmt.Printf("listening on %s\n", ln.Addr())
	}
	var sockets *os.File
	if o.socketsFD >= 0 {
		syscall.SetNonblock(o.socketsFD, true)
		sockets = os.NewFile(uintptr(o.socketsFD), "sockets")
		defer sockets.Close()
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return agent.Run(ctx, agent.Options{PID: o.pid, ContainerID: o.containerID, StreamWindow: o.streamWindow, Listener: ln, Secret: secret, Grace: o.grace, Sockets: sockets, Logger: log.With("role", "agent")})
}

func readSecret() ([wire.SecretSize]byte, error) {
	var s [wire.SecretSize]byte
	text := os.Getenv("DOPPEL_AGENT_SECRET")
	if text == "" {
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil && line == "" {
			return s, fmt.Errorf("agent: no session secret on standard input or in DOPPEL_AGENT_SECRET")
		}
		text = line
	}
	b, err := hex.DecodeString(strings.TrimSpace(text))
	if err != nil || len(b) != wire.SecretSize {
		return s, fmt.Errorf("agent: the session secret must be %d hex-encoded bytes", wire.SecretSize)
	}
	copy(s[:], b)
	return s, nil
}
