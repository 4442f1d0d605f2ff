package kds

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// broadcaster is the one store watch of a server: it feeds the queue of
// every zone stream, so the number of etcd watches on global does not grow
// with zones, and each change is decoded once, not once per zone. It
// watches every resource type: changes of types not synced down (a
// Dataplane, a ZoneInsight) move the streams' cursors too, so a quiet zone's
// cursor keeps up with the store's revision.
//
// A stream subscribes before it reads what it sends first (a snapshot, or
// the changes since its cursor) at the broadcaster's position; changes after
// that position wait in a staging queue until the stream has caught up, so
// nothing is lost or sent out of order.
type broadcaster struct {
	st    store.Store
	log   hclog.Logger
	types map[resource.Type]bool
	cache *wireCache

	mu    sync.Mutex
	pos   int64 // every change up to pos has been delivered to subscribers
	subs  map[*subscription]struct{}
	ready chan struct{} // closed once the first watch runs
	once  sync.Once
	// rebaseCh asks run to start over from the store's current revision:
	// the feed's position is older than the compacted history, so no stream
	// can read at it.
	rebaseCh chan struct{}
}

var errRebase = errors.New("feed position compacted; starting over at the current revision")

// rebase makes the feed start over at the current revision (cutting every
// stream); for a stream that found the feed's position compacted.
func (b *broadcaster) rebase() {
	select {
	case b.rebaseCh <- struct{}{}:
	default:
	}
}

type subscription struct {
	b       *broadcaster
	q       *queue
	staging *queue // changes past the catch-up position; nil once caught up
	floor   int64  // changes up to floor are covered by the catch-up
	fail    func(error)
}

func newBroadcaster(st store.Store, types []resource.Type, cache *wireCache, log hclog.Logger) *broadcaster {
	b := &broadcaster{st: st, log: log, types: map[resource.Type]bool{}, cache: cache,
		subs: map[*subscription]struct{}{}, ready: make(chan struct{}), rebaseCh: make(chan struct{}, 1)}
	for _, t := range types {
		b.types[t] = true
	}
	return b
}

// run follows the store until ctx ends. A broken watch resumes from the
// last delivered revision; when that history is compacted, every stream is
// cut (its zone reconnects and resumes or takes a snapshot).
func (b *broadcaster) run(ctx context.Context) {
	from := int64(0)
	for ctx.Err() == nil {
		if from == 0 {
			rev, err := b.st.Revision(ctx)
			if err != nil {
				b.log.Warn("feed: cannot read the store revision", "error", err)
				sleepCtx(ctx, time.Second)
				continue
			}
			b.mu.Lock()
			b.pos = rev
			b.mu.Unlock()
			from = rev + 1
		}
		wch, err := b.st.Watch(ctx, store.WatchOptions{FromRevision: from})
		if err != nil {
			b.log.Warn("feed: cannot watch the store", "error", err)
			sleepCtx(ctx, time.Second)
			continue
		}
		b.once.Do(func() { close(b.ready) })
		err = b.follow(ctx, wch)
		if ctx.Err() != nil {
			return
		}
		b.log.Warn("feed: store watch ended; resuming", "error", err)
		if errors.Is(err, store.ErrCompacted) || errors.Is(err, errRebase) {
			b.failAll(fmt.Errorf("kds: feed: %w", err))
			from = 0
			continue
		}
		b.mu.Lock()
		from = b.pos + 1
		b.mu.Unlock()
		sleepCtx(ctx, 100*time.Millisecond)
	}
}

func (b *broadcaster) follow(ctx context.Context, wch <-chan store.WatchResponse) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-b.rebaseCh:
			return errRebase
		case resp, ok := <-wch:
			if !ok {
				return errors.New("watch closed")
			}
			if resp.Err != nil {
				return resp.Err
			}
			b.deliver(resp)
		}
	}
}

