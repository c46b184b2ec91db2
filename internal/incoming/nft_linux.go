package incoming

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// A session's rules live in one nftables table of the inet family, named doppel-<rank>-<kind>,
// created with NFT_TABLE_F_OWNER: the kernel deletes it when the netlink socket that created it
// closes, which happens when the agent exits in any way (SIGKILL and OOM included). Only that
// socket may change the table, so every change goes through the table's tableWriter.
//
// Sessions on one target are ordered by rank. Their chains hook prerouting and output at
// priority rankBase+rank, so the lowest rank sees a new connection first; the first redirect
// decides (a connection's NAT is set once). An agent passes a connection on (to the target's
// own service) from a socket marked markDoppel|rank; the output chain of every later session
// (higher rank) redirects such connections to its own agent, so sessions chain: mirrors
// first, then steals with an HTTP filter, then one steal of whole connections per port.
const (
	tablePrefix = "doppel-"
	// rankBase+rank stays between conntrack (-200) and the usual destination NAT (-100).
	rankBase = -200

	markDoppel = 0x646f0000 // "do"
	markMask   = 0xffff0000

	// nftTableFOwner is NFT_TABLE_F_OWNER (Linux 5.12), which x/sys does not define.
	nftTableFOwner = 0x2
)

// Kind is a session's place in the chain of sessions on one port.
type Kind int

const (
	KindMirror   Kind = iota // a copy of every connection; passes it on
	KindFiltered             // steals the HTTP requests its filter matches; passes the rest on
	KindSteal                // steals whole connections; the end of the chain
)

var kindNames = [...]string{"mirror", "filtered", "steal"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind" + strconv.Itoa(int(k))
}

// ranks of each kind: mirrors 1-39, filtered steals 40-89, whole steals 90-98.
func (k Kind) ranks() (lo, hi int) {
	switch k {
	case KindMirror:
		return 1, 39
	case KindFiltered:
		return 40, 89
	default:
		return 90, 98
	}
}

// tableName is the name of the table of a session with rank.
func tableName(rank int, k Kind) string {
	return fmt.Sprintf("%s%02d-%s", tablePrefix, rank, k)
}

// parseTableName reads rank and kind back from a table name; ok is false for other tables.
func parseTableName(name string) (rank int, k Kind, ok bool) {
	rest, found := strings.CutPrefix(name, tablePrefix)
	if !found {
		return 0, 0, false
	}
	num, kind, found := strings.Cut(rest, "-")
	if !found {
		return 0, 0, false
	}
	rank, err := strconv.Atoi(num)
	if err != nil {
		return 0, 0, false
	}
	for i, n := range kindNames {
		if n == kind {
			return rank, Kind(i), true
		}
	}
	return 0, 0, false
}

// Mark is the socket mark of the connections the agent of rank passes on.
func Mark(rank int) uint32 { return markDoppel | uint32(rank) }

// Session is another session's table found in the target's network namespace.
type Session struct {
	Table string
	Rank  int
	Kind  Kind
	Ports []uint16
}

// ListSessions reads the doppel tables of the network namespace netnsFD (-1: the caller's) and
// the ports each redirects.
func ListSessions(netnsFD int) ([]Session, error) {
	var opts []nftables.ConnOption
	if netnsFD >= 0 {
		opts = append(opts, nftables.WithNetNSFd(netnsFD))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("list nftables tables: %w", err)
	}
	var out []Session
	for _, t := range tables {
		rank, kind, ok := parseTableName(t.Name)
		if !ok {
			continue
		}
		s := Session{Table: t.Name, Rank: rank, Kind: kind}
		rules, err := c.GetRules(t, &nftables.Chain{Name: chainPrerouting, Table: t})
		if err != nil {
			if errors.Is(err, syscall.ENOENT) {
				continue // the table went away meanwhile, or is being made
			}
			return nil, fmt.Errorf("read rules of table %s: %w", t.Name, err)
		}
		for _, r := range rules {
			if p, ok := parsePortUserData(r.UserData); ok {
				s.Ports = append(s.Ports, p)
			}
		}
		sort.Slice(s.Ports, func(i, j int) bool { return s.Ports[i] < s.Ports[j] })
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Rank < out[j].Rank })
	return out, nil
}

const (
	chainPrerouting = "prerouting"
	chainOutput     = "output"
	portUserData    = "doppel port "
	// conntrackUserData marks the rule that keeps connection tracking on (conntrackRule).
	conntrackUserData = "doppel conntrack"
)

func parsePortUserData(b []byte) (uint16, bool) {
	s, ok := strings.CutPrefix(string(b), portUserData)
	if !ok {
		return 0, false
	}
	p, err := strconv.ParseUint(s, 10, 16)
	return uint16(p), err == nil
}

// tableWriter owns a session's table through the netlink socket that created it.
type tableWriter struct {
	conn  *netlink.Conn
	name  string
	rank  int
	kind  Kind
	agent uint16 // the agent's listening port, where the rules redirect
}

