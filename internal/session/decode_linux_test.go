package session

import (
	"net/netip"
	"slices"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/sys/unix"
)

func TestParseNameserversAndHosts(t *testing.T) {
	conf := []byte("search shop.svc.cluster.local\nnameserver 10.96.0.10\nnameserver fd00::10\nnameserver bogus\noptions ndots:5\n")
	got := parseNameservers(conf)
	want := []netip.Addr{netip.MustParseAddr("10.96.0.10"), netip.MustParseAddr("fd00::10")}
	if !slices.Equal(got, want) {
		t.Errorf("parseNameservers = %v, want %v", got, want)
	}
	hosts := parseHosts([]byte("127.0.0.1 localhost\n10.96.0.80 billing-legacy billing # old\n# 10.0.0.1 commented\n"))
	if n := hosts[netip.MustParseAddr("10.96.0.80")]; !slices.Equal(n, []string{"billing-legacy", "billing"}) {
		t.Errorf("parseHosts names of 10.96.0.80 = %v", n)
	}
	if _, ok := hosts[netip.MustParseAddr("10.0.0.1")]; ok {
		t.Error("parseHosts took a commented line")
	}
}

func dnsAnswer(t testing.TB, name string, ip [4]byte) []byte {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{Response: true})
	b.StartQuestions()
	n := dnsmessage.MustNewName(name)
	b.Question(dnsmessage.Question{Name: n, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	b.StartAnswers()
	b.AResource(dnsmessage.ResourceHeader{Name: n, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}, dnsmessage.AResource{A: ip})
	msg, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func TestLearnDNS(t *testing.T) {
	r := &Redirector{names: map[netip.Addr][]string{}}
	r.learnDNS(dnsAnswer(t, "nginx.shop.svc.cluster.local.", [4]byte{10, 96, 0, 80}))
	if got := r.names[netip.MustParseAddr("10.96.0.80")]; !slices.Contains(got, "nginx.shop.svc.cluster.local") {
		t.Errorf("names of 10.96.0.80 = %v, want nginx.shop.svc.cluster.local", got)
	}
}

func FuzzParseSockaddr(f *testing.F) {
	f.Add(encodeSockaddr(unix.AF_INET, netip.MustParseAddrPort("10.96.0.10:53")))
	f.Add(encodeSockaddr(unix.AF_INET6, netip.MustParseAddrPort("[fd00::1]:443")))
	f.Fuzz(func(t *testing.T, b []byte) {
		ap, fam, ok := parseSockaddr(b)
		if !ok {
			return
		}
		again, fam2, ok2 := parseSockaddr(encodeSockaddr(fam, ap))
		if !ok2 || fam2 != fam || again != ap {
			t.Fatalf("re-encoding %v (family %d) gives %v %d %v", ap, fam, again, fam2, ok2)
		}
	})
}

func FuzzParseTargetFiles(f *testing.F) {
	f.Add([]byte("nameserver 10.96.0.10\n127.0.0.1 localhost\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, a := range parseNameservers(b) {
			if !a.IsValid() {
				t.Fatal("invalid nameserver address")
			}
		}
		for a, names := range parseHosts(b) {
			if !a.IsValid() || len(names) == 0 {
				t.Fatalf("hosts entry %v %v", a, names)
			}
		}
	})
}

func FuzzLearnDNS(f *testing.F) {
	f.Add(dnsAnswer(f, "nginx.shop.svc.cluster.local.", [4]byte{10, 96, 0, 80}))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := &Redirector{names: map[netip.Addr][]string{}}
		r.learnDNS(b)
		for a := range r.names {
			if !a.IsValid() {
				t.Fatal("learned an invalid address")
			}
		}
	})
}
