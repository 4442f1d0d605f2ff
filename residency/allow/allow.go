// Package allow parses and matches the collector addresses a zone's proxies
// may export spans to (a Zone's residency.allowedCollectors).
//
// A pattern is one of
//
//	jaeger.west.svc            an exact host name (case-insensitive, a trailing dot ignored)
//	*.west.svc                 any host name strictly below west.svc, at any depth
//	                           (a.west.svc, a.b.west.svc; not west.svc itself)
//	10.1.2.3, fd00::7          one IP address
//	10.1.0.0/16, fd00::/8      every IP address in a CIDR block
//
// each optionally followed by a port, which the collector's port must then
// equal: jaeger.west.svc:9411, *.west.svc:4317, 10.1.0.0/16:9411. An IPv6
// address or block with a port is written in brackets: [fd00::7]:4317,
// [fd00::/8]:4317.
//
// Host names are matched as written in the policy: global does not resolve
// them, so a host-name pattern never matches an IP collector and a CIDR never
// matches a host-name collector.
package allow

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// MaxPatternLength bounds one pattern (a DNS name is at most 253 characters;
// a port and brackets add a few).
const MaxPatternLength = 270

// Kind says what a pattern matches.
type Kind int

const (
	KindHost   Kind = iota // one host name
	KindSuffix             // host names below a domain (*.suffix)
	KindIP                 // one IP address
	KindCIDR               // IP addresses in a block
)

// Pattern is one parsed allowed-collector entry.
type Pattern struct {
	// Raw is the pattern as written.
	Raw  string
	Kind Kind
	// Host is the lower-cased host name of KindHost, or the domain below which
	// KindSuffix matches (without the "*.").
	Host   string
	Prefix netip.Prefix // KindIP (a /32 or /128) and KindCIDR
	// Port, when not 0, is the only port allowed.
	Port uint32
}

// Parse reads one pattern. Errors say what is wrong in words an operator can
// act on; they never echo more than the pattern.
func Parse(raw string) (Pattern, error) {
	p := Pattern{Raw: raw}
	s := raw
	switch {
	case s == "":
		return p, errors.New("must not be empty")
	case len(s) > MaxPatternLength:
		return p, fmt.Errorf("must be at most %d characters", MaxPatternLength)
	case strings.Contains(s, "://"):
		return p, errors.New("must be a host, *.domain or CIDR with an optional :port, not a URL")
	case strings.ContainsAny(s, " \t\r\n?#@%\\"):
		return p, errors.New("must be a host, *.domain or CIDR with an optional :port: no spaces or URL characters")
	}
	body, port, err := splitPort(s)
	if err != nil {
		return p, err
	}
	p.Port = port
	switch {
	case strings.Contains(body, "/"):
		pfx, err := netip.ParsePrefix(body)
		if err != nil {
			return p, fmt.Errorf("%q is not a valid CIDR block", body)
		}
		if pfx.Addr().Zone() != "" {
			return p, fmt.Errorf("%q: an IPv6 zone is not allowed", body)
		}
		if m := pfx.Masked(); m != pfx {
			return p, fmt.Errorf("%q has host bits set: write %s", body, m)
		}
		p.Kind, p.Prefix = KindCIDR, unmapPrefix(pfx)
		if p.Prefix.IsSingleIP() {
			p.Kind = KindIP
		}
		return p, nil
	case isIPish(body):
		addr, err := netip.ParseAddr(body)
		if err != nil || addr.Zone() != "" {
			return p, fmt.Errorf("%q is not a valid IP address", body)
		}
		addr = addr.Unmap()
		p.Kind, p.Prefix = KindIP, netip.PrefixFrom(addr, addr.BitLen())
		return p, nil
	case strings.HasPrefix(body, "*."):
		domain := normalizeHost(body[2:])
		if err := checkHostname(domain); err != nil {
			return p, fmt.Errorf("wildcard %q: %w", body, err)
		}
		p.Kind, p.Host = KindSuffix, domain
		return p, nil
	case strings.Contains(body, "*"):
		return p, errors.New("a wildcard is only allowed as the whole first label, as in *.west.svc")
	default:
		host := normalizeHost(body)
		if err := checkHostname(host); err != nil {
			return p, fmt.Errorf("host %q: %w", body, err)
		}
		p.Kind, p.Host = KindHost, host
		return p, nil
	}
}