// errTableExists says another session took the rank first.
var errTableExists = errors.New("table exists")

// createTable creates the owned table with its two chains (no rules yet) in the network
// namespace netnsFD (-1: the caller's).
func createTable(netnsFD int, rank int, kind Kind, agentPort uint16) (*tableWriter, error) {
	cfg := &netlink.Config{}
	if netnsFD >= 0 {
		cfg.NetNS = netnsFD
	}
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, cfg)
	if err != nil {
		return nil, fmt.Errorf("nftables netlink socket: %w", err)
	}
	w := &tableWriter{conn: conn, name: tableName(rank, kind), rank: rank, kind: kind, agent: agentPort}
	msgs := []netlink.Message{w.newTable()}
	msgs = append(msgs, w.newChain(chainPrerouting, unix.NF_INET_PRE_ROUTING), w.newChain(chainOutput, unix.NF_INET_LOCAL_OUT))
	msgs = append(msgs, w.conntrackRule())
	if err := w.send(msgs); err != nil {
		conn.Close()
		if errors.Is(err, syscall.EEXIST) {
			return nil, errTableExists
		}
		return nil, fmt.Errorf("create nftables table %s: %w", w.name, featureError(err))
	}
	return w, nil
}

// featureError names what the kernel lacks for the errors that mean a missing feature.
func featureError(err error) error {
	switch {
	case errors.Is(err, syscall.EOPNOTSUPP), errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.EAFNOSUPPORT):
		return fmt.Errorf("%w (the kernel needs nf_tables with the inet family, nat, redirect and owned tables: Linux 5.12 or newer)", err)
	case errors.Is(err, syscall.EPERM):
		return fmt.Errorf("%w (writing nftables rules needs CAP_NET_ADMIN in the target's network namespace)", err)
	}
	return err
}

// SetPorts replaces the table's rules with redirects of ports, in one atomic batch. The
// conntrack rule stays first, whatever the ports.
func (w *tableWriter) SetPorts(ports []uint16) error {
	msgs := []netlink.Message{w.flushChain(chainPrerouting), w.flushChain(chainOutput), w.conntrackRule()}
	for _, p := range ports {
		msgs = append(msgs, w.newRule(chainPrerouting, p, w.redirect(p, false)))
		msgs = append(msgs, w.newRule(chainOutput, p, w.redirect(p, true)))
	}
	if err := w.send(msgs); err != nil {
		return fmt.Errorf("write nftables rules of table %s: %w", w.name, featureError(err))
	}
	return nil
}

// Close closes the owning socket; the kernel deletes the table with it.
func (w *tableWriter) Close() error { return w.conn.Close() }

// redirect is the expression list of `[meta mark & 0xffff0000 == markDoppel, meta mark & 0xffff
// < rank,] meta l4proto tcp, tcp dport port, redirect to :agent`. The mark part is for the
// output chain: only connections that an earlier session passed on are redirected there.
func (w *tableWriter) redirect(port uint16, fromEarlier bool) []expr.Any {
	var e []expr.Any
	if fromEarlier {
		e = append(e,
			&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: native32(markMask), Xor: native32(0)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: native32(markDoppel)},
			&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: native32(^uint32(markMask)), Xor: native32(0)},
			&expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 4, Size: 4},
			&expr.Cmp{Op: expr.CmpOpLt, Register: 1, Data: binary.BigEndian.AppendUint32(nil, uint32(w.rank))},
		)
	}
	return append(e,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, port)},
		&expr.Immediate{Register: 1, Data: binary.BigEndian.AppendUint16(nil, w.agent)},
		&expr.Redir{RegisterProtoMin: 1},
	)
}

// conntrackRule is `ct state & 0 == 1` in the prerouting chain: it never matches, but it
// keeps connection tracking on in the namespace for as long as the table lives. The kernel
// tracks connections in a namespace only while a rule there needs it (a redirect or a ct
// expression); a redirected connection is translated by its tracking entry, so when the last
// redirect rule goes (the program stops listening, or the session ends) without this rule,
// the connections still in flight through the agent lose their translation: the agent's
// segments leave with its own port, and the client resets them.
func (w *tableWriter) conntrackRule() netlink.Message {
	return w.newRuleData(chainPrerouting, conntrackUserData, []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: native32(0), Xor: native32(0)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: native32(1)},
	})
}

func native32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

func nftType(msg int) netlink.HeaderType {
	return netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | msg)
}

// genHeader is struct nfgenmsg: family, version, resource id (big-endian).
func genHeader(family uint8, resID uint16) []byte {
	return []byte{family, unix.NFNETLINK_V0, byte(resID >> 8), byte(resID)}
}

func attrs(a ...netlink.Attribute) []byte {
	b, err := netlink.MarshalAttributes(a)
	if err != nil {
		panic(err) // only for attributes wider than 64 KiB, which these never are
	}
	return b
}

func cstr(s string) []byte { return append([]byte(s), 0) }

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

const ackFlags = netlink.Request | netlink.Acknowledge

