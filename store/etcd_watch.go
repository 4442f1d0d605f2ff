package store

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshtrace/meshtrace/resource"
)

// Watching: a watch from "now" joins the hub of its prefix (every resource, or
// one type), so N subscribers cost one etcd watch. A watch from a revision gets
// a private hub with its own etcd watch from that revision: it must replay
// history the shared watch has already passed.
//
// A hub sends without blocking. Each subscriber channel has room for buffer
// responses plus one reserved slot, so a subscriber that falls buffer
// responses behind still receives its final ErrWatchOverflow and is closed,
// while the others go on.

type subscriber struct {
	ch     chan WatchResponse
	types  []resource.Type
	gone   chan struct{} // closed once ch is closed
	closed bool
}

type hub struct {
	s        *EtcdStore
	prefix   string
	shared   bool
	startRev int64
	// types, set on a private hub, are the only ones its subscriber takes:
	// the hub skips others before decoding them. (A shared hub's
	// subscribers come and go, so it takes every type of its prefix.)
	types   []resource.Type
	ctx     context.Context
	cancel  context.CancelFunc
	stopped chan struct{}

	mu    sync.Mutex // held for every send and close on subscriber channels
	subs  map[*subscriber]struct{}
	ended bool
}

func (s *EtcdStore) newHub(prefix string, startRev int64, shared bool) *hub {
	h := &hub{
		s: s, prefix: prefix, shared: shared, startRev: startRev,
		stopped: make(chan struct{}),
		subs:    map[*subscriber]struct{}{},
	}
	h.ctx, h.cancel = context.WithCancel(s.ctx)
	return h
}

func (h *hub) lock()   { h.mu.Lock() }
func (h *hub) unlock() { h.mu.Unlock() }

// add subscribes sub; false when the hub is ending and a new one is needed.
func (h *hub) add(sub *subscriber) bool {
	h.lock()
	defer h.unlock()
	if h.ended {
		return false
	}
	h.subs[sub] = struct{}{}
	return true
}

// finish sends err (if any, and if there is room) and closes sub. Callers hold the lock.
func (h *hub) finish(sub *subscriber, err error) {
	if sub.closed {
		return
	}
	if err != nil && len(sub.ch) < cap(sub.ch) {
		sub.ch <- WatchResponse{Err: err}
	}
	sub.closed = true
	close(sub.ch)
	close(sub.gone)
	delete(h.subs, sub)
}

// remove unsubscribes sub (its context ended); the last one out stops the hub.
func (h *hub) remove(sub *subscriber) {
	h.lock()
	h.finish(sub, nil)
	last := len(h.subs) == 0 && !h.ended
	if last {
		h.ended = true
	}
	h.unlock()
	if last {
		h.cancel()
		h.s.dropHub(h)
	}
}

// endAll closes every subscriber with err and marks the hub ended.
func (h *hub) endAll(err error) {
	h.lock()
	h.ended = true
	for sub := range h.subs {
		h.finish(sub, err)
	}
	h.unlock()
	h.cancel()
	h.s.dropHub(h)
}

func (h *hub) fanout(resp WatchResponse) {
	h.lock()
	for sub := range h.subs {
		out := resp
		if len(sub.types) > 1 {
			out.Events = nil
			for _, ev := range resp.Events {
				if wantType(sub.types, ev.Resource.Type) {
					out.Events = append(out.Events, ev)
				}
			}
			if len(out.Events) == 0 {
				continue
			}
		}
		if len(sub.ch) >= cap(sub.ch)-1 {
			h.s.log.Warn("watch subscriber overflow: dropping it", "prefix", h.prefix, "rev", resp.Revision)
			h.finish(sub, ErrWatchOverflow)
			continue
		}
		sub.ch <- out
	}
	// A hub whose last subscriber overflowed stops: its etcd watch must not
	// run on with no one to read it.
	last := len(h.subs) == 0 && !h.ended
	if last {
		h.ended = true
	}
	h.unlock()
	if last {
		h.cancel()
		h.s.dropHub(h)
	}
}

func (h *hub) wait() { <-h.stopped }

// run follows the etcd watch until it fails, the store closes or the last
// subscriber leaves.
func (h *hub) run() {
	defer close(h.stopped)
	// RequireLeader: a member cut off from its cluster ends the watch with an
	// error (subscribers re-watch) instead of going silent.
	wch := h.s.client.Watch(clientv3.WithRequireLeader(h.ctx), h.prefix,
		clientv3.WithPrefix(), clientv3.WithRev(h.startRev), clientv3.WithPrevKV())
	for wresp := range wch {
		if wresp.CompactRevision != 0 {
			h.endAll(&CompactedError{Requested: h.startRev, CompactRevision: wresp.CompactRevision})
			return
		}
		if err := wresp.Err(); err != nil {
			h.endAll(fmt.Errorf("store: watch %s: %w", h.prefix, err))
			return
		}
		if len(wresp.Events) == 0 {
			continue
		}
		resp := WatchResponse{Revision: wresp.Header.Revision, Events: make([]Event, 0, len(wresp.Events))}
		for _, ev := range wresp.Events {
			if e, ok := h.event(ev); ok && e.Resource != nil {
				resp.Events = append(resp.Events, e)
			}
		}
		if len(resp.Events) > 0 {
			h.fanout(resp)
		}
	}
	if h.s.isClosed() {
		h.endAll(ErrClosed)
		return
	}
	h.endAll(nil)
}

