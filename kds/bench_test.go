package kds_test

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/kds"
	kdsv1 "github.com/meshtrace/meshtrace/proto/kds/v1"
	"github.com/meshtrace/meshtrace/store"
)

// applyWaiter lets a benchmark wait until every zone applied a revision.
type applyWaiter struct {
	mu      sync.Mutex
	applied map[string]int64
	changed chan struct{}
}

func newApplyWaiter() *applyWaiter {
	return &applyWaiter{applied: map[string]int64{}, changed: make(chan struct{}, 1)}
}

func (w *applyWaiter) hook(zone string) func(int64) {
	return func(rev int64) {
		w.mu.Lock()
		if rev > w.applied[zone] {
			w.applied[zone] = rev
		}
		w.mu.Unlock()
		select {
		case w.changed <- struct{}{}:
		default:
		}
	}
}

func (w *applyWaiter) wait(b *testing.B, zones int, rev int64) {
	deadline := time.After(30 * time.Second)
	for {
		w.mu.Lock()
		n := 0
		for _, r := range w.applied {
			if r >= rev {
				n++
			}
		}
		w.mu.Unlock()
		if n == zones {
			return
		}
		select {
		case <-w.changed:
		case <-deadline:
			b.Fatalf("revision %d not applied by %d zones", rev, zones)
		}
	}
}

// benchSetup runs an etcd-backed global with 1000 policies and n zones on
// in-memory stores, all synced.
func benchSetup(b *testing.B, zones int) (store.Store, *applyWaiter) {
	return benchSetupOn(b, openEtcd(b), zones)
}

func benchSetupOn(b *testing.B, gs store.Store, zones int) (store.Store, *applyWaiter) {
	e := newEnv(b)
	put(b, gs, mesh("default"))
	rev := putBurst(b, gs, "default", 1000, 0)
	g := e.startGlobal(gs, "", func(c *kds.ServerConfig) { c.Heartbeat = time.Second })
	w := newApplyWaiter()
	for i := range zones {
		name := fmt.Sprintf("zone-%d", i)
		e.startZone(name, newMemory(b), token(b, gs, name), []string{g.addr}, func(c *kds.ClientConfig) {
			c.OnApplied = w.hook(name)
			c.Heartbeat = time.Second
		})
	}
	w.wait(b, zones, rev)
	return gs, w
}

// Propagation latency: one policy Put on global until applied in every zone.
func BenchmarkPropagation(b *testing.B) {
	for _, zones := range []int{2, 10} {
		b.Run(fmt.Sprintf("zones=%d", zones), func(b *testing.B) {
			gs, w := benchSetup(b, zones)
			var lat []time.Duration
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				start := time.Now()
				rev := put(b, gs, meshTrace("default", fmt.Sprintf("p-%d", i%1000), 100+i))
				w.wait(b, zones, rev)
				lat = append(lat, time.Since(start))
			}
			reportLatency(b, lat)
		})
	}
}

// A burst of 1000 policy changes until applied in both zones, with global on
// embedded etcd, and on the memory store to show KDS's own share.
func BenchmarkBurst1000(b *testing.B) {
	b.Run("global=etcd", func(b *testing.B) { benchBurst(b, openEtcd(b)) })
	b.Run("global=memory", func(b *testing.B) { benchBurst(b, newMemory(b)) })
}

func benchBurst(b *testing.B, st store.Store) {
	gs, w := benchSetupOn(b, st, 2)
	var lat []time.Duration
	var write, cpu time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		cpu0 := cpuTime()
		start := time.Now()
		rev := putBurst(b, gs, "default", 1000, 1000*(i+1))
		write += time.Since(start)
		w.wait(b, 2, rev)
		lat = append(lat, time.Since(start))
		cpu += cpuTime() - cpu0
	}
	reportLatency(b, lat)
	// The part of the burst spent writing it to etcd.
	b.ReportMetric(float64(write)/float64(time.Millisecond)/float64(len(lat)), "ms-etcd-write")
	// CPU of the whole process (global, its store, both zones) per burst:
	// steadier than wall time on a shared machine.
	b.ReportMetric(float64(cpu)/float64(time.Millisecond)/float64(len(lat)), "cpu-ms")
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(lat[len(lat)/2]), "ms-median")
	b.ReportMetric(ms(lat[(len(lat)*99)/100]), "ms-p99")
}

