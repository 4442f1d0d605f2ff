package kds

import (
	"container/list"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	kdsv1 "github.com/meshtrace/meshtrace/proto/kds/v1"
	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// entry is the latest pending change of one resource.
type entry struct {
	key resource.Key
	del bool
	res *resource.Resource // nil for deletes
	rev int64
	// shared marks an entry of the broadcaster's feed, which hands one
	// entry to the queue of every zone: its message form is made once,
	// by the first zone to send it, and kept in wire for the others.
	shared bool
	wire   atomic.Pointer[kdsv1.Resource]
}

// queue holds the changes not yet sent to one peer, coalesced to the latest
// change per resource key: memory is bounded by the number of resources, not
// by the rate of changes. Keys are ordered by the revision of their latest
// change (a key changed again moves to the back), so the front always holds
// the lowest pending revision.
type queue struct {
	mu    sync.Mutex
	items map[resource.Key]*list.Element
	order list.List
	// observed is the revision up to which every change has been pushed. It
	// moves only at a watch-response boundary (observe), never on a push:
	// the changes of one transaction share a revision and arrive as several
	// pushes, and a cursor taken between two of them must not claim it.
	observed int64
	ready    chan struct{}
	cache    *wireCache // shared encodings; nil for none
	// lastPush is when the latest change was pushed (see pusher.stretch);
	// now is the clock, time.Now but in tests.
	lastPush time.Time
	now      func() time.Time
}

func newQueue(cache *wireCache) *queue {
	return &queue{items: map[resource.Key]*list.Element{}, ready: make(chan struct{}, 1), cache: cache, now: time.Now}
}

// push records a change; a pending change of the same key is replaced.
func (q *queue) push(e *entry) {
	if e.del {
		q.cache.forget(e.key, e.rev)
	}
	now := q.now()
	q.mu.Lock()
	q.pushLocked(e)
	q.lastPush = now
	q.mu.Unlock()
	q.signal()
}

// deliver records the changes of one watch response and that every change
// up to rev has been pushed, in one step: a take between a push and the
// observe would send the change with a cursor below its revision, and once
// the queue is empty nothing sends the cursor that covers it again (a zone's
// applied revision then stays behind until an unrelated change).
func (q *queue) deliver(entries []*entry, rev int64) {
	for _, e := range entries {
		if e.del {
			q.cache.forget(e.key, e.rev)
		}
	}
	now := q.now()
	q.mu.Lock()
	for _, e := range entries {
		q.pushLocked(e)
	}
	if len(entries) > 0 {
		q.lastPush = now
	}
	if rev > q.observed {
		q.observed = rev
	}
	q.mu.Unlock()
	q.signal()
}

func (q *queue) pushLocked(e *entry) {
	if el, ok := q.items[e.key]; ok {
		el.Value = e
		q.order.MoveToBack(el)
	} else {
		q.items[e.key] = q.order.PushBack(e)
	}
}

// observe records that every change up to rev has been pushed.
func (q *queue) observe(rev int64) {
	q.mu.Lock()
	if rev > q.observed {
		q.observed = rev
	}
	q.mu.Unlock()
	q.signal()
}

func (q *queue) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// idleCursor returns the observed revision when nothing is queued (every
// change up to it was taken), and false otherwise.
func (q *queue) idleCursor() (int64, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) > 0 {
		return 0, false
	}
	return q.observed, true
}

// pushedAt is when the latest change was pushed.
func (q *queue) pushedAt() time.Time {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.lastPush
}

// observedRevision is the highest revision pushed or observed.
func (q *queue) observedRevision() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.observed
}

// take removes changes from the front while they fit in budget bytes and
// returns them with the cursor the receiver may persist after applying them:
// every change up to the cursor has then been delivered. A change that alone
// exceeds the budget is dropped and passed to oversize.
func (q *queue) take(budget int, oversize func(e *entry, size int, err error)) ([]*kdsv1.Resource, int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []*kdsv1.Resource
	total := 0
	for el := q.order.Front(); el != nil; {
		e := el.Value.(*entry)
		w, err := wireResource(e, q.cache)
		size := 0
		if err == nil {
			size = wireSize(w)
		}
		if err != nil || size > budget {
			next := el.Next()
			q.order.Remove(el)
			delete(q.items, e.key)
			el = next
			oversize(e, size, err)
			continue
		}
		if total+size > budget && len(out) > 0 {
			break
		}
		total += size
		out = append(out, w)
		next := el.Next()
		q.order.Remove(el)
		delete(q.items, e.key)
		el = next
	}
	cursor := q.observed
	if front := q.order.Front(); front != nil {
		cursor = min(cursor, front.Value.(*entry).rev-1)
	}
	return out, cursor
}

