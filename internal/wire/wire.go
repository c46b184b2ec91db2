// Package wire is the protocol between doppel's client and its agent: the versioned handshake
// that opens a session, the request and reply that open each multiplexed stream, and the
// datagram frames of UDP flows. It owns no connections, goroutines or kernel state: it encodes
// and decodes on readers and writers that its callers own. docs/PROTOCOL.md describes the same
// format for humans; the two must agree.
package wire

import (
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/hashicorp/yamux"
)

// Version is the protocol version this build speaks. A client and an agent of different
// versions refuse each other during the handshake.
const Version uint16 = 4

// The client's answer to a KindIncoming stream.
const (
	IncomingRefused byte = 0
	IncomingTaken   byte = 1
)

// Magic opens every handshake message, so that a peer speaking something else is recognised at
// once instead of being read as a version and a secret.
var Magic = [4]byte{'D', 'O', 'P', 'L'}

// SecretSize is the length of the per-session secret.
const SecretSize = 32

// MaxBody is the largest request body, reply message or datagram payload a frame can carry.
const MaxBody = 65535

// ErrBadMagic means the peer does not speak doppel's protocol.
var ErrBadMagic = errors.New("peer does not speak the doppel protocol")

// Hello is the first thing a client sends on a new connection.
type Hello struct {
	Version uint16
	Secret  [SecretSize]byte
}

// WriteHello encodes h: magic, version (big endian), secret.
func WriteHello(w io.Writer, h Hello) error {
	var b [4 + 2 + SecretSize]byte
	copy(b[:4], Magic[:])
	binary.BigEndian.PutUint16(b[4:6], h.Version)
	copy(b[6:], h.Secret[:])
	_, err := w.Write(b[:])
	return err
}

// ReadHello decodes a Hello.
func ReadHello(r io.Reader) (Hello, error) {
	var b [4 + 2 + SecretSize]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return Hello{}, fmt.Errorf("read hello: %w", err)
	}
	if [4]byte(b[:4]) != Magic {
		return Hello{}, ErrBadMagic
	}
	var h Hello
	h.Version = binary.BigEndian.Uint16(b[4:6])
	copy(h.Secret[:], b[6:])
	return h, nil
}

// SecretEqual compares two secrets in constant time.
func SecretEqual(a, b [SecretSize]byte) bool {
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// Welcome statuses.
const (
	WelcomeOK         uint8 = 0
	WelcomeBadVersion uint8 = 1
	WelcomeBadSecret  uint8 = 2
	WelcomeBusy       uint8 = 3
)

// Welcome is the agent's answer to a Hello.
type Welcome struct {
	Version uint16
	Status  uint8
	Message string
}

// WriteWelcome encodes w: magic, version, status, message length (uint16), message.
func WriteWelcome(wr io.Writer, w Welcome) error {
	msg := truncate(w.Message)
	b := make([]byte, 0, 4+2+1+2+len(msg))
	b = append(b, Magic[:]...)
	b = binary.BigEndian.AppendUint16(b, w.Version)
	b = append(b, w.Status)
	b = binary.BigEndian.AppendUint16(b, uint16(len(msg)))
	b = append(b, msg...)
	_, err := wr.Write(b)
	return err
}

// ReadWelcome decodes a Welcome.
func ReadWelcome(r io.Reader) (Welcome, error) {
	var b [4 + 2 + 1 + 2]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return Welcome{}, fmt.Errorf("read welcome: %w", err)
	}
	if [4]byte(b[:4]) != Magic {
		return Welcome{}, ErrBadMagic
	}
	w := Welcome{Version: binary.BigEndian.Uint16(b[4:6]), Status: b[6]}
	msg := make([]byte, binary.BigEndian.Uint16(b[7:9]))
	if _, err := io.ReadFull(r, msg); err != nil {
		return Welcome{}, fmt.Errorf("read welcome message: %w", err)
	}
	w.Message = string(msg)
	return w, nil
}

