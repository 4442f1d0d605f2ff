package kds_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/kds"
	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// cursorKey is where a zone keeps its sync cursor (kds.valueCursor).
const cursorKey = "kds/zone-cursor"

// txnWatch is a zone store that records, for every transaction with
// resource ops, whether the sync cursor was in it, and counts the cursor's
// writes on their own.
type txnWatch struct {
	store.Store
	mu          sync.Mutex
	withCursor  int
	without     int
	aloneWrites int
}

func (w *txnWatch) Txn(ctx context.Context, ops []store.Op) (int64, error) {
	resources, cursor := 0, false
	for _, op := range ops {
		if op.ValueKey == cursorKey {
			cursor = true
		} else if op.ValueKey == "" {
			resources++
		}
	}
	w.mu.Lock()
	if resources > 0 && cursor {
		w.withCursor++
	} else if resources > 0 {
		w.without++
	}
	w.mu.Unlock()
	return w.Store.Txn(ctx, ops)
}

func (w *txnWatch) PutValue(ctx context.Context, key string, value []byte) (int64, error) {
	if key == cursorKey {
		w.mu.Lock()
		w.aloneWrites++
		w.mu.Unlock()
	}
	return w.Store.PutValue(ctx, key, value)
}

// A batch of changes and the cursor it reaches land in one transaction of
// the zone's store: one commit (one fsync on etcd) per batch, not two. The
// cursor read back is the last batch's revision.
func TestBatchCursorRidesInTheBatchTransaction(t *testing.T) {
	e := newEnv(t)
	gs := newMemory(t)
	put(t, gs, mesh("default"))
	g := e.startGlobal(gs, "")
	zs := &txnWatch{Store: newMemory(t)}
	z := e.startZone("east", zs, token(t, gs, "east"), []string{g.addr})
	waitFor(t, "east to connect", 5*time.Second, z.client.Connected)
	settle(t, gs, z)
	// The first connect's snapshot writes its cursor after its deletes,
	// outside the transaction: count from here.
	zs.mu.Lock()
	withBefore, withoutBefore := zs.withCursor, zs.without
	zs.mu.Unlock()
	var rev int64
	for i := range 5 {
		rev = put(t, gs, meshTrace("default", fmt.Sprintf("p-%d", i), i))
		waitApplied(t, rev, 10*time.Second, z)
	}
	zs.mu.Lock()
	with, without := zs.withCursor-withBefore, zs.without-withoutBefore
	zs.mu.Unlock()
	if with < 5 || without != 0 {
		t.Fatalf("transactions with resources: %d with the cursor, %d without; want every one of the 5 batches with it", with, without)
	}
	b, err := zs.GetValue(context.Background(), cursorKey)
	if err != nil {
		t.Fatal(err)
	}
	var cur struct {
		Revision int64 `json:"revision"`
	}
	if err := json.Unmarshal(b, &cur); err != nil || cur.Revision < rev {
		t.Fatalf("stored cursor %s (%v), want revision %d or later", b, err, rev)
	}
}

// slowTxns is a zone store whose transactions take d, as a disk's fsync
// would.
type slowTxns struct {
	store.Store
	d time.Duration
}

func (s slowTxns) Txn(ctx context.Context, ops []store.Op) (int64, error) {
	time.Sleep(s.d)
	return s.Store.Txn(ctx, ops)
}

// With a batch gap, changes coming faster than the zone applies them go out
// together, at most one batch per gap (without it, one batch per zone
// commit), and every change arrives. (That a change after the zone caught up
// is not held: TestPusherGapHoldsChangesBetweenBatches.)
func TestBatchGapCoalescesAStreamOfChanges(t *testing.T) {
	for _, tc := range []struct{ gap, stretch time.Duration }{{0, 0}, {100 * time.Millisecond, 0}, {20 * time.Millisecond, time.Second}} {
		gap := tc.gap
		t.Run(fmt.Sprintf("gap=%s,stretch=%s", gap, tc.stretch), func(t *testing.T) {
			e := newEnv(t)
			gs := newMemory(t)
			put(t, gs, mesh("default"))
			g := e.startGlobal(gs, "", func(c *kds.ServerConfig) { c.BatchGap, c.BatchStretch = gap, tc.stretch })
			zs := newMemory(t)
			z := e.startZone("east", slowTxns{Store: zs, d: 5 * time.Millisecond}, token(t, gs, "east"), []string{g.addr})
			waitFor(t, "east to connect", 5*time.Second, z.client.Connected)
			settle(t, gs, z)

			before := z.client.Stats().Batches
			start := time.Now()
			var rev int64
			// One change a millisecond for 300 ms: five per zone commit.
			for i := 0; time.Since(start) < 300*time.Millisecond; i++ {
				rev = put(t, gs, meshTrace("default", fmt.Sprintf("p-%d", i), i))
				time.Sleep(time.Millisecond)
			}
			waitApplied(t, rev, 10*time.Second, z)
			elapsed := time.Since(start)
			sameContent(t, gs, zs, resource.TypeMeshTrace)
			batches := z.client.Stats().Batches - before
			t.Logf("changes over %s in %d batches", elapsed, batches)
			if gap == 0 {
				// The control: without a gap the zone gets a batch per commit.
				if batches < 20 {
					t.Fatalf("without a gap: %d batches in %s, want one per 5 ms commit", batches, elapsed)
				}
				return
			}
			if tc.stretch > elapsed {
				// At once, then (the stream never pausing for a gap) once
				// it ended: 2 batches (3 seen on this machine); one more
				// for every time a busy host stalls the writer for a gap,
				// tolerated up to one per 50 ms (a gap alone allows one
				// per 20 ms).
				if limit := 2 + int(elapsed/(50*time.Millisecond)); batches > limit {
					t.Fatalf("%d batches in %s, want at most %d with a %s stretch", batches, elapsed, limit, tc.stretch)
				}
				return
			}
			// At once, then at most one per gap (plus one that just missed).
			if limit := 2 + int(elapsed/gap); batches > limit {
				t.Fatalf("%d batches in %s, want at most %d with a %s gap", batches, elapsed, limit, gap)
			}
		})
	}
}