// flight is a batch sent and not yet acknowledged.
type flight struct {
	nonce    uint64
	sent     time.Time
	cursor   int64
	snapshot bool
	end      bool // the last batch of a snapshot
	changes  int  // resources in the batch
	perType  map[resource.Type]int64
}

// pusher decides what to send next to one peer: first a pending snapshot,
// then the coalesced changes, one batch at a time (the next batch goes out
// when the previous one is acknowledged, so a slow peer accumulates coalesced
// state instead of messages).
//
// With a gap, changes that piled up (more than one) while a batch was in
// flight wait, once it is acknowledged, until gap has passed since it went
// out: a stream of changes faster than the peer's round trip goes out as
// fewer, larger batches, each one commit (and fsync) on the peer instead of
// one per few changes. So do changes following a batch of several: writers
// committing in groups (concurrent clients, a bulk apply) send changes in
// bursts with quiet moments between them, and a peer that acknowledges
// within such a moment would otherwise get one batch per group. A change after a batch
// of one change leaves at once when it is alone, whether it came while that
// batch was in flight or after (an operator's edit, one write after another
// each waited for: the next write may reach global before the zone's Ack
// does, as the zone serves what it committed before answering), and so does
// any change once gap has passed since the last batch.
//
// With a stretch longer than gap, a held batch also waits while changes keep
// coming: until gap has passed since the latest change as well, at most
// stretch after the last batch, and only while fewer than stretchFull
// changes are pending. A burst of writes then reaches a zone as a
// few large batches, each one commit, fsync and reconcile there, and on a
// shared host the zone's CPU stays with the writers; the end of the burst
// still leaves gap after its last change. (Counting the stream as ended
// after a fixed few milliseconds instead missed streams slowed by a busy
// host, whose group commits were further apart.)
type pusher struct {
	q        *queue
	budget   int
	oversize func(e *entry, size int, err error)
	gap      time.Duration
	stretch  time.Duration
	lastSent time.Time
	// backlog: more than one change was pending when the last batch was
	// acknowledged, or it carried more than one change.
	backlog bool

	snapshot    []*entry
	snapPending bool
	snapRev     int64

	nonce      uint64
	sentCursor int64
	inflight   *flight
}

func newPusher(q *queue, budget int, oversize func(e *entry, size int, err error)) *pusher {
	return &pusher{q: q, budget: budget, oversize: oversize}
}

// startSnapshot queues a full snapshot read at revision rev; it goes out
// before any change of the queue.
func (p *pusher) startSnapshot(items []*entry, rev int64) {
	p.snapshot, p.snapPending, p.snapRev = items, true, rev
}

// busy reports whether anything is pending or unacknowledged.
func (p *pusher) busy() bool {
	return p.inflight != nil || p.snapPending || p.q.len() > 0
}