// Kind says what a stream is for.
type Kind uint8

// Stream kinds.
const (
	// KindDialTCP: body is an address; after an OK reply the stream carries the connection's bytes.
	KindDialTCP Kind = 1
	// KindUDP: empty body; after an OK reply both sides exchange datagram frames. The agent sends
	// from one UDP socket per stream, so replies reach the program socket that sent.
	KindUDP Kind = 2
	// KindReadFile: body is an absolute path inside the target's root; after an OK reply the
	// stream carries the file's content and then closes.
	KindReadFile Kind = 3
	// KindInfo: empty body; after an OK reply the stream carries a JSON Info and then closes.
	KindInfo Kind = 4
	// KindSubscribe: body is a Subscription; after an OK reply the agent redirects the port to
	// itself and stays subscribed until the client closes the stream.
	KindSubscribe Kind = 5
	// KindIncoming is opened by the agent, never by the client: body is an Incoming. The
	// client answers with one byte, IncomingTaken once the program's listener took the
	// connection (the stream then carries its bytes both ways), or closes the stream (after
	// IncomingRefused) when the program cannot take it, and the agent gives the connection, or
	// the request, to the target's own service instead.
	KindIncoming Kind = 6
	// KindLookup: body is an absolute path inside the target's root; after an OK reply the
	// stream carries a JSON Lookup (every name the path's resolution went through, and a
	// directory's entries) and then closes.
	KindLookup Kind = 7
)

