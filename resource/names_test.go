package resource

import (
	"regexp"
	"testing"
)

// The patterns the matchers of names.go replace.
var namePatterns = []struct {
	name  string
	re    *regexp.Regexp
	match func(string) bool
}{
	{"dns1123", regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`), isDNS1123},
	{"hostname", regexp.MustCompile(`^[A-Za-z0-9_]([-A-Za-z0-9_]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([-A-Za-z0-9_]*[A-Za-z0-9_])?)*\.?$`), isHostname},
	{"labelName", regexp.MustCompile(`^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`), isLabelName},
	{"tagKey", regexp.MustCompile(`^[a-zA-Z0-9.\-_:/]+$`), isTagKey},
	{"tagValue", regexp.MustCompile(`^[a-zA-Z0-9.\-_:]+$`), isTagValue},
}

var nameSamples = []string{
	"", "a", "A", "-", ".", "_", "/", ":", "a.", ".a", "a..b", "a.b", "a-b", "-a", "a-", "a.-b", "a-.b",
	"a_b", "_a", "a_", "a/b", "a:b", "kuma.io/zone", "kuma.io/service", "default", "burst-1",
	"zipkin-burst", "Zipkin.Example.COM.", "a..", "a.b.", "0", "9z", "a\n", "a\x00", "caf\u00e9",
	"\xff", "a b", "1.2.3.4", "[::1]", "x.y_z-w", "A-", "aB", "a.B", "*.example.com", "a\u0130",
}

func TestNameMatchersMatchPatterns(t *testing.T) {
	for _, p := range namePatterns {
		for _, s := range nameSamples {
			if got, want := p.match(s), p.re.MatchString(s); got != want {
				t.Errorf("%s(%q) = %v, pattern says %v", p.name, s, got, want)
			}
		}
	}
}

// FuzzNameMatchersMatchPatterns: every matcher accepts exactly what its
// pattern accepts.
func FuzzNameMatchersMatchPatterns(f *testing.F) {
	for _, s := range nameSamples {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, p := range namePatterns {
			if got, want := p.match(s), p.re.MatchString(s); got != want {
				t.Fatalf("%s(%q) = %v, pattern says %v", p.name, s, got, want)
			}
		}
	})
}