// deliver pushes one watch response into every subscriber's queue and moves
// their cursors to its revision (a response holds whole revisions).
func (b *broadcaster) deliver(resp store.WatchResponse) {
	var top int64
	var entries []*entry
	for _, ev := range resp.Events {
		top = max(top, ev.Revision)
		if ev.Resource == nil || !b.types[ev.Resource.Type] {
			continue
		}
		if (ev.Type == store.EventPut || ev.Resource.Labels != nil) && !sendDown(ev.Resource) {
			continue
		}
		e := &entry{key: ev.Resource.Key(), rev: ev.Revision, del: ev.Type == store.EventDelete, shared: true}
		if !e.del {
			e.res = ev.Resource
		} else {
			b.cache.forget(e.key, e.rev)
		}
		entries = append(entries, e)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if top <= b.pos {
		return
	}
	for sub := range b.subs {
		target := sub.q
		if sub.staging != nil {
			target = sub.staging
		}
		// Pushed and observed in one step (see queue.deliver).
		target.deliver(above(entries, sub.floor), top)
	}
	b.pos = top
}

// above returns the entries past floor: entries itself when all are (a
// response straddles a stream's catch-up position only rarely).
func above(entries []*entry, floor int64) []*entry {
	for i, e := range entries {
		if e.rev > floor {
			continue
		}
		out := slices.Clone(entries[:i])
		for _, e := range entries[i+1:] {
			if e.rev > floor {
				out = append(out, e)
			}
		}
		return out
	}
	return entries
}

// subscribe registers q and returns the position up to which the stream
// must catch up by itself (a snapshot or a diff read at that revision).
func (b *broadcaster) subscribe(ctx context.Context, q *queue, fail func(error)) (*subscription, int64, error) {
	select {
	case <-b.ready:
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
	sub := &subscription{b: b, q: q, staging: newQueue(nil), fail: fail}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.subs[sub] = struct{}{}
	return sub, b.pos, nil
}

// caughtUp says the stream's queue holds every change up to floor: staged
// changes move into it and later ones go there directly.
func (s *subscription) caughtUp(floor int64) {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	s.floor = floor
	st := s.staging
	s.staging = nil
	var staged []*entry
	st.mu.Lock()
	for el := st.order.Front(); el != nil; el = el.Next() {
		if e := el.Value.(*entry); e.rev > floor {
			staged = append(staged, e)
		}
	}
	observed := st.observed
	st.mu.Unlock()
	s.q.deliver(staged, max(observed, floor))
}

func (s *subscription) close() {
	s.b.mu.Lock()
	delete(s.b.subs, s)
	s.b.mu.Unlock()
}

func (b *broadcaster) failAll(err error) {
	b.mu.Lock()
	subs := b.subs
	b.subs = map[*subscription]struct{}{}
	b.mu.Unlock()
	for sub := range subs {
		sub.fail(err)
	}
}

// catchUp pushes into q the changes of types between revisions from and to
// (both readable): resources changed since from at their version, resources
// gone since from as deletes. It diffs two key listings instead of
// replaying history, reading values only of what changed.
func catchUp(ctx context.Context, st store.Store, types []resource.Type, from, to int64, q *queue, keep func(*resource.Resource) bool) (int, error) {
	n := 0
	for _, t := range orderTypes(types) {
		before, err := st.List(ctx, t, store.ListOptions{Revision: from, KeysOnly: true})
		if err != nil {
			return n, err
		}
		after, err := st.List(ctx, t, store.ListOptions{Revision: to, KeysOnly: true})
		if err != nil {
			return n, err
		}
		had := make(map[resource.Key]bool, len(before.Items))
		for _, r := range before.Items {
			had[r.Key()] = true
		}
		var changed []resource.Key
		for _, r := range after.Items {
			delete(had, r.Key())
			if r.Version > from {
				changed = append(changed, r.Key())
			}
		}
		for k := range had {
			q.push(&entry{key: k, del: true, rev: to})
			n++
		}
		if len(changed) == 0 {
			continue
		}
		if len(changed) > 64 {
			// Many changes: one read of the type at to.
			all, err := st.List(ctx, t, store.ListOptions{Revision: to})
			if err != nil {
				return n, err
			}
			want := make(map[resource.Key]bool, len(changed))
			for _, k := range changed {
				want[k] = true
			}
			for _, r := range all.Items {
				if want[r.Key()] {
					delete(want, r.Key())
					n += pushCurrent(q, r, keep)
				}
			}
			for k := range want { // listed by key but corrupt: absent
				q.push(&entry{key: k, del: true, rev: to})
				n++
			}
			continue
		}
		for _, k := range changed {
			r, _, err := st.Get(ctx, k)
			switch {
			case errors.Is(err, store.ErrNotFound):
				// Deleted after to: the feed delivers that delete.
			case errors.Is(err, store.ErrCorrupt):
				q.push(&entry{key: k, del: true, rev: to})
				n++
			case err != nil:
				return n, err
			default:
				n += pushCurrent(q, r, keep)
			}
		}
	}
	return n, nil
}

// pushCurrent queues r as read from the store; one keep refuses is queued
// as a delete (the peer must not hold it).
func pushCurrent(q *queue, r *resource.Resource, keep func(*resource.Resource) bool) int {
	if !keep(r) {
		q.push(&entry{key: r.Key(), del: true, rev: r.Version})
		return 1
	}
	q.push(&entry{key: r.Key(), res: r, rev: r.Version})
	return 1
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