// splitPort separates an optional ":port" from the host part.
func splitPort(s string) (string, uint32, error) {
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", 0, errors.New("missing ] after a bracketed IPv6 address")
		}
		body, rest := s[1:end], s[end+1:]
		if !strings.Contains(body, ":") {
			return "", 0, errors.New("brackets are only for IPv6 addresses")
		}
		if rest == "" {
			return body, 0, nil
		}
		ps, ok := strings.CutPrefix(rest, ":")
		if !ok {
			return "", 0, fmt.Errorf("unexpected %q after ]", rest)
		}
		port, err := parsePort(ps)
		return body, port, err
	}
	switch strings.Count(s, ":") {
	case 0:
		return s, 0, nil
	case 1:
		host, ps, _ := strings.Cut(s, ":")
		if host == "" {
			return "", 0, errors.New("missing host before :port")
		}
		port, err := parsePort(ps)
		return host, port, err
	default:
		// Unbracketed IPv6: no port.
		return s, 0, nil
	}
}

func parsePort(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n < 1 || n > 65535 || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("port %q must be a number from 1 to 65535", s)
	}
	return uint32(n), nil
}

// isIPish reports whether s looks like an IP address rather than a host name:
// IPv6 (has a colon) or only digits and dots.
func isIPish(s string) bool {
	if strings.Contains(s, ":") {
		return true
	}
	if s == "" {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && c != '.' {
			return false
		}
	}
	return true
}

func unmapPrefix(p netip.Prefix) netip.Prefix {
	if !p.Addr().Is4In6() || p.Bits() < 96 {
		return p
	}
	return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
}

func normalizeHost(h string) string {
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

// checkHostname accepts RFC 1123 host names (letters, digits, '-' and '_'
// in labels of 1-63 characters, at most 253 in all).
func checkHostname(h string) error {
	if h == "" {
		return errors.New("must not be empty")
	}
	if len(h) > 253 {
		return errors.New("must be at most 253 characters")
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" {
			return errors.New("has an empty label")
		}
		if len(label) > 63 {
			return errors.New("has a label longer than 63 characters")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return errors.New("has a label starting or ending with '-'")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("has the character %q, not allowed in a host name", c)
			}
		}
	}
	return nil
}

// Matches reports whether a collector at host:port is allowed by p. host may
// be a host name or an IP address (IPv6 with or without brackets).
func (p Pattern) Matches(host string, port uint32) bool {
	if p.Port != 0 && p.Port != port {
		return false
	}
	h := normalizeHost(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
	if addr, err := netip.ParseAddr(h); err == nil {
		if addr.Zone() != "" {
			return false
		}
		if p.Kind != KindIP && p.Kind != KindCIDR {
			return false
		}
		return p.Prefix.Contains(addr.Unmap())
	}
	switch p.Kind {
	case KindHost:
		return h == p.Host
	case KindSuffix:
		return len(h) > len(p.Host)+1 && strings.HasSuffix(h, p.Host) && h[len(h)-len(p.Host)-1] == '.'
	}
	return false
}

// String is the pattern as written.
func (p Pattern) String() string { return p.Raw }

// List is an allowed set: a collector is allowed when any pattern matches.
type List []Pattern

// FieldError is a bad pattern at an index of the input.
type FieldError struct {
	Index int
	Err   error
}

func (e *FieldError) Error() string { return fmt.Sprintf("[%d]: %v", e.Index, e.Err) }
func (e *FieldError) Unwrap() error { return e.Err }

// Compile parses every pattern. It returns every bad one (as *FieldError,
// joined) and the list of the good ones, so callers can report all problems
// at once.
func Compile(raw []string) (List, error) {
	out := make(List, 0, len(raw))
	var errs []error
	seen := map[string]int{}
	for i, r := range raw {
		p, err := Parse(r)
		if err != nil {
			errs = append(errs, &FieldError{Index: i, Err: err})
			continue
		}
		if j, dup := seen[p.key()]; dup {
			errs = append(errs, &FieldError{Index: i, Err: fmt.Errorf("duplicate of [%d]", j)})
			continue
		}
		seen[p.key()] = i
		out = append(out, p)
	}
	return out, errors.Join(errs...)
}

// key identifies what a pattern matches, so "A.b" and "a.b." are duplicates.
func (p Pattern) key() string {
	switch p.Kind {
	case KindIP, KindCIDR:
		return fmt.Sprintf("%d|%s|%d", p.Kind, p.Prefix, p.Port)
	}
	return fmt.Sprintf("%d|%s|%d", p.Kind, p.Host, p.Port)
}

// Allows returns the first pattern matching host:port.
func (l List) Allows(host string, port uint32) (Pattern, bool) {
	for _, p := range l {
		if p.Matches(host, port) {
			return p, true
		}
	}
	return Pattern{}, false
}

// Strings returns the patterns as written.
func (l List) Strings() []string {
	out := make([]string, len(l))
	for i, p := range l {
		out[i] = p.Raw
	}
	return out
}