func (k Kind) String() string {
	switch k {
	case KindDialTCP:
		return "dial-tcp"
	case KindUDP:
		return "udp"
	case KindReadFile:
		return "read-file"
	case KindInfo:
		return "info"
	case KindSubscribe:
		return "subscribe"
	case KindIncoming:
		return "incoming"
	case KindLookup:
		return "lookup"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Request opens a stream.
type Request struct {
	Kind     Kind
	Addr     netip.AddrPort // KindDialTCP
	Path     string         // KindReadFile, KindLookup
	Sub      Subscription   // KindSubscribe
	Incoming Incoming       // KindIncoming
}

// WriteRequest encodes r: kind, body length (uint16), body.
func WriteRequest(w io.Writer, r Request) error {
	var body []byte
	switch r.Kind {
	case KindDialTCP:
		body = AppendAddr(nil, r.Addr)
	case KindReadFile, KindLookup:
		if len(r.Path) > MaxBody {
			return fmt.Errorf("path too long (%d bytes)", len(r.Path))
		}
		body = []byte(r.Path)
	case KindSubscribe:
		var err error
		if body, err = appendSubscription(nil, r.Sub); err != nil {
			return err
		}
	case KindIncoming:
		body = appendIncoming(nil, r.Incoming)
	case KindUDP, KindInfo:
	default:
		return fmt.Errorf("unknown stream kind %d", r.Kind)
	}
	if len(body) > MaxBody {
		return fmt.Errorf("%s request too long (%d bytes)", r.Kind, len(body))
	}
	b := make([]byte, 0, 3+len(body))
	b = append(b, byte(r.Kind))
	b = binary.BigEndian.AppendUint16(b, uint16(len(body)))
	b = append(b, body...)
	_, err := w.Write(b)
	return err
}

// ReadRequest decodes a Request; an unknown kind or a malformed body is an error.
func ReadRequest(rd io.Reader) (Request, error) {
	var h [3]byte
	if _, err := io.ReadFull(rd, h[:]); err != nil {
		return Request{}, fmt.Errorf("read request: %w", err)
	}
	body := make([]byte, binary.BigEndian.Uint16(h[1:3]))
	if _, err := io.ReadFull(rd, body); err != nil {
		return Request{}, fmt.Errorf("read request body: %w", err)
	}
	r := Request{Kind: Kind(h[0])}
	switch r.Kind {
	case KindDialTCP:
		a, n, err := ParseAddr(body)
		if err != nil {
			return Request{}, err
		}
		if n != len(body) {
			return Request{}, fmt.Errorf("dial request: %d trailing bytes", len(body)-n)
		}
		r.Addr = a
	case KindReadFile, KindLookup:
		r.Path = string(body)
	case KindSubscribe:
		sub, err := parseSubscription(body)
		if err != nil {
			return Request{}, err
		}
		r.Sub = sub
	case KindIncoming:
		in, err := parseIncoming(body)
		if err != nil {
			return Request{}, err
		}
		r.Incoming = in
	case KindUDP, KindInfo:
		if len(body) != 0 {
			return Request{}, fmt.Errorf("%s request: unexpected %d-byte body", r.Kind, len(body))
		}
	default:
		return Request{}, fmt.Errorf("unknown stream kind %d", h[0])
	}
	return r, nil
}

// Reply answers a Request. Errno is the Linux errno of the failure where there is one (so the
// program can be given the error the target's kernel gave), 0 otherwise.
type Reply struct {
	OK      bool
	Errno   uint16
	Message string
}

// Err turns a failed reply into an error; nil for an OK reply.
func (r Reply) Err() error {
	if r.OK {
		return nil
	}
	return &RemoteError{Errno: r.Errno, Message: r.Message}
}

// RemoteError is a failure reported by the agent.
type RemoteError struct {
	Errno   uint16
	Message string
}

func (e *RemoteError) Error() string { return e.Message }

// WriteReply encodes r: status (0 ok, 1 failed), errno (uint16), message length (uint16), message.
func WriteReply(w io.Writer, r Reply) error {
	msg := truncate(r.Message)
	b := make([]byte, 0, 5+len(msg))
	if r.OK {
		b = append(b, 0)
	} else {
		b = append(b, 1)
	}
	b = binary.BigEndian.AppendUint16(b, r.Errno)
	b = binary.BigEndian.AppendUint16(b, uint16(len(msg)))
	b = append(b, msg...)
	_, err := w.Write(b)
	return err
}

// ReadReply decodes a Reply.
func ReadReply(rd io.Reader) (Reply, error) {
	var h [5]byte
	if _, err := io.ReadFull(rd, h[:]); err != nil {
		return Reply{}, fmt.Errorf("read reply: %w", err)
	}
	if h[0] > 1 {
		return Reply{}, fmt.Errorf("reply: bad status %d", h[0])
	}
	msg := make([]byte, binary.BigEndian.Uint16(h[3:5]))
	if _, err := io.ReadFull(rd, msg); err != nil {
		return Reply{}, fmt.Errorf("read reply message: %w", err)
	}
	return Reply{OK: h[0] == 0, Errno: binary.BigEndian.Uint16(h[1:3]), Message: string(msg)}, nil
}

// AppendAddr appends the encoding of a: IP length (4 or 16), IP, port (uint16). An invalid
// address is encoded with length 0 and no port.
func AppendAddr(b []byte, a netip.AddrPort) []byte {
	ip := a.Addr()
	if !ip.IsValid() {
		return append(b, 0)
	}
	s := ip.AsSlice()
	b = append(b, byte(len(s)))
	b = append(b, s...)
	return binary.BigEndian.AppendUint16(b, a.Port())
}

// ParseAddr decodes an address encoded by AppendAddr and says how many bytes it used.
func ParseAddr(b []byte) (netip.AddrPort, int, error) {
	if len(b) < 1 {
		return netip.AddrPort{}, 0, errors.New("address: empty")
	}
	n := int(b[0])
	if n != 4 && n != 16 {
		return netip.AddrPort{}, 0, fmt.Errorf("address: bad IP length %d", n)
	}
	if len(b) < 1+n+2 {
		return netip.AddrPort{}, 0, errors.New("address: truncated")
	}
	ip, _ := netip.AddrFromSlice(b[1 : 1+n])
	return netip.AddrPortFrom(ip, binary.BigEndian.Uint16(b[1+n:])), 1 + n + 2, nil
}

// Datagram is one UDP payload and the remote address it goes to (client to agent) or came from
// (agent to client).
type Datagram struct {
	Addr    netip.AddrPort
	Payload []byte
}

// WriteDatagram encodes d as one frame: frame length (uint16), address, payload.
func WriteDatagram(w io.Writer, d Datagram) error {
	b := make([]byte, 2, 2+19+len(d.Payload))
	b = AppendAddr(b, d.Addr)
	b = append(b, d.Payload...)
	if len(b)-2 > MaxBody {
		return fmt.Errorf("datagram too large (%d bytes)", len(d.Payload))
	}
	binary.BigEndian.PutUint16(b, uint16(len(b)-2))
	_, err := w.Write(b)
	return err
}

// ReadDatagram decodes one frame into buf's storage when it fits (buf may be nil).
func ReadDatagram(r io.Reader, buf []byte) (Datagram, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return Datagram{}, err
	}
	n := int(binary.BigEndian.Uint16(h[:]))
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return Datagram{}, fmt.Errorf("read datagram: %w", err)
	}
	a, used, err := ParseAddr(buf)
	if err != nil {
		return Datagram{}, fmt.Errorf("datagram: %w", err)
	}
	return Datagram{Addr: a, Payload: buf[used:]}, nil
}

