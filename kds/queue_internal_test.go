package kds

import (
	"fmt"
	"testing"
	"time"

	kdsv1 "github.com/meshtrace/meshtrace/proto/kds/v1"
	"github.com/meshtrace/meshtrace/resource"
)

func policy(name string, v int) *resource.Resource {
	return &resource.Resource{
		Meta: resource.Meta{Type: resource.TypeMeshTrace, Mesh: "default", Name: name},
		Spec: &resource.MeshTraceSpec{
			TargetRef: &resource.TargetRef{Kind: resource.KindMesh},
			Default:   &resource.MeshTraceConf{Sampling: &resource.Sampling{Overall: resource.Int(int64(v % 100))}},
		},
	}
}

// gapPusher is a pusher with the given gap over a new queue of its own.
func gapPusher(gap time.Duration) (*queue, *pusher) {
	q := newQueue(nil)
	p := newPusher(q, 1<<20, func(*entry, int, error) {})
	p.gap = gap
	return q, p
}

// traceKey is the key of MeshTrace name in mesh default.
func traceKey(name string) resource.Key {
	return resource.Key{Type: resource.TypeMeshTrace, Mesh: "default", Name: name}
}

// The queue keeps one entry per key however many changes arrive, and its
// cursor never claims a change that is still queued.
func TestQueueCoalesces(t *testing.T) {
	q := newQueue(nil)
	rev := int64(0)
	for round := range 100 {
		for k := range 50 {
			rev++
			q.push(&entry{key: resource.Key{Type: resource.TypeMeshTrace, Mesh: "default", Name: fmt.Sprint("p-", k)}, res: policy(fmt.Sprint("p-", k), round), rev: rev})
		}
	}
	if q.len() != 50 {
		t.Fatalf("want 50 coalesced entries, got %d", q.len())
	}
	// Delete replaces a pending put.
	rev++
	q.push(&entry{key: resource.Key{Type: resource.TypeMeshTrace, Mesh: "default", Name: "p-0"}, del: true, rev: rev})
	if q.len() != 50 {
		t.Fatalf("delete added an entry: %d", q.len())
	}
	q.observe(rev)
	one, _ := wireResource(&entry{key: resource.Key{Type: resource.TypeMeshTrace, Mesh: "default", Name: "p-1"}, res: policy("p-1", 1)}, nil)
	budget := wireSize(one) * 10
	var got int
	var lastCursor int64
	for q.len() > 0 {
		res, cursor := q.take(budget, func(*entry, int, error) { t.Fatal("oversize") })
		if len(res) == 0 || len(res) > 10 {
			t.Fatalf("batch of %d", len(res))
		}
		got += len(res)
		if q.len() > 0 {
			// Every still-queued key's change is above the cursor.
			for el := q.order.Front(); el != nil; el = el.Next() {
				if e := el.Value.(*entry); e.rev <= cursor {
					t.Fatalf("cursor %d covers queued %s@%d", cursor, e.key, e.rev)
				}
			}
		}
		if cursor < lastCursor {
			t.Fatalf("cursor went back: %d < %d", cursor, lastCursor)
		}
		lastCursor = cursor
	}
	if got != 50 || lastCursor != rev {
		t.Fatalf("took %d, final cursor %d (want 50, %d)", got, lastCursor, rev)
	}
}

func TestQueueDropsOversized(t *testing.T) {
	q := newQueue(nil)
	q.push(&entry{key: resource.Key{Type: resource.TypeMeshTrace, Mesh: "default", Name: "a"}, res: policy("a", 1), rev: 1})
	q.push(&entry{key: resource.Key{Type: resource.TypeMeshTrace, Mesh: "default", Name: "b"}, res: policy("b", 2), rev: 2})
	q.observe(2)
	var dropped []string
	res, cursor := q.take(10, func(e *entry, _ int, _ error) { dropped = append(dropped, e.key.Name) })
	if len(res) != 0 || len(dropped) != 2 || cursor != 2 || q.len() != 0 {
		t.Fatalf("res %d dropped %v cursor %d len %d", len(res), dropped, cursor, q.len())
	}
}

