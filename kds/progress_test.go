package kds

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// A long snapshot is logged while it is applied and when it ends; a short
// one is not logged at all.
func TestSnapshotProgressLog(t *testing.T) {
	var buf bytes.Buffer
	log := hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Info})
	var p snapshotProgress
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for i := range 30 { // a batch of 1000 every second
		p.batch(log, 1000, false, t0.Add(time.Duration(i)*time.Second))
	}
	p.batch(log, 500, true, t0.Add(30*time.Second))
	out := buf.String()
	if n := strings.Count(out, "applying snapshot from global"); n != 5 {
		t.Errorf("%d progress lines in 30 s, want one per 5 s:\n%s", n, out)
	}
	for _, want := range []string{"resources=6000 batches=6 elapsed=5s", "resources=26000 batches=26 elapsed=25s",
		"snapshot from global applied: resources=30500 batches=31 took=30s"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	buf.Reset()
	p.batch(log, 10, false, t0.Add(time.Minute))
	p.batch(log, 10, true, t0.Add(time.Minute+time.Second))
	if buf.Len() != 0 {
		t.Errorf("a short snapshot was logged:\n%s", buf.String())
	}
}
