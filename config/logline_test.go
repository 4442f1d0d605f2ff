package config

import (
	"bytes"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

type auditor interface {
	Audit(msg, typ, mesh, name string, rev int64)
}

// auditRecord is one audit line's content.
type auditRecord struct {
	msg, typ, mesh, name string
	rev                  int64
}

// auditBytes is what Audit writes for rec, and what hclog writes for the
// same Info call, with the same options (level, format, name, With fields)
// and the clock stopped at now.
func auditBytes(t testing.TB, lc LogConfig, named []string, with []any, now time.Time, rec auditRecord) (audit, hc string) {
	t.Helper()
	clock := func() time.Time { return now }
	var got, want bytes.Buffer
	log := lc.logger("global", newLineWriter(&got), clock)
	ref := hclog.New(&hclog.LoggerOptions{Name: "global", Level: hclog.LevelFromString(lc.Level), JSONFormat: lc.JSON, Output: &want, TimeFn: clock})
	for _, n := range named {
		log, ref = log.Named(n), ref.Named(n)
	}
	if with != nil {
		log, ref = log.With(with...), ref.With(with...)
	}
	a, ok := log.(auditor)
	if !ok {
		t.Fatalf("%T has no Audit method", log)
	}
	a.Audit(rec.msg, rec.typ, rec.mesh, rec.name, rec.rev)
	ref.Info(rec.msg, "type", rec.typ, "mesh", rec.mesh, "name", rec.name, "rev", rec.rev)
	return got.String(), want.String()
}

// Audit writes exactly what hclog's Info writes for the same fields: names,
// zones, odd values that hclog quotes or splits over lines, levels that
// drop the line, JSON and With fields.
func TestAuditWritesWhatHclogWrites(t *testing.T) {
	at := time.Date(2026, 11, 30, 12, 40, 29, 123456789, time.UTC)
	created := auditRecord{"resource created", "MeshTrace", "default", "burst-1-123", 42}
	zones := []*time.Location{
		time.UTC, time.Local,
		time.FixedZone("IST", 5*3600+30*60),
		time.FixedZone("NST", -(3*3600 + 30*60)),
		time.FixedZone("odd", -30),      // under a minute west: +0000
		time.FixedZone("odd2", 3600+59), // seconds dropped
		time.FixedZone("far", -(12*3600 + 45*60)),
	}
	for _, tc := range []struct {
		name  string
		lc    LogConfig
		named []string
		with  []any
		at    time.Time
		rec   auditRecord
	}{
		{name: "created", lc: LogConfig{Level: "info"}, named: []string{"api"}, rec: created},
		{name: "updated, unnamed", lc: LogConfig{Level: "info"}, rec: auditRecord{"resource updated", "Mesh", "", "default", 1}},
		{name: "nested name", lc: LogConfig{Level: "debug"}, named: []string{"api", "x"}, rec: created},
		{name: "empty message", lc: LogConfig{Level: "info"}, named: []string{"api"}, rec: auditRecord{"", "MeshTrace", "m", "n", 0}},
		{name: "every field empty", lc: LogConfig{Level: "info"}, rec: auditRecord{"", "", "", "", -7}},
		{name: "negative and large revisions", lc: LogConfig{Level: "info"}, rec: auditRecord{"resource deleted", "MeshTrace", "m", "n", -9223372036854775808}},
		{name: "edge runes unquoted", lc: LogConfig{Level: "info"}, rec: auditRecord{"m", "-./09:;<=>?@AZ[\\]^_`az{|}~", "a=b", "x", 9223372036854775807}},
		{name: "space quoted", lc: LogConfig{Level: "info"}, rec: auditRecord{"m", "MeshTrace", "my mesh", "n", 1}},
		{name: "quote and comma", lc: LogConfig{Level: "info"}, rec: auditRecord{"m", "MeshTrace", "m", `a"b,c`, 1}},
		{name: "newline", lc: LogConfig{Level: "info"}, rec: auditRecord{"m", "MeshTrace", "m", "a\nb", 1}},
		{name: "tab and control", lc: LogConfig{Level: "info"}, rec: auditRecord{"m", "Mesh\tTrace", "m\x01", "n", 1}},
		{name: "non-ASCII", lc: LogConfig{Level: "info"}, rec: auditRecord{"m", "MeshTrace", "m", "café-\u2028-\xff", 1}},
		{name: "message with odd runes", lc: LogConfig{Level: "info"}, rec: auditRecord{"a \"b\"\n", "MeshTrace", "m", "n", 1}},
		{name: "warn level drops it", lc: LogConfig{Level: "warn"}, named: []string{"api"}, rec: created},
		{name: "error level drops it", lc: LogConfig{Level: "error"}, rec: created},
		{name: "trace level", lc: LogConfig{Level: "trace"}, rec: created},
		{name: "json", lc: LogConfig{Level: "info", JSON: true}, named: []string{"api"}, rec: created},
		{name: "json odd", lc: LogConfig{Level: "info", JSON: true}, rec: auditRecord{"m", "MeshTrace", "", "a\nb\"", 1}},
		{name: "with fields", lc: LogConfig{Level: "info"}, named: []string{"api"}, with: []any{"zone", "z1"}, rec: created},
		{name: "year 10000", lc: LogConfig{Level: "info"}, at: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), rec: created},
		{name: "year 0", lc: LogConfig{Level: "info"}, at: time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC), rec: created},
		{name: "year -1", lc: LogConfig{Level: "info"}, at: time.Date(-1, 12, 31, 23, 59, 59, 999999999, time.UTC), rec: created},
		{name: "last nanosecond of a year", lc: LogConfig{Level: "info"}, at: time.Date(1999, 12, 31, 23, 59, 59, 999999999, time.UTC), rec: created},
		{name: "year 9999 local", lc: LogConfig{Level: "info"}, at: time.Date(9999, 12, 31, 23, 59, 59, 0, time.FixedZone("x", -3600)), rec: created},
	} {
		times := []time.Time{tc.at}
		if tc.at.IsZero() {
			times = nil
			for _, z := range zones {
				times = append(times, at.In(z))
			}
		}
		for _, now := range times {
			got, want := auditBytes(t, tc.lc, tc.named, tc.with, now, tc.rec)
			if got != want {
				t.Errorf("%s at %v:\n got %q\nwant %q", tc.name, now, got, want)
			}
		}
	}
}