// One batch in flight at a time; a snapshot goes first and ends with its
// revision as the cursor.
func TestPusherSnapshotThenChanges(t *testing.T) {
	q := newQueue(nil)
	p := newPusher(q, 1<<20, func(*entry, int, error) {})
	p.startSnapshot([]*entry{{key: resource.Key{Type: resource.TypeMeshTrace, Mesh: "default", Name: "a"}, res: policy("a", 1), rev: 3}}, 10)
	q.push(&entry{key: resource.Key{Type: resource.TypeMeshTrace, Mesh: "default", Name: "b"}, res: policy("b", 1), rev: 11})
	q.observe(11)
	b := p.next(time.Now())
	if !b.Snapshot || !b.SnapshotEnd || b.Revision != 10 || len(b.Resources) != 1 {
		t.Fatalf("snapshot batch %+v", b)
	}
	if p.next(time.Now()) != nil {
		t.Fatal("second batch while one is in flight")
	}
	if p.ack(&kdsv1.Ack{Nonce: b.Nonce + 1}) != nil {
		t.Fatal("wrong nonce accepted")
	}
	if p.ack(&kdsv1.Ack{Nonce: b.Nonce}) == nil {
		t.Fatal("ack refused")
	}
	b = p.next(time.Now())
	if b.Snapshot || b.Revision != 11 || len(b.Resources) != 1 || b.Resources[0].Name != "b" {
		t.Fatalf("change batch %+v", b)
	}
	p.ack(&kdsv1.Ack{Nonce: b.Nonce})
	if p.next(time.Now()) != nil || p.busy() {
		t.Fatal("idle pusher sent")
	}
}

// With a gap, a change while nothing is pending goes out at once, and so
// does one arriving after the previous batch (of one change) was
// acknowledged with nothing pending. Changes that piled up while a batch was in flight wait, once it
// is acknowledged, until the gap has passed since it went out, and then go
// together. A snapshot is never held.
func TestPusherGapHoldsChangesBetweenBatches(t *testing.T) {
	q, p := gapPusher(20 * time.Millisecond)
	key := traceKey
	t0 := time.Unix(1000, 0)
	if !p.heldUntil().IsZero() {
		t.Fatal("a fresh pusher holds")
	}
	q.push(&entry{key: key("a"), res: policy("a", 1), rev: 1})
	q.observe(1)
	b := p.next(t0)
	if b == nil || len(b.Resources) != 1 {
		t.Fatalf("first change after a quiet spell: %+v, want it sent at once", b)
	}
	p.ack(&kdsv1.Ack{Nonce: b.Nonce})
	// Acknowledged with nothing pending: the next change is not held.
	q.push(&entry{key: key("b"), res: policy("b", 1), rev: 2})
	q.observe(2)
	t1 := t0.Add(time.Millisecond)
	if b = p.next(t1); b == nil || len(b.Resources) != 1 {
		t.Fatalf("change after an idle ack: %+v, want it sent at once", b)
	}
	// Two more pile up while it is in flight: held after its ack.
	q.push(&entry{key: key("c"), res: policy("c", 1), rev: 3})
	q.push(&entry{key: key("d"), res: policy("d", 1), rev: 4})
	q.observe(4)
	p.ack(&kdsv1.Ack{Nonce: b.Nonce})
	if got := p.heldUntil(); !got.Equal(t1.Add(p.gap)) {
		t.Fatalf("held until %v, want %v", got, t1.Add(p.gap))
	}
	if b := p.next(t1.Add(p.gap - time.Millisecond)); b != nil {
		t.Fatalf("sent %+v within the gap", b)
	}
	b = p.next(t1.Add(p.gap))
	if b == nil || len(b.Resources) != 2 || b.Revision != 4 {
		t.Fatalf("after the gap: %+v, want both changes up to revision 4", b)
	}
	q.push(&entry{key: key("e"), res: policy("e", 1), rev: 5})
	q.observe(5)
	p.ack(&kdsv1.Ack{Nonce: b.Nonce})

	p.startSnapshot([]*entry{{key: key("a"), res: policy("a", 1), rev: 1}}, 5)
	if !p.heldUntil().IsZero() {
		t.Fatal("a pending snapshot is held")
	}
	if b := p.next(t1.Add(p.gap + time.Millisecond)); b == nil || !b.Snapshot {
		t.Fatalf("snapshot right after a batch: %+v, want it sent", b)
	}
}