func (w *tableWriter) newTable() netlink.Message {
	return netlink.Message{
		Header: netlink.Header{Type: nftType(unix.NFT_MSG_NEWTABLE), Flags: ackFlags | netlink.Create | netlink.Excl},
		Data: append(genHeader(unix.NFPROTO_INET, 0), attrs(
			netlink.Attribute{Type: unix.NFTA_TABLE_NAME, Data: cstr(w.name)},
			netlink.Attribute{Type: unix.NFTA_TABLE_FLAGS, Data: be32(nftTableFOwner)},
		)...),
	}
}

func (w *tableWriter) newChain(name string, hook uint32) netlink.Message {
	return netlink.Message{
		Header: netlink.Header{Type: nftType(unix.NFT_MSG_NEWCHAIN), Flags: ackFlags | netlink.Create},
		Data: append(genHeader(unix.NFPROTO_INET, 0), attrs(
			netlink.Attribute{Type: unix.NFTA_CHAIN_TABLE, Data: cstr(w.name)},
			netlink.Attribute{Type: unix.NFTA_CHAIN_NAME, Data: cstr(name)},
			netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_CHAIN_HOOK, Data: attrs(
				netlink.Attribute{Type: unix.NFTA_HOOK_HOOKNUM, Data: be32(hook)},
				netlink.Attribute{Type: unix.NFTA_HOOK_PRIORITY, Data: be32(uint32(int32(rankBase + w.rank)))},
			)},
			netlink.Attribute{Type: unix.NFTA_CHAIN_TYPE, Data: cstr("nat")},
		)...),
	}
}

func (w *tableWriter) flushChain(chain string) netlink.Message {
	return netlink.Message{
		Header: netlink.Header{Type: nftType(unix.NFT_MSG_DELRULE), Flags: ackFlags},
		Data: append(genHeader(unix.NFPROTO_INET, 0), attrs(
			netlink.Attribute{Type: unix.NFTA_RULE_TABLE, Data: cstr(w.name)},
			netlink.Attribute{Type: unix.NFTA_RULE_CHAIN, Data: cstr(chain)},
		)...),
	}
}

func (w *tableWriter) newRule(chain string, port uint16, exprs []expr.Any) netlink.Message {
	return w.newRuleData(chain, portUserData+strconv.Itoa(int(port)), exprs)
}

// newRuleData appends a rule with exprs and userdata to chain.
func (w *tableWriter) newRuleData(chain, userData string, exprs []expr.Any) netlink.Message {
	var list []netlink.Attribute
	for _, e := range exprs {
		b, err := expr.Marshal(unix.NFPROTO_INET, e)
		if err != nil {
			panic(fmt.Sprintf("nftables expression %T: %v", e, err)) // a programming error
		}
		list = append(list, netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_LIST_ELEM, Data: b})
	}
	return netlink.Message{
		Header: netlink.Header{Type: nftType(unix.NFT_MSG_NEWRULE), Flags: ackFlags | netlink.Create | unix.NLM_F_APPEND},
		Data: append(genHeader(unix.NFPROTO_INET, 0), attrs(
			netlink.Attribute{Type: unix.NFTA_RULE_TABLE, Data: cstr(w.name)},
			netlink.Attribute{Type: unix.NFTA_RULE_CHAIN, Data: cstr(chain)},
			netlink.Attribute{Type: unix.NLA_F_NESTED | unix.NFTA_RULE_EXPRESSIONS, Data: attrs(list...)},
			netlink.Attribute{Type: unix.NFTA_RULE_USERDATA, Data: []byte(userData)},
		)...),
	}
}

// send sends msgs as one nftables transaction (all or nothing) and waits for every ack.
func (w *tableWriter) send(msgs []netlink.Message) error {
	batch := make([]netlink.Message, 0, len(msgs)+2)
	batch = append(batch, netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_BEGIN), Flags: netlink.Request},
		Data:   genHeader(unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES),
	})
	batch = append(batch, msgs...)
	batch = append(batch, netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_END), Flags: netlink.Request},
		Data:   genHeader(unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES),
	})
	sent, err := w.conn.SendMessages(batch)
	if err != nil {
		return err
	}
	// One ack per message that asked for it; the first error aborts the whole batch, and the
	// kernel still acks (or errors) the rest, so read them all.
	want := make(map[uint32]bool)
	for _, m := range sent {
		if m.Header.Flags&netlink.Acknowledge != 0 {
			want[m.Header.Sequence] = true
		}
	}
	var first error
	for len(want) > 0 {
		replies, err := w.conn.Receive()
		if err != nil {
			var op *netlink.OpError
			if errors.As(err, &op) {
				// mdlayher/netlink turns an error ack into an error; it has no sequence, so
				// count it against any outstanding message.
				if first == nil {
					first = op.Err
				}
				for seq := range want {
					delete(want, seq)
					break
				}
				continue
			}
			return err
		}
		for _, r := range replies {
			if r.Header.Type == netlink.Error {
				delete(want, r.Header.Sequence)
			}
		}
	}
	return first
}
