package config

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"
)

// fieldError is a value problem found in a decoded Config. path names the
// field the way the file spells it ("outgoing.local.cidrs[2]"), so that Check
// can find its line and Validate can name it.
type fieldError struct {
	path string
	err  error
	// reads names the other fields whose values the check compared, so that
	// Check can drop the error when one of them had the wrong type and so
	// holds its default instead of what the file meant.
	reads []string
}

// Validate reports every value problem in c, one per line, each naming its
// field, such as `outgoing.local.cidrs[0]: invalid CIDR "10.0.0/8": ...`.
func (c *Config) Validate() error {
	var errs []error
	for _, fe := range c.validate() {
		errs = append(errs, fmt.Errorf("%s: %w", fe.path, fe.err))
	}
	return errors.Join(errs...)
}

// validate checks the values of c, field by field. Types are already right:
// the decoder or the flag parser saw to them.
func (c *Config) validate() []fieldError {
	var fes []fieldError
	add := func(path string, err error) {
		if err != nil {
			fes = append(fes, fieldError{path: path, err: err})
		}
	}
	add("logLevel", checkLogLevel(c.LogLevel))
	if c.Agent.GracePeriod < 0 {
		add("agent.gracePeriod", fmt.Errorf("must not be negative, got %q", c.Agent.GracePeriod))
	}
	add("agent.listen", checkListen(c.Agent.Listen, c.Agent.AllowNonLoopback))
	fes = append(fes, c.validateKubernetes()...)
	fes = append(fes, c.Incoming.validate()...)
	filters := []struct {
		name string
		f    Filter
	}{{"outgoing.local", c.Outgoing.Local}, {"outgoing.remote", c.Outgoing.Remote}}
	for _, nf := range filters {
		name, f := nf.name, nf.f
		for i, s := range f.CIDRs {
			add(fmt.Sprintf("%s.cidrs[%d]", name, i), checkCIDR(s))
		}
		for i, s := range f.Ports {
			add(fmt.Sprintf("%s.ports[%d]", name, i), checkPorts(s))
		}
		for i, s := range f.Hosts {
			add(fmt.Sprintf("%s.hosts[%d]", name, i), checkHost(s))
		}
	}
	for i, s := range c.Env.Include {
		add(fmt.Sprintf("env.include[%d]", i), checkEnvPattern(s))
	}
	for i, s := range c.Env.Exclude {
		add(fmt.Sprintf("env.exclude[%d]", i), checkEnvPattern(s))
	}
	for _, k := range slices.Sorted(maps.Keys(c.Env.Override)) {
		add("env.override."+k, checkOverride(k, c.Env.Override[k]))
	}
	fes = append(fes, c.Files.validate()...)
	return fes
}

// normalize rewrites values into the one form the rest of doppel expects:
// HTTP methods in upper case, a kubeconfig path without a leading "~/". It
// runs before validation.
func (c *Config) normalize() {
	c.Incoming.HTTP.normalize()
	c.Kubernetes.normalize()
}

// LogLevels are the values LogLevel accepts, least severe first.
var LogLevels = []string{"debug", "info", "warn", "error"}

func checkLogLevel(s string) error {
	for _, l := range LogLevels {
		if s == l {
			return nil
		}
	}
	return fmt.Errorf("unknown log level %q: want one of %s", s, strings.Join(LogLevels, ", "))
}

// checkListen accepts host:port where port is a number and host is a
// loopback IP address or "localhost", or anything when allowNonLoopback.
func checkListen(s string, allowNonLoopback bool) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("invalid listen address %q: want host:port like %q", s, DefaultListen)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("invalid port in listen address %q: want a number from 0 to 65535", s)
	}
	if allowNonLoopback || host == "localhost" {
		return nil
	}
	if a, err := netip.ParseAddr(host); err == nil && a.Unmap().IsLoopback() {
		return nil
	}
	return fmt.Errorf("listen address %q is not a loopback address: use one like %q, or set agent.allowNonLoopback to expose the agent", s, DefaultListen)
}

// parsePrefix reads a CIDR, or a single address as a one-address prefix.
// IPv4-mapped IPv6 prefixes become IPv4 prefixes, as addresses are unmapped
// before matching.
func parsePrefix(s string) (netip.Prefix, error) {
	var p netip.Prefix
	var err error
	if strings.Contains(s, "/") {
		p, err = netip.ParsePrefix(s)
	} else {
		var a netip.Addr
		a, err = netip.ParseAddr(s)
		if err == nil && a.Zone() != "" {
			err = errors.New("zoned address")
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if err != nil || !p.IsValid() {
		return netip.Prefix{}, fmt.Errorf("invalid CIDR %q: want a prefix like \"10.0.0.0/8\" or an address like \"10.0.0.1\"", s)
	}
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

func checkCIDR(s string) error {
	_, err := parsePrefix(s)
	return err
}

// portRange is an inclusive range of ports; a single port has lo == hi.
type portRange struct{ lo, hi uint16 }

func parsePorts(s string) (portRange, error) {
	bad := func() (portRange, error) {
		return portRange{}, fmt.Errorf("invalid port %q: want a port like \"5432\" or a range like \"8000-8100\", from 1 to 65535", s)
	}
	loS, hiS, isRange := strings.Cut(s, "-")
	lo, err := parsePort(loS)
	if err != nil {
		return bad()
	}
	hi := lo
	if isRange {
		if hi, err = parsePort(hiS); err != nil {
			return bad()
		}
		if hi < lo {
			return portRange{}, fmt.Errorf("invalid port range %q: the first port is greater than the last", s)
		}
	}
	return portRange{lo, hi}, nil
}

func parsePort(s string) (uint16, error) {
	// ParseUint alone would accept "+80"; ports are plain digits.
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, errors.New("not a number")
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, errors.New("out of range")
	}
	return uint16(n), nil
}

func checkPorts(s string) error {
	_, err := parsePorts(s)
	return err
}

// normalizeHost lowercases a DNS name or host pattern and drops one trailing dot.
func normalizeHost(s string) string {
	return strings.TrimSuffix(strings.ToLower(s), ".")
}

func checkHost(s string) error {
	if normalizeHost(s) == "" {
		return errors.New("empty host pattern: want a DNS name or a glob like \"*.svc.cluster.local\"")
	}
	if _, err := path.Match(s, ""); err != nil {
		return fmt.Errorf("invalid host pattern %q: %w", s, err)
	}
	return nil
}

func checkEnvPattern(s string) error {
	if s == "" {
		return errors.New("empty variable name pattern: want a name or a glob like \"AWS_*\"")
	}
	if _, err := path.Match(s, ""); err != nil {
		return fmt.Errorf("invalid variable name pattern %q: %w", s, err)
	}
	return nil
}

func checkOverride(k, v string) error {
	switch {
	case k == "":
		return errors.New("empty variable name")
	case strings.ContainsFunc(k, func(r rune) bool { return !isNameRune(r) }):
		return fmt.Errorf("invalid variable name %q: use letters, digits, \"_\", \".\" and \"-\"", k)
	case strings.ContainsRune(v, 0):
		return fmt.Errorf("value of %s contains a NUL byte", k)
	}
	return nil
}

// isNameRune reports whether r may appear in the name of a variable set by
// env.override or --env: the characters real names use, nothing that YAML
// or a shell would read specially.
func isNameRune(r rune) bool {
	return r == '_' || r == '.' || r == '-' ||
		'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9'
}