// With a gap, a change after a batch of several changes waits for the gap
// even when that batch was acknowledged with nothing pending (writers
// committing in groups); after a batch of one it leaves at once.
func TestPusherGapHoldsAfterABatchOfSeveral(t *testing.T) {
	q, p := gapPusher(20 * time.Millisecond)
	key := traceKey
	t0 := time.Unix(1000, 0)
	q.deliver([]*entry{{key: key("a"), res: policy("a", 1), rev: 1}, {key: key("b"), res: policy("b", 1), rev: 1}}, 1)
	b := p.next(t0)
	if b == nil || len(b.Resources) != 2 {
		t.Fatalf("first group: %+v, want both changes at once", b)
	}
	p.ack(&kdsv1.Ack{Nonce: b.Nonce})
	q.deliver([]*entry{{key: key("c"), res: policy("c", 1), rev: 2}}, 2)
	t1 := t0.Add(3 * time.Millisecond)
	if got := p.heldUntil(); !got.Equal(t0.Add(p.gap)) {
		t.Fatalf("held until %v, want %v", got, t0.Add(p.gap))
	}
	if b := p.next(t1); b != nil {
		t.Fatalf("sent %+v within the gap after a batch of two", b)
	}
	q.deliver([]*entry{{key: key("d"), res: policy("d", 1), rev: 3}}, 3)
	t2 := t0.Add(p.gap)
	if b = p.next(t2); b == nil || len(b.Resources) != 2 || b.Revision != 3 {
		t.Fatalf("after the gap: %+v, want c and d up to revision 3", b)
	}
	p.ack(&kdsv1.Ack{Nonce: b.Nonce})
	q.deliver([]*entry{{key: key("e"), res: policy("e", 1), rev: 4}}, 4)
	if b := p.next(t2.Add(time.Millisecond)); b != nil {
		t.Fatalf("one change after the gap's batch (of two): %+v, want it held", b)
	}
	t3 := t2.Add(p.gap)
	if b = p.next(t3); b == nil || len(b.Resources) != 1 {
		t.Fatalf("one change after the gap: %+v, want it sent", b)
	}
	p.ack(&kdsv1.Ack{Nonce: b.Nonce})
	q.deliver([]*entry{{key: key("f"), res: policy("f", 1), rev: 5}}, 5)
	if b = p.next(t3.Add(time.Millisecond)); b == nil || len(b.Resources) != 1 {
		t.Fatalf("change after a batch of one, acknowledged with nothing pending: %+v, want it sent at once", b)
	}
}

// With a gap, one change that arrived while a batch of one was in flight
// (a writer that waited for its previous change to show in the zone, which
// serves it before its Ack reaches global) is not held after the Ack.
func TestPusherGapDoesNotHoldOneChangeBehindABatchOfOne(t *testing.T) {
	q, p := gapPusher(20 * time.Millisecond)
	key := traceKey
	t0 := time.Unix(1000, 0)
	q.deliver([]*entry{{key: key("a"), res: policy("a", 1), rev: 1}}, 1)
	b := p.next(t0)
	if b == nil || len(b.Resources) != 1 {
		t.Fatalf("first change: %+v", b)
	}
	q.deliver([]*entry{{key: key("a"), res: policy("a", 2), rev: 2}}, 2)
	p.ack(&kdsv1.Ack{Nonce: b.Nonce})
	if b = p.next(t0.Add(2 * time.Millisecond)); b == nil || len(b.Resources) != 1 || b.Revision != 2 {
		t.Fatalf("the next change, pushed before the Ack: %+v, want it sent at once", b)
	}
}

