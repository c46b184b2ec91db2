package config

import (
	"fmt"
	"net/netip"
	"path"
)

// Matcher decides, connection by connection, whether the program's outgoing
// traffic leaves from the target's network. Build it with Outgoing.Matcher;
// it is read-only afterwards and safe for concurrent use.
type Matcher struct {
	enabled       bool
	local, remote filter
}

// filter is a Filter with its entries parsed.
type filter struct {
	prefixes []netip.Prefix
	ports    []portRange
	hosts    []string // normalized patterns
}

// Matcher compiles o's rules. It fails on an entry Check would reject.
func (o Outgoing) Matcher() (*Matcher, error) {
	local, err := compile(o.Local)
	if err != nil {
		return nil, fmt.Errorf("outgoing.local: %w", err)
	}
	remote, err := compile(o.Remote)
	if err != nil {
		return nil, fmt.Errorf("outgoing.remote: %w", err)
	}
	return &Matcher{enabled: o.IsEnabled(), local: local, remote: remote}, nil
}

func compile(f Filter) (filter, error) {
	var c filter
	for _, s := range f.CIDRs {
		p, err := parsePrefix(s)
		if err != nil {
			return filter{}, err
		}
		c.prefixes = append(c.prefixes, p)
	}
	for _, s := range f.Ports {
		r, err := parsePorts(s)
		if err != nil {
			return filter{}, err
		}
		c.ports = append(c.ports, r)
	}
	for _, s := range f.Hosts {
		if err := checkHost(s); err != nil {
			return filter{}, err
		}
		c.hosts = append(c.hosts, normalizeHost(s))
	}
	return c, nil
}

// Remote reports whether a connection to dst, whose address the program got
// by resolving names (none when it used an address directly), should go out
// from the target. In order: with outgoing disabled, no; a remote rule
// matches, yes; a local rule matches, no; a loopback or unspecified address,
// no; anything else, yes.
func (m *Matcher) Remote(dst netip.AddrPort, names []string) bool {
	if !m.enabled {
		return false
	}
	addr := dst.Addr().Unmap().WithZone("")
	if !addr.IsValid() {
		return false // nothing to route; the kernel gives the program its error
	}
	if m.remote.match(addr, dst.Port(), names) {
		return true
	}
	if m.local.match(addr, dst.Port(), names) {
		return false
	}
	return !addr.IsLoopback() && !addr.IsUnspecified()
}

func (f *filter) match(addr netip.Addr, port uint16, names []string) bool {
	for _, p := range f.prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	for _, r := range f.ports {
		if r.lo <= port && port <= r.hi {
			return true
		}
	}
	for _, pattern := range f.hosts {
		for _, name := range names {
			if ok, _ := path.Match(pattern, normalizeHost(name)); ok {
				return true
			}
		}
	}
	return false
}
