package allow

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		kind    Kind
		host    string
		prefix  string
		port    uint32
		wantErr string
	}{
		{in: "jaeger.west.svc", kind: KindHost, host: "jaeger.west.svc"},
		{in: "Jaeger.West.SVC.", kind: KindHost, host: "jaeger.west.svc"},
		{in: "collector", kind: KindHost, host: "collector"},
		{in: "my_collector.west", kind: KindHost, host: "my_collector.west"},
		{in: "jaeger.west.svc:9411", kind: KindHost, host: "jaeger.west.svc", port: 9411},
		{in: "*.west.svc", kind: KindSuffix, host: "west.svc"},
		{in: "*.West.Svc:4317", kind: KindSuffix, host: "west.svc", port: 4317},
		{in: "10.1.2.3", kind: KindIP, prefix: "10.1.2.3/32"},
		{in: "10.1.2.3:9411", kind: KindIP, prefix: "10.1.2.3/32", port: 9411},
		{in: "10.1.0.0/16", kind: KindCIDR, prefix: "10.1.0.0/16"},
		{in: "10.1.0.0/16:9411", kind: KindCIDR, prefix: "10.1.0.0/16", port: 9411},
		{in: "10.1.2.3/32", kind: KindIP, prefix: "10.1.2.3/32"},
		{in: "0.0.0.0/0", kind: KindCIDR, prefix: "0.0.0.0/0"},
		{in: "fd00::7", kind: KindIP, prefix: "fd00::7/128"},
		{in: "[fd00::7]", kind: KindIP, prefix: "fd00::7/128"},
		{in: "[fd00::7]:4317", kind: KindIP, prefix: "fd00::7/128", port: 4317},
		{in: "fd00::/8", kind: KindCIDR, prefix: "fd00::/8"},
		{in: "[fd00::/8]:4317", kind: KindCIDR, prefix: "fd00::/8", port: 4317},
		{in: "::ffff:10.0.0.1", kind: KindIP, prefix: "10.0.0.1/32"},
		{in: "::ffff:10.0.0.0/104", kind: KindCIDR, prefix: "10.0.0.0/8"},

		{in: "", wantErr: "must not be empty"},
		{in: strings.Repeat("a", MaxPatternLength+1), wantErr: "at most"},
		{in: "http://jaeger.west.svc:9411", wantErr: "not a URL"},
		{in: "jaeger west", wantErr: "no spaces"},
		{in: "jaeger.west.svc/api", wantErr: "not a valid CIDR"},
		{in: "10.1.2.3/16", wantErr: "host bits set: write 10.1.0.0/16"},
		{in: "10.1.0.0/33", wantErr: "not a valid CIDR"},
		{in: "10.1.2", wantErr: "not a valid IP"},
		{in: "300.1.2.3", wantErr: "not a valid IP"},
		{in: "fe80::1%eth0", wantErr: "no spaces or URL characters"},
		{in: "*", wantErr: "wildcard is only allowed"},
		{in: "*.", wantErr: "must not be empty"},
		{in: "a.*.svc", wantErr: "wildcard is only allowed"},
		{in: "*west.svc", wantErr: "wildcard is only allowed"},
		{in: "*.*.svc", wantErr: "not allowed in a host name"},
		{in: "jaeger..svc", wantErr: "empty label"},
		{in: "-jaeger.svc", wantErr: "starting or ending with '-'"},
		{in: strings.Repeat("a", 64) + ".svc", wantErr: "longer than 63"},
		{in: "jaeger.svc:0", wantErr: "from 1 to 65535"},
		{in: "jaeger.svc:65536", wantErr: "from 1 to 65535"},
		{in: "jaeger.svc:09411", wantErr: "from 1 to 65535"},
		{in: "jaeger.svc:", wantErr: "from 1 to 65535"},
		{in: "jaeger.svc:http", wantErr: "from 1 to 65535"},
		{in: ":9411", wantErr: "missing host"},
		{in: "[fd00::7", wantErr: "missing ]"},
		{in: "[jaeger.svc]:80", wantErr: "only for IPv6"},
		{in: "[fd00::7]4317", wantErr: "unexpected"},
		{in: "jägér.svc", wantErr: "not allowed in a host name"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			p, err := Parse(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if p.Kind != tt.kind || p.Host != tt.host || p.Port != tt.port || p.Raw != tt.in {
				t.Fatalf("Parse(%q) = %+v", tt.in, p)
			}
			if tt.prefix != "" && p.Prefix.String() != tt.prefix {
				t.Fatalf("Parse(%q) prefix = %s, want %s", tt.in, p.Prefix, tt.prefix)
			}
		})
	}
}