// A resource version is encoded once for all streams; a delete drops it.
func TestWireCacheSharesEncodings(t *testing.T) {
	c := newWireCache()
	k := resource.Key{Type: resource.TypeMeshTrace, Mesh: "default", Name: "a"}
	a, err := c.encode(&entry{key: k, res: policy("a", 1), rev: 5})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := c.encode(&entry{key: k, res: policy("a", 1), rev: 5})
	if &a[0] != &b[0] {
		t.Fatal("same version encoded twice")
	}
	n, _ := c.encode(&entry{key: k, res: policy("a", 2), rev: 6})
	if string(n) == string(a) {
		t.Fatal("new version served from the cache")
	}
	c.forget(k, 7)
	if len(c.m) != 0 {
		t.Fatal("delete kept the entry")
	}
}

// Keys written in one transaction share a revision and reach the queue as
// several pushes. A batch taken between two of them must not claim that
// revision: the zone would save it and lose the rest if the stream is cut.
// The cursor moves only when the whole watch response was pushed.
func TestQueueCursorWaitsForResponseBoundary(t *testing.T) {
	q := newQueue(nil)
	q.observe(9)
	key := func(n string) resource.Key {
		return resource.Key{Type: resource.TypeMeshTrace, Mesh: "default", Name: n}
	}
	q.push(&entry{key: key("a"), res: policy("a", 1), rev: 10})
	res, cursor := q.take(1<<20, func(*entry, int, error) { t.Fatal("oversize") })
	if len(res) != 1 || cursor != 9 {
		t.Fatalf("mid-response: took %d, cursor %d; want 1 and 9 (revision 10 not complete)", len(res), cursor)
	}
	q.push(&entry{key: key("b"), res: policy("b", 1), rev: 10})
	q.observe(10)
	res, cursor = q.take(1<<20, func(*entry, int, error) { t.Fatal("oversize") })
	if len(res) != 1 || res[0].Name != "b" || cursor != 10 {
		t.Fatalf("after the response: took %v, cursor %d; want b and 10", res, cursor)
	}
}