// FuzzAuditMatchesHclog: for any values (names come from request URLs)
// and any time, Audit writes what hclog writes.
func FuzzAuditMatchesHclog(f *testing.F) {
	f.Add("resource created", "MeshTrace", "default", "burst-1-123", int64(42), int64(1796042429123456789), 0)
	f.Add("", "", "", "", int64(0), int64(0), -30)
	f.Add("m", "a b", "\"", "\n", int64(-1), int64(-62135596800000000), 19800)
	f.Fuzz(func(t *testing.T, msg, typ, mesh, name string, rev, unixNano int64, offset int) {
		now := time.Unix(0, unixNano).In(time.FixedZone("z", offset%(48*3600)))
		got, want := auditBytes(t, LogConfig{Level: "info"}, []string{"api"}, nil, now, auditRecord{msg, typ, mesh, name, rev})
		if got != want {
			t.Fatalf("got %q\nwant %q", got, want)
		}
	})
}

// BenchmarkAudit: formatting and writing one audit line, through hclog's
// Info and through Audit (to a discarding writer, one goroutine).
func BenchmarkAudit(b *testing.B) {
	log := LogConfig{Level: "info"}.Logger("global", discard{}).Named("api")
	// Not constants, as the API's values are not: hclog boxes each.
	typ, mesh, name := string([]byte("MeshTrace")), string([]byte("default")), string([]byte("burst-1-123"))
	b.Run("hclog", func(b *testing.B) {
		b.ReportAllocs()
		var rev int64
		for b.Loop() {
			rev++
			log.Info("resource created", "type", typ, "mesh", mesh, "name", name, "rev", rev)
		}
	})
	b.Run("audit", func(b *testing.B) {
		b.ReportAllocs()
		a := log.(auditor)
		var rev int64
		for b.Loop() {
			rev++
			a.Audit("resource created", typ, mesh, name, rev)
		}
	})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