func TestMatches(t *testing.T) {
	tests := []struct {
		pattern string
		host    string
		port    uint32
		want    bool
	}{
		// exact host
		{"jaeger.west.svc", "jaeger.west.svc", 9411, true},
		{"jaeger.west.svc", "JAEGER.west.svc.", 9411, true},
		{"jaeger.west.svc", "jaeger.east.svc", 9411, false},
		{"jaeger.west.svc", "x.jaeger.west.svc", 9411, false},
		{"jaeger.west.svc", "10.0.0.1", 9411, false},
		// port
		{"jaeger.west.svc:9411", "jaeger.west.svc", 9411, true},
		{"jaeger.west.svc:9411", "jaeger.west.svc", 4317, false},
		{"*.west.svc:4317", "otel.west.svc", 4317, true},
		{"*.west.svc:4317", "otel.west.svc", 4318, false},
		// wildcard
		{"*.west.svc", "jaeger.west.svc", 1, true},
		{"*.west.svc", "a.b.west.svc", 1, true},
		{"*.west.svc", "west.svc", 1, false},
		{"*.west.svc", "evilwest.svc", 1, false},
		{"*.west.svc", "jaeger.west.svc.evil.com", 1, false},
		{"*.west.svc", ".west.svc", 1, false},
		{"*.west.svc", "jaeger.east.svc", 1, false},
		{"*.svc", "jaeger.east.svc", 1, true},
		// IPv4
		{"10.1.2.3", "10.1.2.3", 80, true},
		{"10.1.2.3", "10.1.2.4", 80, false},
		{"10.1.0.0/16", "10.1.200.9", 80, true},
		{"10.1.0.0/16", "10.2.0.1", 80, false},
		{"10.1.0.0/16:9411", "10.1.0.1", 9411, true},
		{"10.1.0.0/16:9411", "10.1.0.1", 9412, false},
		{"10.1.0.0/16", "::ffff:10.1.0.1", 80, true},
		{"10.1.0.0/16", "ten.west.svc", 80, false},
		{"0.0.0.0/0", "192.168.1.1", 80, true},
		{"0.0.0.0/0", "fd00::1", 80, false},
		// IPv6
		{"fd00::/8", "fd12::1", 4317, true},
		{"fd00::/8", "[fd12::1]", 4317, true},
		{"fd00::/8", "fe80::1", 4317, false},
		{"[fd00::/8]:4317", "fd12::1", 4317, true},
		{"[fd00::/8]:4317", "fd12::1", 4318, false},
		{"fd00::7", "FD00:0:0::7", 1, true},
		{"fd00::/8", "fd00::1%eth0", 1, false},
		{"*.west.svc", "fd00::1", 1, false},
	}
	for _, tt := range tests {
		p, err := Parse(tt.pattern)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tt.pattern, err)
		}
		if got := p.Matches(tt.host, tt.port); got != tt.want {
			t.Errorf("%q matches %s port %d = %v, want %v", tt.pattern, tt.host, tt.port, got, tt.want)
		}
	}
}

func TestCompile(t *testing.T) {
	l, err := Compile([]string{"*.west.svc", "bad host", "10.0.0.0/8", "*.WEST.svc.", "10.0.0.0/8:9411", "a:b"})
	if len(l) != 3 {
		t.Fatalf("good patterns = %v", l.Strings())
	}
	var fes []*FieldError
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var fe *FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("%v is not a FieldError", e)
		}
		fes = append(fes, fe)
	}
	if len(fes) != 3 || fes[0].Index != 1 || fes[1].Index != 3 || fes[2].Index != 5 {
		t.Fatalf("errors = %v", err)
	}
	if !strings.Contains(fes[1].Error(), "duplicate of [0]") {
		t.Fatalf("duplicate error = %v", fes[1])
	}
	if p, ok := l.Allows("jaeger.west.svc", 9411); !ok || p.Raw != "*.west.svc" {
		t.Fatalf("Allows = %v %v", p, ok)
	}
	if _, ok := l.Allows("jaeger.east.svc", 9411); ok {
		t.Fatal("east allowed")
	}
	if _, ok := List(nil).Allows("jaeger.west.svc", 9411); ok {
		t.Fatal("empty list allows")
	}
	if l, err := Compile(nil); err != nil || len(l) != 0 {
		t.Fatalf("Compile(nil) = %v, %v", l, err)
	}
}

// FuzzParse: no input panics; a parsed pattern reparses from its own text to
// the same pattern, and its error-free result is self-consistent.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"jaeger.west.svc", "*.west.svc:4317", "10.0.0.0/8:9411", "[fd00::/8]:4317",
		"fd00::7", "::ffff:10.0.0.0/104", "a:b", "[x]", "*.", "1.2.3.4/32"} {
		f.Add(s, "jaeger.west.svc", uint16(9411))
	}
	f.Fuzz(func(t *testing.T, pattern, host string, port uint16) {
		p, err := Parse(pattern)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		q, err := Parse(p.Raw)
		if err != nil || q != p {
			t.Fatalf("reparse of %q: %+v, %v (first %+v)", pattern, q, err, p)
		}
		if p.Port > 65535 {
			t.Fatalf("port %d", p.Port)
		}
		_ = p.Matches(host, uint32(port))
		switch p.Kind {
		case KindHost:
			if !p.Matches(p.Host, p.Port) {
				t.Fatalf("%q does not match its own host", pattern)
			}
		case KindSuffix:
			if !p.Matches("x."+p.Host, p.Port) {
				t.Fatalf("%q does not match x.%s", pattern, p.Host)
			}
			if p.Matches(p.Host, p.Port) {
				t.Fatalf("%q matches its bare domain", pattern)
			}
		case KindIP, KindCIDR:
			if !p.Matches(p.Prefix.Addr().String(), p.Port) {
				t.Fatalf("%q does not match its own address", pattern)
			}
		}
	})
}