// Info describes the target: what the client needs to make the program see the target's
// identity. It travels as JSON on a KindInfo stream.
type Info struct {
	PID      int      `json:"pid"`
	Hostname string   `json:"hostname"`
	Env      []string `json:"env"`
	// EnvNote, when set, says why Env may lack variables the target has.
	EnvNote string `json:"envNote,omitempty"`
	// Mounts are the mount points of the target's mount namespace, from its mountinfo, in
	// order: where its volumes are.
	Mounts []string `json:"mounts,omitempty"`
}

func truncate(s string) string {
	if len(s) > MaxBody {
		return s[:MaxBody]
	}
	return s
}

// Stream windows. On loopback (a local target) 1 MiB keeps a stream at full speed; through the
// API server's port-forward the round trip is longer, and a stream moves one window per round
// trip (make bench's port-forward row measures the result; one-off runs of it with this
// constant changed by hand are in the notes). A window is memory a stream may hold
// for a reader that does not read.
const (
	DefaultStreamWindow     = 1 << 20
	PortForwardStreamWindow = 16 << 20
)

// MuxConfig is the stream multiplexer's configuration, the same on both sides: keep-alives every
// 5 s detect a dead peer; a write that cannot go out within 10 s fails the session. window is
// how much a stream may receive that its reader has not read yet (0: DefaultStreamWindow): one
// stream's throughput is at most window per round trip.
func MuxConfig(window uint32) *yamux.Config {
	if window == 0 {
		window = DefaultStreamWindow
	}
	c := yamux.DefaultConfig()
	c.LogOutput = io.Discard
	c.KeepAliveInterval = 5 * time.Second
	c.ConnectionWriteTimeout = 10 * time.Second
	c.MaxStreamWindowSize = window
	// No per-stream open timer: it costs a goroutine and a timer for every stream (one per
	// incoming connection), and the keep-alives already notice a peer that stopped answering.
	c.StreamOpenTimeout = 0
	return c
}

// Splice copies a to b and b to a until both directions are done, passing each direction's end
// on as a half-close (CloseWrite where the connection has it; a stream's Close is a half-close).
// When writing one way fails (that side is gone), it keeps reading the source of that direction
// to its end and drops what it reads: a multiplexed stream that nobody reads would stall its
// sender for good.
func Splice(a, b net.Conn) {
	done := make(chan struct{})
	go func() {
		copyOrDrain(b, a)
		closeWrite(b)
		close(done)
	}()
	copyOrDrain(a, b)
	closeWrite(a)
	<-done
}