// Heap of global per connected zone: zones are minimal raw streams that ACK
// every batch without keeping anything, so the growth is global's.
func BenchmarkGlobalMemoryPerZone(b *testing.B) {
	const zones = 20
	e := newEnv(b)
	gs := newMemory(b)
	put(b, gs, mesh("default"))
	putBurst(b, gs, "default", 1000, 0)
	g := e.startGlobal(gs, "", func(c *kds.ServerConfig) { c.Heartbeat = time.Second })
	// Warm up the shared paths (token key, store id) with one zone.
	ackAll(b, e, g.addr, token(b, gs, "warmup"))
	var perZone float64
	for b.Loop() {
		before := heap()
		var stops []context.CancelFunc
		for i := range zones {
			stops = append(stops, ackAll(b, e, g.addr, token(b, gs, fmt.Sprintf("z-%d", i))))
		}
		perZone = (float64(heap()) - float64(before)) / zones
		for _, s := range stops {
			s()
		}
	}
	b.ReportMetric(perZone/1024, "KiB/zone")
}

func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// ackAll connects a zone that ACKs every batch and keeps nothing; it returns
// once the snapshot is acknowledged.
func ackAll(b *testing.B, e *env, addr, tok string) context.CancelFunc {
	stream, stop := e.rawStream(b, addr, tok)
	if err := stream.Send(hello(0)); err != nil {
		b.Fatal(err)
	}
	synced := make(chan struct{})
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				return
			}
			if bt := m.GetBatch(); bt != nil {
				_ = stream.Send(&kdsv1.ZoneMessage{Msg: &kdsv1.ZoneMessage_Ack{Ack: &kdsv1.Ack{Nonce: bt.Nonce, Revision: bt.Revision}}})
				if bt.SnapshotEnd {
					close(synced)
				}
			}
		}
	}()
	select {
	case <-synced:
	case <-time.After(30 * time.Second):
		b.Fatal("snapshot not received")
	}
	return stop
}

// 100 zones on one global holding 30k policies in one mesh (global on
// embedded etcd): one policy change until every zone acknowledged it
// (p50/p99), global's heap per connected zone, and the etcd watches global
// runs (one, whatever the number of zones). Zones are raw streams that ACK
// every batch and keep nothing, so 100 fit in one process; the zone side is
// measured by BenchmarkPropagation.
func BenchmarkHundredZones(b *testing.B) {
	const zones, policies = 100, 30000
	e := newEnv(b)
	gs := openEtcd(b)
	put(b, gs, mesh("default"))
	putBurst(b, gs, "default", policies, 0)
	g := e.startGlobal(gs, "", func(c *kds.ServerConfig) { c.Heartbeat = time.Second })
	acked := make([]atomic.Int64, zones)
	ackAllRev(b, e, g.addr, token(b, gs, "warmup"), nil) // shared paths: token key, store id, wire cache
	before := heap()
	start := time.Now()
	for i := range zones {
		ackAllRev(b, e, g.addr, token(b, gs, fmt.Sprintf("z-%d", i)), &acked[i])
	}
	connect := time.Since(start)
	perZone := (float64(heap()) - float64(before)) / zones
	watches := gs.Watches()
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		rev := put(b, gs, meshTrace("default", fmt.Sprintf("p-%d", i%policies), 100000+i))
		deadline := time.Now().Add(30 * time.Second)
		for j := range acked {
			for acked[j].Load() < rev {
				if time.Now().After(deadline) {
					b.Fatalf("zone %d did not acknowledge revision %d", j, rev)
				}
				time.Sleep(100 * time.Microsecond)
			}
		}
		lat = append(lat, time.Since(start))
	}
	reportLatency(b, lat)
	b.ReportMetric(perZone/1024, "KiB/zone")
	b.ReportMetric(float64(watches), "etcd-watches")
	b.ReportMetric(connect.Seconds(), "s-connect-all")
}

