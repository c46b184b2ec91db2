// Package testenv owns the fixtures of doppel's privileged test tier: the doppel binary and the
// test programs built for a test binary, and the network namespaces, /etc/netns directories,
// temporary files and processes (dnsmasq, nginx, the IPv4 and IPv6 echo servers, the pod's
// loopback "sidecar" echo server, the pod's own nginx and echo servers, the "pod" process) of
// each test's Topology, the cluster namespace's forwarding between pod and client, and the
// mounts of the pod process's mount namespace (its overlay root, the tmpfs holding the
// overlay's changes, and its volumes, whose files are under the topology's directory).
//
// Lifetimes: binaries built by BuildDoppel and BuildGo live in one temporary directory for the
// whole test binary and are removed by Main when the tests end. Everything a Topology creates
// lives exactly as long as the test that made it: NewTopology registers a t.Cleanup before it
// creates anything, so namespaces, files and processes are removed also when the test fails or
// NewTopology itself stops half way. Cleanup ends only the processes this package started, by
// pid. The pod's mounts are made inside its mount namespace only, never in the machine's, and
// go with that namespace when the pod process ends (and with it, any process that entered
// it). A test binary killed before its cleanups ran (a -timeout panic) leaves a record in
// /run/doppel-testenv/<id>; Main of the next privileged run removes what it left (SweepStale).
// The package starts no goroutines that outlive a call and keeps no file descriptors open
// between calls; a connection from DialClient belongs to its caller. DialClient enters the
// client namespace on a locked OS thread of its own and leaves it before it returns (or lets
// that thread end, should leaving fail).
//
// Privileged tests call Privileged first: it skips unless DOPPEL_PRIVILEGED_TESTS=1, and fails
// when that is set but the process is not root.
package testenv