// copyOrDrain copies src to dst until src ends; once a write fails it discards the rest of src.
func copyOrDrain(dst, src net.Conn) {
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				io.Copy(io.Discard, src)
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}

// Local socket passing. When the agent runs on the client's own machine (a local target), the
// client may ask it over a unix SOCK_SEQPACKET socket for fresh TCP sockets created in the
// target's network namespace; each reply carries the socket as SCM_RIGHTS. The client then
// connects the socket itself and puts it in the program's place, so the program's bytes never
// pass through doppel.

// SocketRequest asks for Count (1 to MaxSocketBatch) unconnected TCP sockets of a family
// (unix.AF_INET or AF_INET6).
type SocketRequest struct {
	ID     uint32
	Family uint8
	Count  uint8
}

// MaxSocketBatch is the most sockets one request may ask for.
const MaxSocketBatch = 16

// SizeofSocketRequest and SizeofSocketReply are the fixed sizes of the two messages.
const (
	SizeofSocketRequest = 6
	SizeofSocketReply   = 6
)

// AppendSocketRequest encodes r: ID (uint32), family (uint8), count (uint8).
func AppendSocketRequest(b []byte, r SocketRequest) []byte {
	b = binary.BigEndian.AppendUint32(b, r.ID)
	return append(b, r.Family, r.Count)
}

// ParseSocketRequest decodes a SocketRequest message.
func ParseSocketRequest(b []byte) (SocketRequest, error) {
	if len(b) != SizeofSocketRequest {
		return SocketRequest{}, fmt.Errorf("socket request: %d bytes, want %d", len(b), SizeofSocketRequest)
	}
	r := SocketRequest{ID: binary.BigEndian.Uint32(b), Family: b[4], Count: b[5]}
	if r.Count == 0 || r.Count > MaxSocketBatch {
		return SocketRequest{}, fmt.Errorf("socket request: count %d, want 1 to %d", r.Count, MaxSocketBatch)
	}
	return r, nil
}

// SocketReply answers a SocketRequest: Errno 0 means the sockets are attached (as many as were
// asked for).
type SocketReply struct {
	ID    uint32
	Errno uint16
}

// AppendSocketReply encodes r: ID (uint32), errno (uint16).
func AppendSocketReply(b []byte, r SocketReply) []byte {
	b = binary.BigEndian.AppendUint32(b, r.ID)
	return binary.BigEndian.AppendUint16(b, r.Errno)
}

// ParseSocketReply decodes a SocketReply message.
func ParseSocketReply(b []byte) (SocketReply, error) {
	if len(b) != SizeofSocketReply {
		return SocketReply{}, fmt.Errorf("socket reply: %d bytes, want %d", len(b), SizeofSocketReply)
	}
	return SocketReply{ID: binary.BigEndian.Uint32(b), Errno: binary.BigEndian.Uint16(b[4:])}, nil
}

// FileRequest asks the agent of a local target, on the socket-passing channel, to open Path
// inside the target's root (openat2 RESOLVE_IN_ROOT: "..", absolute symlinks and symlink chains
// stay inside it) with Flags and Mode, and to attach the descriptor to its SocketReply.
type FileRequest struct {
	ID    uint32
	Flags uint32 // open(2) flags; O_CLOEXEC is added by the agent
	Mode  uint32 // for O_CREAT and O_TMPFILE
	Path  string // absolute, inside the target's root
}

// fileRequestMarker stands where a SocketRequest has its family, which is never 0.
const fileRequestMarker = 0

// AppendFileRequest encodes r: ID (uint32), 0, flags (uint32), mode (uint32), path.
func AppendFileRequest(b []byte, r FileRequest) []byte {
	b = binary.BigEndian.AppendUint32(b, r.ID)
	b = append(b, fileRequestMarker)
	b = binary.BigEndian.AppendUint32(b, r.Flags)
	b = binary.BigEndian.AppendUint32(b, r.Mode)
	return append(b, r.Path...)
}

