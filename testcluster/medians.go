package testcluster

import (
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// Medians collects a benchmark's per-iteration figures and reports the
// median of each: on a shared two-core machine one slow iteration would
// otherwise be the figure whenever it happens to be the last.
type Medians struct {
	units  []string
	values map[string][]float64
}

// Add records one iteration's value of unit.
func (m *Medians) Add(unit string, v float64) {
	if m.values == nil {
		m.values = map[string][]float64{}
	}
	if _, ok := m.values[unit]; !ok {
		m.units = append(m.units, unit)
	}
	m.values[unit] = append(m.values[unit], v)
}

// Report reports the median of every unit recorded.
func (m *Medians) Report(b *testing.B) {
	for _, unit := range m.units {
		vs := slices.Clone(m.values[unit])
		slices.Sort(vs)
		med := vs[len(vs)/2]
		if len(vs)%2 == 0 {
			med = (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2
		}
		b.ReportMetric(med, unit)
	}
}

// WALFsyncs is the number of etcd WAL fsyncs this process has made so far,
// over all its embedded etcds (etcd counts them in the default registry).
func WALFsyncs() uint64 {
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		return 0
	}
	var n uint64
	for _, mf := range mfs {
		if mf.GetName() != "etcd_disk_wal_fsync_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			n += m.GetHistogram().GetSampleCount()
		}
	}
	return n
}
