package config

import (
	"net/netip"
	"testing"
)

func TestMatcherRemote(t *testing.T) {
	rules := Outgoing{
		Local: Filter{
			CIDRs: []string{"10.0.0.0/8", "::ffff:192.168.0.0/112"},
			Ports: []string{"5432"},
			Hosts: []string{"*.local", "Example.COM."},
		},
		Remote: Filter{
			CIDRs: []string{"10.96.0.0/12", "127.0.0.53"},
			Ports: []string{"8000-8100"},
			Hosts: []string{"*.svc.cluster.local"},
		},
	}
	off := rules
	off.Enabled = ptr(false)

	for _, tc := range []struct {
		name  string
		rules Outgoing
		dst   string
		names []string
		want  bool
	}{
		{"plain address goes out", rules, "203.0.113.7:443", nil, true},
		{"plain IPv6 goes out", rules, "[2001:db8::1]:443", nil, true},
		{"disabled keeps all local", off, "10.96.0.10:8000", []string{"a.svc.cluster.local"}, false},
		{"disabled keeps plain address local", off, "203.0.113.7:443", nil, false},

		{"loopback stays local", rules, "127.0.0.1:80", nil, false},
		{"IPv6 loopback stays local", rules, "[::1]:80", nil, false},
		{"mapped loopback stays local", rules, "[::ffff:127.0.0.1]:80", nil, false},
		{"unspecified stays local", rules, "0.0.0.0:80", nil, false},
		{"IPv6 unspecified stays local", rules, "[::]:80", nil, false},
		{"remote CIDR wins over loopback", rules, "127.0.0.53:53", nil, true},
		{"remote port wins over loopback", rules, "127.0.0.1:8080", nil, true},
		{"zero address stays local", rules, "", nil, false},

		{"local CIDR", rules, "10.1.2.3:443", nil, false},
		{"local CIDR from mapped prefix", rules, "192.168.3.4:443", nil, false},
		{"local CIDR, mapped address", rules, "[::ffff:10.1.2.3]:443", nil, false},
		{"remote CIDR inside local CIDR wins", rules, "10.96.0.10:443", nil, true},
		{"local port", rules, "203.0.113.7:5432", nil, false},
		{"remote port range, low end", rules, "10.1.2.3:8000", nil, true},
		{"remote port range, high end", rules, "10.1.2.3:8100", nil, true},
		{"past remote port range", rules, "10.1.2.3:8101", nil, false},

		{"local host glob", rules, "203.0.113.7:443", []string{"printer.local"}, false},
		{"local host, case and trailing dot", rules, "203.0.113.7:443", []string{"EXAMPLE.com."}, false},
		{"remote host glob wins over local CIDR", rules, "10.1.2.3:443", []string{"db.ns.svc.cluster.local"}, true},
		{"remote host matches any of the names", rules, "10.1.2.3:443", []string{"x.local", "db.svc.cluster.local."}, true},
		{"remote host glob needs the suffix", rules, "10.1.2.3:443", []string{"svc.cluster.local"}, false},
		{"host rule does not match without names", rules, "203.0.113.7:443", nil, true},
		{"zoned address", rules, "[fe80::1%eth0]:443", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var dst netip.AddrPort
			if tc.dst != "" {
				dst = netip.MustParseAddrPort(tc.dst)
			}
			m, err := tc.rules.Matcher()
			if err != nil {
				t.Fatal(err)
			}
			if got := m.Remote(dst, tc.names); got != tc.want {
				t.Errorf("Remote(%v, %q) = %v, want %v", dst, tc.names, got, tc.want)
			}
		})
	}
}

func TestMatcherError(t *testing.T) {
	for _, o := range []Outgoing{
		{Local: Filter{CIDRs: []string{"10.0.0/8"}}},
		{Remote: Filter{Ports: []string{"x"}}},
		{Remote: Filter{Hosts: []string{"[z"}}},
	} {
		if _, err := o.Matcher(); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}