// next returns the next batch to send, or nil when a batch is in flight or
// nothing is pending.
func (p *pusher) next(now time.Time) *kdsv1.Batch {
	if p.inflight != nil || now.Before(p.heldUntil()) { // the zero time: not held
		return nil
	}
	var b kdsv1.Batch
	if p.snapPending {
		b.Snapshot = true
		total := 0
		for len(p.snapshot) > 0 {
			e := p.snapshot[0]
			w, err := wireResource(e, p.q.cache)
			size := 0
			if err == nil {
				size = wireSize(w)
			}
			if err != nil || size > p.budget {
				p.snapshot = p.snapshot[1:]
				p.oversize(e, size, err)
				continue
			}
			if total+size > p.budget && len(b.Resources) > 0 {
				break
			}
			total += size
			b.Resources = append(b.Resources, w)
			p.snapshot = p.snapshot[1:]
		}
		if len(p.snapshot) == 0 {
			b.SnapshotEnd, b.Revision = true, p.snapRev
			p.snapPending, p.snapshot = false, nil
			if p.snapRev > p.sentCursor {
				p.sentCursor = p.snapRev
			}
		}
	} else {
		res, cursor := p.q.take(p.budget, p.oversize)
		if len(res) == 0 {
			// Nothing to send: the cursor travels in heartbeats instead
			// (a batch per unrelated store write would be a zone write too).
			return nil
		}
		b.Resources = res
		if cursor > p.sentCursor {
			b.Revision = cursor
			p.sentCursor = cursor
		}
	}
	p.nonce++
	b.Nonce = p.nonce
	p.lastSent = now
	f := &flight{nonce: b.Nonce, sent: now, cursor: b.Revision, snapshot: b.Snapshot, end: b.SnapshotEnd, changes: len(b.Resources), perType: map[resource.Type]int64{}}
	for _, r := range b.Resources {
		f.perType[resource.Type(r.Type)]++
	}
	p.inflight = f
	return &b
}

// heldUntil returns when the gap lets the next batch of changes go out, or
// the zero time when nothing waits for the gap (a snapshot never does).
func (p *pusher) heldUntil() time.Time {
	if p.gap <= 0 || p.snapPending || !p.backlog {
		return time.Time{}
	}
	until := p.lastSent.Add(p.gap)
	if p.stretch > p.gap && p.q.len() < stretchFull {
		if quiet := p.q.pushedAt().Add(p.gap); quiet.After(until) {
			until = minTime(quiet, p.lastSent.Add(p.stretch))
		}
	}
	return until
}

// stretchFull ends a stretch: a zone commits a batch in transactions of
// store.MaxTxnOps changes, so holding a full one longer saves the zone
// little, while the changes it holds back would reach it later and at once
// (a bulk apply's changes come fast enough to fill one every gap).
const stretchFull = store.MaxTxnOps

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// ack settles the batch in flight; it returns nil when a does not answer it.
func (p *pusher) ack(a *kdsv1.Ack) *flight {
	f := p.inflight
	if f == nil || a.GetNonce() != f.nonce {
		return nil
	}
	p.inflight = nil
	p.backlog = p.q.len() > 1 || !f.snapshot && f.changes > 1
	return f
}

// feed moves store changes into q until ctx ends. It never waits for the
// peer, so a slow peer cannot hold up the store's watchers. A watch error
// (compaction, overflow, closed store) fails the stream: the peer reconnects
// and resumes from what it applied, or gets a snapshot.
func feed(ctx context.Context, wch <-chan store.WatchResponse, q *queue, keep func(*resource.Resource) bool, fail func(error)) {
	for {
		select {
		case <-ctx.Done():
			return
		case resp, ok := <-wch:
			if !ok {
				fail(fmt.Errorf("kds: watch closed"))
				return
			}
			if resp.Err != nil {
				fail(fmt.Errorf("kds: watch: %w", resp.Err))
				return
			}
			// The cursor follows the events' own revisions, not the
			// response's: an etcd response header carries the store's
			// current revision, which may be ahead of events still to come.
			var seen int64
			var entries []*entry
			for _, ev := range resp.Events {
				seen = max(seen, ev.Revision)
				if ev.Resource == nil {
					continue
				}
				if (ev.Type == store.EventPut || ev.Resource.Labels != nil) && !keep(ev.Resource) {
					continue
				}
				e := &entry{key: ev.Resource.Key(), rev: ev.Revision, del: ev.Type == store.EventDelete}
				if !e.del {
					e.res = ev.Resource
				}
				entries = append(entries, e)
			}
			q.deliver(entries, seen)
		}
	}
}

// messageBudget is the room for resources in one message: the smaller of
// the two sides' caps (a peer that announced none is assumed to take the
// default), less room for the message's own fields.
func messageBudget(own int, peer int64) int {
	if peer <= 0 {
		peer = DefaultMaxMessageBytes
	}
	return min(own, int(peer)) - 4096
}

// MaxResourceBytes is the largest resource (Universal JSON) that fits in a
// message of maxMessageBytes with room to spare; global's API refuses
// bigger ones.
func MaxResourceBytes(maxMessageBytes int) int { return maxMessageBytes - 8192 }
