// Package capture gives copies of the TCP connections that clients make to some ports of a
// target, without firewall rules and without standing in the connections' path: it reads the
// clients' packets in the target's network namespace and reassembles each client's byte stream
// from them. It never delivers a corrupted stream: a connection with missing bytes is delivered
// up to the first gap and then ended as incomplete, with a reason.
//
// The packets come from one of two sources, chosen at Start:
//
//   - a packet socket (AF_PACKET, CAP_NET_RAW only): passive; when its ring is full the kernel
//     drops the copy while the server gets the packet, and the connection ends incomplete;
//   - the tap (Options.Tap; CAP_BPF and CAP_NET_ADMIN, Linux 6.6): an eBPF program attached
//     with TCX links at the ingress of every interface of the namespace, which copies each
//     segment into a BPF ring buffer, and drops a segment it cannot copy, so that the client
//     sends it again: what the server gets, the capture gets, and a full ring slows the
//     clients down instead of losing copies.
//
// What it owns, and for how long, per Capture (from Start until Close returns):
//
//   - The packet socket (SOCK_DGRAM, ETH_P_ALL, bound to every interface of the namespace),
//     its classic BPF filter (replaced by SetPorts) and its receive ring: a TPACKET_V3 ring of
//     ringBlocks blocks of ringBlockSize bytes, mapped into the process (64 MiB by default).
//     An eventfd that wakes the capture goroutine for Close.
//   - Or, with the tap: the eBPF program, its maps (the captured ports, the interfaces'
//     link-layer header lengths, a scratch entry per CPU, two per-CPU counters, the ring buffer
//     of 64 MiB) and one TCX link per interface. They exist only through the process's
//     descriptors, so the kernel detaches and frees them when the process ends, however it
//     ends. A netlink socket in the namespace hears of interfaces added later, and a goroutine
//     attaches the program to each (until Close). A copy of the ring's descriptor in Go's
//     poller, on which the capture goroutine waits between readings.
//   - One goroutine, the only reader of the ring. It decodes the packets, keeps the state of
//     every connection (its next expected sequence number and the out-of-order bytes that wait
//     for a gap to be filled: at most maxConnBuffer per connection and maxTotalBuffer in all;
//     for a few seconds after their end, the addresses of connections it does not deliver),
//     and calls Options.Open and the Sinks' Write and End methods.
//   - Each Sink from Open until its End call, which happens exactly once: when the client's FIN
//     or RST has been seen after all its data, when data is lost, when the port stops being
//     captured, or at Close.
//
// What is captured: IPv4 and IPv6 TCP packets that carry data or SYN, FIN or RST, whose
// destination port is a captured port and that the kernel marks PACKET_HOST, that is, packets
// this namespace receives. Only the client-to-server direction is read. On the loopback interface
// every packet shows up twice, once as it is sent (PACKET_OUTGOING) and once as it is received
// (PACKET_HOST); the filter keeps only the second, so connections over lo (from a sidecar) are
// captured exactly once. Packets the namespace sends (PACKET_OUTGOING) and packets for other
// hosts (PACKET_OTHERHOST, seen in promiscuous mode) are never taken. The tap sees received
// packets only (ingress), on interfaces with an Ethernet or loopback header or none; other link
// types are not tapped (a warning names them).
//
// What a Sink gets: a connection is opened (Options.Open) when the client's first segment after
// its SYN is seen, and delivered from the byte after the SYN. Out-of-order segments wait for
// the gap before them, retransmitted and overlapping bytes are delivered once, and bytes after
// the FIN are ignored. A gap that no retransmission fills within gapTimeout ends the connection
// incomplete. Such gaps come from packets the kernel dropped because the ring was full (the
// server got them, so the client never sends them again): Stats.Drops counts those. The tap
// has no such gaps: a segment it cannot copy is dropped (Stats.Held) and comes again; it only
// passes uncopied a segment larger than 64 KiB (BIG TCP), which Stats.Drops counts. A gap is
// seen from any later segment of the client that is captured; bare ACKs (no data, no SYN, FIN
// or RST) are not (the filter and the tap leave them out: they tell the reassembly nothing, and
// they are two of a short connection's five packets), so a connection whose last data is lost
// and whose client then only reads cannot be told from an idle one, and stays open until the
// client sends again, ends (its FIN shows the gap), or Close.
// Connections that were open before the capture started, or before their port was added, are
// not delivered at all (their start is unknown): they only count in Stats.Missed.
//
// Limits: IPv6 packets with extension headers between the fixed header and TCP, and IPv4
// fragments, are not captured (a connection that needs them ends incomplete). Checksums are not
// verified: with checksum offload and GRO/GSO the kernel hands the packet socket packets whose
// checksums are not filled in yet. Packets merged by GRO or not yet split by GSO are handled:
// lengths come from the IP total length (IPv4) or payload length (IPv6) and the TCP data
// offset, and a zero length field (BIG TCP) means the whole packet.
package capture