func (h *hub) event(ev *clientv3.Event) (Event, bool) {
	storageKey := string(ev.Kv.Key)
	k, ok := h.s.ks.parseKey(storageKey)
	if !ok || (h.types != nil && !wantType(h.types, k.Type)) {
		return Event{}, false
	}
	if ev.Type == mvccpb.DELETE {
		var value []byte
		var prevRev int64
		if ev.PrevKv != nil {
			value, prevRev = ev.PrevKv.Value, ev.PrevKv.ModRevision
		}
		h.s.corrupt.clear(k)
		e, err := makeEvent(k, storageKey, EventDelete, value, ev.Kv.ModRevision, prevRev, &h.s.decoded)
		return e, err == nil
	}
	e, err := makeEvent(k, storageKey, EventPut, ev.Kv.Value, ev.Kv.ModRevision, 0, &h.s.decoded)
	if err != nil {
		h.s.corrupt.record(k, storageKey, ev.Kv.ModRevision, err)
	} else {
		h.s.corrupt.clear(k)
	}
	return e, true
}

// decodedValues shares the decoding of watch event values among a store's
// hubs. Every hub has its own etcd watch (global follows its store for KDS
// and for the residency index, a zone for its proxies and for uploads), so
// each value arrives once per hub; it is decoded once, by the first hub to
// meet it, and the others take the same *resource.Resource. A value this
// store wrote itself is not decoded at all: the first hub takes the
// resource the write registered (see writtenValues). The resources
// of watch events are read-only for everyone (a hub already hands one value
// to all its subscribers).
//
// A value is named by its storage key and modification revision, which
// never name two different values. The last decodedValuesKept values are
// kept: hubs follow the same revisions within moments of each other, and a
// hub further behind than that decodes again for itself.
type decodedValues struct {
	mu   sync.Mutex
	m    map[valueID]*decodedValue
	ring []valueID // insertion order; the oldest goes first
	next int
	// decodes counts values decoded (for tests).
	decodes atomic.Int64
	// written holds what this store is writing: an event value that is
	// one of them is taken from there instead of decoded.
	written writtenValues
}

const decodedValuesKept = 4096

type valueID struct {
	key string
	rev int64
}

type decodedValue struct {
	once sync.Once
	r    *resource.Resource
	err  error
}

// decode returns the value b stored under storageKey (resource key k) at
// rev, decoded, decoding it only if no hub did yet. Errors are shared as
// well: a corrupt value is corrupt for every hub. A nil c just decodes.
func (c *decodedValues) decode(storageKey string, k resource.Key, b []byte, rev int64) (*resource.Resource, error) {
	if c == nil {
		return decode(k, b, rev)
	}
	id := valueID{key: storageKey, rev: rev}
	c.mu.Lock()
	d := c.m[id]
	if d == nil {
		if c.m == nil {
			c.m = make(map[valueID]*decodedValue, decodedValuesKept)
			c.ring = make([]valueID, decodedValuesKept)
		}
		if old := c.ring[c.next]; old.rev != 0 {
			delete(c.m, old)
		}
		d = &decodedValue{}
		c.m[id] = d
		c.ring[c.next] = id
		c.next = (c.next + 1) % decodedValuesKept
	}
	c.mu.Unlock()
	// Outside the lock: hubs decode different values at the same time, and
	// one that needs this value while it is decoded waits for it.
	d.once.Do(func() {
		if r := c.written.take(storageKey, b, rev); r != nil {
			d.r = r
			return
		}
		c.decodes.Add(1)
		d.r, d.err = decode(k, b, rev)
	})
	return d.r, d.err
}

// dropHub forgets a hub that has ended.
func (s *EtcdStore) dropHub(h *hub) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shared[h.prefix] == h {
		delete(s.shared, h.prefix)
	}
}

// Watch streams changes; see WatchOptions.
func (s *EtcdStore) Watch(ctx context.Context, opts WatchOptions) (<-chan WatchResponse, error) {
	for _, t := range opts.Types {
		if _, ok := resource.Lookup(t); !ok {
			return nil, fmt.Errorf("store: unknown resource type %q", t)
		}
	}
	prefix := s.ks.typePrefix("")
	if len(opts.Types) == 1 {
		prefix = s.ks.typePrefix(opts.Types[0])
	}
	sub := &subscriber{
		ch:    make(chan WatchResponse, s.buffer+1),
		types: opts.Types,
		gone:  make(chan struct{}),
	}

	var h *hub
	if opts.FromRevision > 0 {
		h = s.newHub(prefix, opts.FromRevision, false)
		h.types = opts.Types
		h.add(sub)
		if err := s.startHub(h); err != nil {
			return nil, err
		}
	} else {
		// Resolve "now" before joining, so a write that returned before Watch
		// was called is never delivered and one after it always is.
		now, err := s.Revision(ctx)
		if err != nil {
			return nil, err
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, ErrClosed
		}
		h = s.shared[prefix]
		if h == nil || !h.add(sub) {
			// No hub, or one ending because its last subscriber just left.
			h = s.newHub(prefix, now+1, true)
			h.add(sub)
			s.shared[prefix] = h
			s.all[h] = struct{}{}
			s.decoded.written.hubs.Add(1)
			go s.runHub(h)
		}
		s.mu.Unlock()
	}
	go func() {
		select {
		case <-ctx.Done():
			h.remove(sub)
		case <-sub.gone:
		}
	}()
	return sub.ch, nil
}

func (s *EtcdStore) startHub(h *hub) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.all[h] = struct{}{}
	s.decoded.written.hubs.Add(1)
	go s.runHub(h)
	return nil
}

func (s *EtcdStore) runHub(h *hub) {
	h.run()
	s.mu.Lock()
	delete(s.all, h)
	s.decoded.written.hubs.Add(-1)
	s.mu.Unlock()
}
