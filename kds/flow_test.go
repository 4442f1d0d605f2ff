package kds_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/meshtrace/meshtrace/kds"
	kdsv1 "github.com/meshtrace/meshtrace/proto/kds/v1"
	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// bigPolicy is a valid MeshTrace of roughly n KiB (literal custom tags).
func bigPolicy(m, name string, kib int) *resource.Resource {
	r := meshTrace(m, name, 1)
	var tags []resource.TraceTag
	for i := range kib {
		lit := strings.Repeat("v", 1000)
		tags = append(tags, resource.TraceTag{Name: fmt.Sprintf("t%d", i), Literal: &lit})
	}
	r.Spec.(*resource.MeshTraceSpec).Default.Tags = &tags
	return r
}

// appliedTimes records when a zone applied each revision.
type appliedTimes struct {
	mu sync.Mutex
	at map[int64]time.Time
}

func (a *appliedTimes) record(rev int64) {
	a.mu.Lock()
	if a.at == nil {
		a.at = map[int64]time.Time{}
	}
	a.at[rev] = time.Now()
	a.mu.Unlock()
}

// latency waits for rev and returns how long after start it was applied.
func (a *appliedTimes) latency(t testing.TB, z *zone, rev int64, start time.Time) time.Duration {
	t.Helper()
	waitApplied(t, rev, 10*time.Second, z)
	a.mu.Lock()
	defer a.mu.Unlock()
	var first time.Time
	for r, at := range a.at {
		if r >= rev && (first.IsZero() || at.Before(first)) {
			first = at
		}
	}
	return first.Sub(start)
}

// A zone that stops reading never delays another zone; its stream is cut
// once it stalls.
func TestSlowZoneDoesNotDelayOthers(t *testing.T) {
	e := newEnv(t)
	gs := newMemory(t)
	put(t, gs, mesh("default"))
	var ops []store.Op
	for i := range 200 {
		r := bigPolicy("default", fmt.Sprintf("big-%d", i), 4)
		ops = append(ops, store.Op{Key: r.Key(), Resource: r})
	}
	rev, err := gs.Txn(context.Background(), ops)
	if err != nil {
		t.Fatal(err)
	}
	// A long stall timeout: the slow zone stays connected (and stuck) while
	// the fast one is measured.
	g := e.startGlobal(gs, "", func(c *kds.ServerConfig) { c.StallIntervals = 40 })
	// The slow zone says hello and then never reads or acks.
	slow, _ := e.rawStream(t, g.addr, token(t, gs, "slow"))
	if err := slow.Send(hello(0)); err != nil {
		t.Fatal(err)
	}
	var times appliedTimes
	fast := e.startZone("fast", newMemory(t), token(t, gs, "fast"), []string{g.addr}, func(c *kds.ClientConfig) { c.OnApplied = times.record })
	waitApplied(t, rev, 10*time.Second, fast)

	var worst time.Duration
	for i := range 20 {
		start := time.Now()
		rev := put(t, gs, bigPolicy("default", fmt.Sprintf("big-%d", i), 4+i%2))
		if d := times.latency(t, fast, rev, start); d > worst {
			worst = d
		}
	}
	if !slices.Contains(g.srv.ConnectedZones(), "slow") {
		t.Fatal("the slow zone was cut before the measurement ended; nothing was shown")
	}
	if worst > time.Second {
		t.Fatalf("fast zone delayed: worst propagation %s", worst)
	}
	t.Logf("fast zone worst propagation with a stuck zone: %s", worst)
	waitFor(t, "the stalled stream to be cut", 15*time.Second, func() bool { return !slices.Contains(g.srv.ConnectedZones(), "slow") })
}

// Batches are cut to the message cap; a resource alone over the cap is
// reported (log, metric, NACK record) and skipped, not retried.
func TestMessageCapAndOversized(t *testing.T) {
	e := newEnv(t)
	gs := newMemory(t)
	put(t, gs, mesh("default"))
	putBurst(t, gs, "default", 300, 0)
	rev := put(t, gs, bigPolicy("default", "huge", 20))
	g := e.startGlobal(gs, "", func(c *kds.ServerConfig) { c.MaxMessageBytes = 16 << 10 })
	zs := newMemory(t)
	z := e.startZone("east", zs, token(t, gs, "east"), []string{g.addr})
	waitApplied(t, rev, 10*time.Second, z)
	got := list(t, zs, resource.TypeMeshTrace)
	if len(got) != 300 || got["MeshTrace/default/huge"] != nil {
		t.Fatalf("zone has %d policies (huge present: %v)", len(got), got["MeshTrace/default/huge"] != nil)
	}
	if s := z.client.Stats(); s.Batches < 5 {
		t.Fatalf("want the snapshot cut into many batches, got %+v", s)
	}
	if v := metricValue(t, g.reg, "meshtrace_kds_oversized_resources_total", "east"); v != 1 {
		t.Fatalf("oversized metric %v", v)
	}
	var found bool
	for _, n := range g.nackList() {
		found = found || (n.Name == "huge" && strings.Contains(n.Reason, "exceeds"))
	}
	if !found {
		t.Fatalf("no NACK record for the oversized policy: %+v", g.nackList())
	}
	// Shrunk, it is delivered.
	rev = put(t, gs, meshTrace("default", "huge", 1))
	waitApplied(t, rev, 10*time.Second, z)
	if list(t, zs, resource.TypeMeshTrace)["MeshTrace/default/huge"] == nil {
		t.Fatal("shrunk policy not delivered")
	}
}