// IsFileRequest says whether a message on the socket-passing channel is a FileRequest.
func IsFileRequest(b []byte) bool { return len(b) > 4 && b[4] == fileRequestMarker }

// ParseFileRequest decodes a FileRequest message.
func ParseFileRequest(b []byte) (FileRequest, error) {
	if len(b) < 14 || b[4] != fileRequestMarker {
		return FileRequest{}, fmt.Errorf("file request: %d bytes", len(b))
	}
	r := FileRequest{ID: binary.BigEndian.Uint32(b), Flags: binary.BigEndian.Uint32(b[5:]),
		Mode: binary.BigEndian.Uint32(b[9:]), Path: string(b[13:])}
	if r.Path == "" || r.Path[0] != '/' || len(r.Path) > 4096 {
		return FileRequest{}, fmt.Errorf("file request: want an absolute path of at most 4096 bytes, got %q", truncate(r.Path))
	}
	return r, nil
}

// MuxConn wraps the connection a multiplexer session runs on so that each data frame's header
// and body leave in one write: writev on a TCP connection, one reused buffer otherwise (a
// port-forward stream, where each write is a frame of its own). yamux writes them separately:
// two syscalls and, with TCP_NODELAY, two packets per frame. Only the session's send loop
// writes to it.
func MuxConn(c net.Conn) net.Conn {
	_, tcp := c.(*net.TCPConn)
	return &frameConn{Conn: c, writev: tcp}
}

type frameConn struct {
	net.Conn
	writev bool   // the connection is TCP: header and body go out with writev
	held   []byte // a data frame's header, written with the body that follows it
	hbuf   [yamuxHeaderSize]byte
	joined []byte // header and body in one buffer, when there is no writev
}

// yamux's frame header: version, type, flags (2), stream ID (4), length (4). Type 0 is data,
// whose length is that of the body that follows.
const (
	yamuxHeaderSize = 12
	yamuxTypeData   = 0
)

func (c *frameConn) Write(p []byte) (int, error) {
	if c.held != nil {
		hdr := c.held
		c.held = nil
		var err error
		if c.writev {
			bufs := net.Buffers{hdr, p}
			_, err = bufs.WriteTo(c.Conn)
		} else {
			c.joined = append(append(c.joined[:0], hdr...), p...)
			_, err = c.Conn.Write(c.joined)
		}
		if err != nil {
			return 0, err
		}
		return len(p), nil
	}
	if len(p) == yamuxHeaderSize && p[1] == yamuxTypeData && binary.BigEndian.Uint32(p[8:12]) > 0 {
		c.held = append(c.hbuf[:0], p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// Lookup is what a KindLookup stream carries, as JSON: the resolution of a path inside the
// target's root, name by name, as open(2) would resolve it there.
type Lookup struct {
	// Entries are every name the resolution visited, in order: each directory on the way,
	// each symbolic link followed (with its content) and the names its content led to, and the
	// last name; then, when the path resolved to a directory, that directory's entries.
	Entries []Entry `json:"entries"`
	// Errno is why the resolution stopped (ENOENT, ENOTDIR, ELOOP, EACCES), 0 when the path
	// resolved.
	Errno int `json:"errno,omitempty"`
	// Truncated says that the directory had more entries than the lookup carries.
	Truncated bool `json:"truncated,omitempty"`
}

// Entry is one name in the target's root and what lstat(2) says of it.
type Entry struct {
	Path  string `json:"path"` // absolute, with no symbolic link before its last name
	Mode  uint32 `json:"mode"` // st_mode: type and permission bits
	UID   uint32 `json:"uid"`
	GID   uint32 `json:"gid"`
	Size  int64  `json:"size"`
	Mtime int64  `json:"mtime"` // nanoseconds since the epoch
	Link  string `json:"link,omitempty"`
}