// With a stretch, a held batch waits while changes keep coming (each within
// gap of the previous), at most stretch after the last batch, and goes gap
// after the stream's last change.
func TestPusherStretchWaitsForTheStreamToEnd(t *testing.T) {
	q, p := gapPusher(20 * time.Millisecond)
	p.stretch = 100 * time.Millisecond
	var clock time.Time
	q.now = func() time.Time { return clock }
	key := func(n int) resource.Key { return traceKey(fmt.Sprint("p-", n)) }
	t0 := time.Unix(1000, 0)
	rev := int64(0)
	change := func(at time.Time) {
		clock = at
		rev++
		q.deliver([]*entry{{key: key(int(rev)), res: policy("p", 1), rev: rev}, {key: key(int(rev) + 1000), res: policy("p", 1), rev: rev}}, rev)
	}
	change(t0)
	b := p.next(t0)
	if b == nil || len(b.Resources) != 2 {
		t.Fatalf("first group: %+v, want it sent at once", b)
	}
	p.ack(&kdsv1.Ack{Nonce: b.Nonce})
	// A group commit every 2 ms for 44 ms, then every 15 ms (a busy host)
	// until 74 ms: held past the gap.
	var stream []time.Duration
	for at := 2 * time.Millisecond; at <= 44*time.Millisecond; at += 2 * time.Millisecond {
		stream = append(stream, at)
	}
	stream = append(stream, 59*time.Millisecond, 74*time.Millisecond)
	for _, at := range stream {
		change(t0.Add(at))
		if b := p.next(t0.Add(at)); b != nil {
			t.Fatalf("sent %d changes %v after the last batch, while changes keep coming", len(b.Resources), at)
		}
	}
	end := t0.Add(74 * time.Millisecond)
	if got := p.heldUntil(); !got.Equal(end.Add(p.gap)) {
		t.Fatalf("held until %v after the stream's last change, want %v", got.Sub(end), p.gap)
	}
	if b := p.next(end.Add(p.gap - time.Millisecond)); b != nil {
		t.Fatalf("sent before the stream was quiet for %v", p.gap)
	}
	b = p.next(end.Add(p.gap))
	if b == nil || len(b.Resources) != 2*int(rev-1) || b.Revision != rev {
		t.Fatalf("after the stream: %d changes up to %d, want %d up to %d", len(b.GetResources()), b.GetRevision(), 2*(rev-1), rev)
	}
	p.ack(&kdsv1.Ack{Nonce: b.Nonce})

	// A stream that does not end, a change (of two resources) every 2 ms:
	// a batch every stretch.
	start := end.Add(p.gap)
	for at := 2 * time.Millisecond; at < 300*time.Millisecond; at += 2 * time.Millisecond {
		now := start.Add(at)
		change(now)
		if b := p.next(now); b != nil {
			if at%p.stretch != 0 {
				t.Fatalf("batch %v into an endless stream, want one every %v", at, p.stretch)
			}
			p.ack(&kdsv1.Ack{Nonce: b.Nonce})
		}
	}
	// Twice as fast: a batch as soon as a zone transaction's worth
	// (stretchFull) is pending.
	start = start.Add(300 * time.Millisecond)
	clock = start
	b = p.next(start)
	p.ack(&kdsv1.Ack{Nonce: b.Nonce})
	sent := 0
	for at := time.Millisecond; at < 300*time.Millisecond; at += time.Millisecond {
		now := start.Add(at)
		change(now)
		if b := p.next(now); b != nil {
			sent++
			if len(b.Resources) != stretchFull || at%(stretchFull/2*time.Millisecond) != 0 {
				t.Fatalf("batch of %d %v into a fast stream, want %d every %v", len(b.Resources), at, stretchFull, stretchFull/2*time.Millisecond)
			}
			p.ack(&kdsv1.Ack{Nonce: b.Nonce})
		}
	}
	if sent < 4 {
		t.Fatalf("%d batches in 300 ms of a fast stream, want one every %v", sent, stretchFull/2*time.Millisecond)
	}

	// At most the gap: as without a stretch.
	p.stretch = p.gap
	t4 := start.Add(time.Second)
	change(t4)
	b = p.next(t4)
	p.ack(&kdsv1.Ack{Nonce: b.Nonce})
	change(t4.Add(time.Millisecond))
	change(t4.Add(p.gap))
	if got := p.heldUntil(); !got.Equal(t4.Add(p.gap)) {
		t.Fatalf("stretch = gap: held until %v, want the gap", got.Sub(t4))
	}
}

// An entry of the feed is in every zone's queue: its message is made once,
// for all of them, without the cache. A stream's own entries (a snapshot,
// a catch-up) share encodings through the cache instead.
func TestWireResourceOfFeedEntries(t *testing.T) {
	for _, tc := range []struct {
		name   string
		e      *entry
		cached int // entries in the cache after two sends
	}{
		{name: "feed put", e: &entry{key: traceKey("a"), res: policy("a", 1), rev: 5, shared: true}},
		{name: "feed delete", e: &entry{key: traceKey("a"), del: true, rev: 6, shared: true}},
		{name: "snapshot put", e: &entry{key: traceKey("a"), res: policy("a", 1), rev: 5}, cached: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newWireCache()
			a, err := wireResource(tc.e, c)
			if err != nil {
				t.Fatal(err)
			}
			b, err := wireResource(tc.e, c)
			if err != nil {
				t.Fatal(err)
			}
			if (a == b) != tc.e.shared {
				t.Errorf("the second zone's message is the first's: %v, want %v", a == b, tc.e.shared)
			}
			if len(a.Json) > 0 && &a.Json[0] != &b.Json[0] {
				t.Error("encoded twice")
			}
			if a.Delete != tc.e.del || (len(a.Json) == 0) != tc.e.del || a.Revision != tc.e.rev || keyOf(a) != tc.e.key {
				t.Errorf("message %v for %+v", a, tc.e)
			}
			if len(c.m) != tc.cached {
				t.Errorf("%d entries cached, want %d", len(c.m), tc.cached)
			}
		})
	}
}