// blackhole accepts KDS streams and never answers.
type blackhole struct{ kdsv1.UnimplementedKDSServer }

func (blackhole) Sync(stream kdsv1.KDS_SyncServer) error {
	<-stream.Context().Done()
	return nil
}

// A global that accepts the stream but never answers is given up after the
// stall timeout, and the client moves on to the next address.
func TestStalledGlobalIsRedialled(t *testing.T) {
	e := newEnv(t)
	creds, err := kds.ServerCredentials(e.certs.Cert, e.certs.Key)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bh := grpc.NewServer(grpc.Creds(creds))
	kdsv1.RegisterKDSServer(bh, blackhole{})
	go func() { _ = bh.Serve(lis) }()
	t.Cleanup(bh.Stop)

	gs := newMemory(t)
	rev := put(t, gs, mesh("default"))
	g := e.startGlobal(gs, "")
	start := time.Now()
	z := e.startZone("east", newMemory(t), token(t, gs, "east"), []string{lis.Addr().String(), "127.0.0.1:1", g.addr})
	waitApplied(t, rev, 10*time.Second, z)
	if d := time.Since(start); d < testHeartbeat*testStall {
		t.Fatalf("connected in %s: the blackhole was not tried first", d)
	}
}

// A global that stops reading (its stream stalls) is detected by the zone.
func TestLivenessHeartbeats(t *testing.T) {
	e := newEnv(t)
	gs := newMemory(t)
	g := e.startGlobal(gs, "")
	z := e.startZone("east", newMemory(t), token(t, gs, "east"), []string{g.addr})
	waitFor(t, "connect", 5*time.Second, z.client.Connected)
	// Idle streams stay up: heartbeats flow both ways. Positive marker:
	// global has sent more heartbeats than a stall takes.
	waitFor(t, "heartbeats past the stall timeout", 20*time.Second, func() bool {
		return metricValue(t, g.reg, "meshtrace_kds_messages_sent_total", "") > float64(testStall+10)
	})
	if !z.client.Connected() || z.client.Stats().Sessions != 1 {
		t.Fatalf("idle stream was cut: %+v", z.client.Stats())
	}
}

// Each side announces its message cap in the handshake and the other cuts
// its messages to the smaller one: a global allowing 10 MiB and a zone
// accepting 1 MiB sync 20 policies of ~400 KiB (8 MiB) without a single
// message the zone cannot take.
func TestMessageCapsAreNegotiated(t *testing.T) {
	e := newEnv(t)
	gs := newMemory(t)
	put(t, gs, mesh("default"))
	var rev int64
	for i := range 20 {
		rev = put(t, gs, bigPolicy("default", fmt.Sprintf("big-%d", i), 400))
	}
	g := e.startGlobal(gs, "", func(c *kds.ServerConfig) { c.MaxMessageBytes = 10 << 20 })
	zs := newMemory(t)
	z := e.startZone("east", zs, token(t, gs, "east"), []string{g.addr}, func(c *kds.ClientConfig) { c.MaxMessageBytes = 1 << 20 })
	waitApplied(t, rev, 20*time.Second, z)
	sameContent(t, gs, zs, resource.TypeMeshTrace)
	if s := z.client.Stats(); s.Sessions != 1 || s.Batches < 10 {
		t.Fatalf("want one session and the snapshot in >= 10 batches, got %+v", s)
	}
}

// welcomeThenFail sends a Welcome and ends every stream at once.
type welcomeThenFail struct {
	kdsv1.UnimplementedKDSServer
	mu    sync.Mutex
	times []time.Time
}

func (w *welcomeThenFail) Sync(stream kdsv1.KDS_SyncServer) error {
	w.mu.Lock()
	w.times = append(w.times, time.Now())
	w.mu.Unlock()
	if _, err := stream.Recv(); err != nil {
		return err
	}
	_ = stream.Send(&kdsv1.GlobalMessage{Msg: &kdsv1.GlobalMessage_Welcome{Welcome: &kdsv1.Welcome{StoreId: "x", HeartbeatIntervalMs: 100}}})
	return fmt.Errorf("boom")
}

// A stream that dies before its first apply does not reset the backoff: the
// zone backs off towards BackoffMax instead of hammering global every
// BackoffMin.
func TestBackoffGrowsWhenStreamsDieBeforeApplying(t *testing.T) {
	e := newEnv(t)
	creds, err := kds.ServerCredentials(e.certs.Cert, e.certs.Key)
	if err != nil {
		t.Fatal(err)
	}
	srv := &welcomeThenFail{}
	gsrv := grpc.NewServer(grpc.Creds(creds))
	kdsv1.RegisterKDSServer(gsrv, srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gsrv.Serve(lis) }()
	t.Cleanup(gsrv.Stop)
	e.startZone("east", newMemory(t), "tok", []string{lis.Addr().String()}, func(c *kds.ClientConfig) {
		c.BackoffMin, c.BackoffMax = 20*time.Millisecond, 400*time.Millisecond
	})
	waitFor(t, "7 attempts", 20*time.Second, func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		return len(srv.times) >= 7
	})
	srv.mu.Lock()
	defer srv.mu.Unlock()
	// After 5 failures the backoff is 400 ms: the wait is at least 200 ms.
	if gap := srv.times[6].Sub(srv.times[5]); gap < 150*time.Millisecond {
		t.Fatalf("the 6th redial came %s after the 5th: the backoff was reset", gap)
	}
}