// ackAllRev connects a raw zone that ACKs every batch, records the
// revisions it acknowledged in rev (when not nil) and keeps nothing; it
// returns once the snapshot is acknowledged.
func ackAllRev(b *testing.B, e *env, addr, tok string, rev *atomic.Int64) {
	stream, _ := e.rawStream(b, addr, tok)
	if err := stream.Send(&kdsv1.ZoneMessage{Msg: &kdsv1.ZoneMessage_Hello{Hello: &kdsv1.Hello{MaxMessageBytes: 1 << 20}}}); err != nil {
		b.Fatal(err)
	}
	synced := make(chan struct{})
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				return
			}
			bt := m.GetBatch()
			if bt == nil {
				continue
			}
			_ = stream.Send(&kdsv1.ZoneMessage{Msg: &kdsv1.ZoneMessage_Ack{Ack: &kdsv1.Ack{Nonce: bt.Nonce, Revision: bt.Revision}}})
			if rev != nil && bt.Revision > rev.Load() {
				rev.Store(bt.Revision)
			}
			if bt.SnapshotEnd {
				close(synced)
			}
		}
	}()
	select {
	case <-synced:
	case <-time.After(120 * time.Second):
		b.Fatal("snapshot not received")
	}
}

// BenchmarkDurableBurst: 1000 policies Put one by one by 8 writers on a
// global on durable embedded etcd, until applied by 2 zones on durable
// embedded etcds (the API burst's shape, without the API): CPU of the
// process per burst, and per zone the batches received and the sync cursor
// writes they cost.
func BenchmarkDurableBurst(b *testing.B) {
	durable := func() store.Store {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		s, err := store.OpenEmbedded(ctx, store.EmbeddedConfig{Dir: b.TempDir(), AutoCompactionRetention: "0"})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = s.Close() })
		return s
	}
	e := newEnv(b)
	gs := durable()
	put(b, gs, mesh("default"))
	rev := putBurst(b, gs, "default", 10, 0)
	g := e.startGlobal(gs, "", func(c *kds.ServerConfig) { c.Heartbeat = time.Second })
	w := newApplyWaiter()
	var zones []*zone
	for i := range 2 {
		name := fmt.Sprintf("zone-%d", i)
		zones = append(zones, e.startZone(name, durable(), token(b, gs, name), []string{g.addr}, func(c *kds.ClientConfig) {
			c.OnApplied = w.hook(name)
			c.Heartbeat = time.Second
		}))
	}
	w.wait(b, 2, rev)
	var lat []time.Duration
	var cpu time.Duration
	before := zones[0].client.Stats()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		cpu0 := cpuTime()
		start := time.Now()
		var last atomic.Int64
		var wg sync.WaitGroup
		for wr := range 8 {
			wg.Go(func() {
				for j := wr; j < 1000; j += 8 {
					r := put(b, gs, meshTrace("default", fmt.Sprintf("d-%d-%d", i, j), j))
					for {
						cur := last.Load()
						if r <= cur || last.CompareAndSwap(cur, r) {
							break
						}
					}
				}
			})
		}
		wg.Wait()
		w.wait(b, 2, last.Load())
		lat = append(lat, time.Since(start))
		cpu += cpuTime() - cpu0
	}
	b.StopTimer()
	reportLatency(b, lat)
	after := zones[0].client.Stats()
	n := float64(len(lat))
	b.ReportMetric(float64(cpu)/float64(time.Millisecond)/n, "cpu-ms")
	b.ReportMetric(float64(after.Batches-before.Batches)/n, "batches/zone")
	b.ReportMetric(float64(after.CursorWrites-before.CursorWrites)/n, "cursor-writes/zone")
}
