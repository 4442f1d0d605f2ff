package kds

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// serverMetrics are global's KDS metrics.
type serverMetrics struct {
	streams     prometheus.Gauge
	nacks       *prometheus.CounterVec
	lagRevs     *prometheus.GaugeVec
	lagSeconds  *prometheus.GaugeVec
	messages    *prometheus.CounterVec
	oversized   *prometheus.CounterVec
	uploadNACKs *prometheus.CounterVec
	held        *prometheus.GaugeVec
}

func newServerMetrics(reg prometheus.Registerer) (*serverMetrics, error) {
	m := &serverMetrics{
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshtrace_kds_streams", Help: "Zone streams open on this global replica.",
		}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshtrace_kds_nacks_total", Help: "Resources a zone rejected (including oversized ones and refused snapshot deletes).",
		}, []string{"zone"}),
		lagRevs: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshtrace_kds_sync_lag_revisions", Help: "Latest pending global revision minus the zone's acknowledged revision; 0 when in sync.",
		}, []string{"zone"}),
		lagSeconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshtrace_kds_sync_lag_seconds", Help: "Age of the oldest change not yet acknowledged by the zone; 0 when in sync.",
		}, []string{"zone"}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshtrace_kds_messages_sent_total", Help: "Messages sent to zones, by kind.",
		}, []string{"kind"}),
		oversized: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshtrace_kds_oversized_resources_total", Help: "Resources not sent because one alone exceeds the message size cap.",
		}, []string{"zone", "type"}),
		uploadNACKs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshtrace_kds_upload_rejections_total", Help: "Resources global rejected from a zone's uploads.",
		}, []string{"zone"}),
		held: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshtrace_kds_held_deletes", Help: "Snapshot deletes a zone holds because global looked like it lost its data (release with POST /zones/{name}/release-deletes); 0 when none.",
		}, []string{"zone"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	for _, step := range []func() error{
		func() error { m.held, err = register(reg, m.held); return err },
		func() error { m.streams, err = register(reg, m.streams); return err },
		func() error { m.nacks, err = register(reg, m.nacks); return err },
		func() error { m.lagRevs, err = register(reg, m.lagRevs); return err },
		func() error { m.lagSeconds, err = register(reg, m.lagSeconds); return err },
		func() error { m.messages, err = register(reg, m.messages); return err },
		func() error { m.oversized, err = register(reg, m.oversized); return err },
		func() error { m.uploadNACKs, err = register(reg, m.uploadNACKs); return err },
	} {
		if err := step(); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *serverMetrics) forget(zone string) {
	m.lagRevs.DeleteLabelValues(zone)
	m.lagSeconds.DeleteLabelValues(zone)
}

// clientMetrics are a zone's KDS metrics.
type clientMetrics struct {
	connected prometheus.Gauge
	applied   prometheus.Gauge
	nacks     prometheus.Counter
	refused   prometheus.Counter
	held      prometheus.Gauge
	oversized *prometheus.CounterVec
	dials     prometheus.Counter
}

func newClientMetrics(reg prometheus.Registerer) (*clientMetrics, error) {
	m := &clientMetrics{
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshtrace_kds_zone_connected", Help: "1 while the zone's stream to global is open.",
		}),
		applied: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshtrace_kds_zone_applied_revision", Help: "Global store revision the zone applied last.",
		}),
		nacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshtrace_kds_zone_nacks_total", Help: "Resources from global the zone rejected.",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshtrace_kds_zone_refused_snapshot_deletes_total", Help: "Snapshots whose deletes the zone held because global looked like it lost its data.",
		}),
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshtrace_kds_zone_held_deletes", Help: "Deletes of the last snapshot the zone holds (refuses until released); 0 when none.",
		}),
		oversized: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshtrace_kds_zone_oversized_resources_total", Help: "Zone resources not uploaded because one alone exceeds the message size cap.",
		}, []string{"type"}),
		dials: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshtrace_kds_zone_dials_total", Help: "Connection attempts to global.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	for _, step := range []func() error{
		func() error { m.connected, err = register(reg, m.connected); return err },
		func() error { m.applied, err = register(reg, m.applied); return err },
		func() error { m.nacks, err = register(reg, m.nacks); return err },
		func() error { m.refused, err = register(reg, m.refused); return err },
		func() error { m.held, err = register(reg, m.held); return err },
		func() error { m.oversized, err = register(reg, m.oversized); return err },
		func() error { m.dials, err = register(reg, m.dials); return err },
	} {
		if err := step(); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// register registers c, or returns the equal collector an earlier instance
// registered (a restarted server in the same process keeps its series).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}
