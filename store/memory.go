package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/meshtrace/meshtrace/resource"
)

// MemoryStore is an in-memory Store with etcd's revision semantics: one
// revision counter, every version kept until Compact, watches that replay
// history. It is meant for unit tests of other packages.
//
// Unlike EtcdStore a slow watcher never overflows: each watcher reads the
// shared history at its own pace, so memory grows until Compact is called.
type MemoryStore struct {
	ks       keyspace
	maxBytes int

	mu         sync.Mutex
	rev        int64
	compactRev int64
	keys       map[string][]memVersion // storage key -> versions, oldest first
	log        []memEvent              // every change with rev >= compactRev
	values     map[string][]byte
	changed    chan struct{} // closed and replaced on every write
	closed     bool
	done       chan struct{}
	corrupt    corruptSet
}

// Corrupt lists the stored values reads skip (see EtcdStore.Corrupt).
func (m *MemoryStore) Corrupt() []CorruptValue { return m.corrupt.list() }

// PutRaw stores value under k's storage key as it is, bypassing encoding
// and validation: tests use it to plant corrupt values. It returns the
// revision of the write.
func (m *MemoryStore) PutRaw(k resource.Key, value []byte) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	key := m.ks.resourceKey(k)
	m.rev++
	create := m.rev
	if v, ok := m.latest(key); ok {
		create = v.create
	}
	m.keys[key] = append(m.keys[key], memVersion{rev: m.rev, create: create, value: append([]byte(nil), value...)})
	m.log = append(m.log, memEvent{rev: m.rev, key: key, typ: EventPut, value: append([]byte(nil), value...)})
	close(m.changed)
	m.changed = make(chan struct{})
	return m.rev
}

type memVersion struct {
	rev, create int64
	value       []byte
	deleted     bool
}

type memEvent struct {
	rev     int64
	key     string
	typ     EventType
	value   []byte // put: the new value; delete: the last value
	prevRev int64  // delete: the revision of the last value
}

var _ Store = (*MemoryStore)(nil)

// NewMemory returns an empty in-memory store at revision 1, like a fresh etcd.
func NewMemory() *MemoryStore {
	return &MemoryStore{
		ks:       newKeyspace(""),
		maxBytes: DefaultMaxValueBytes,
		rev:      1,
		keys:     map[string][]memVersion{},
		values:   map[string][]byte{},
		changed:  make(chan struct{}),
		done:     make(chan struct{}),
	}
}

// SetMaxValueBytes changes the size cap (for tests); n <= 0 disables it.
func (m *MemoryStore) SetMaxValueBytes(n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.maxBytes = n
}

// Close ends every watch with ErrClosed; later calls fail with ErrClosed.
func (m *MemoryStore) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.closed {
		m.closed = true
		close(m.done)
	}
	return nil
}

// latest returns the live version of key, if any. Callers hold mu.
func (m *MemoryStore) latest(key string) (memVersion, bool) {
	vs := m.keys[key]
	if len(vs) == 0 || vs[len(vs)-1].deleted {
		return memVersion{}, false
	}
	return vs[len(vs)-1], true
}

// at returns the version of key live at revision rev. Callers hold mu.
func (m *MemoryStore) at(key string, rev int64) (memVersion, bool) {
	vs := m.keys[key]
	i := sort.Search(len(vs), func(i int) bool { return vs[i].rev > rev }) - 1
	if i < 0 || vs[i].deleted {
		return memVersion{}, false
	}
	return vs[i], true
}

// commit records one change at revision rev. Callers hold mu.
func (m *MemoryStore) commit(rev int64, key string, value []byte, del bool) {
	prev, existed := m.latest(key)
	if del {
		m.keys[key] = append(m.keys[key], memVersion{rev: rev, deleted: true})
		if strings.HasPrefix(key, m.ks.typePrefix("")) {
			m.log = append(m.log, memEvent{rev: rev, key: key, typ: EventDelete, value: prev.value, prevRev: prev.rev})
		}
		return
	}
	create := rev
	if existed {
		create = prev.create
	}
	m.keys[key] = append(m.keys[key], memVersion{rev: rev, create: create, value: value})
	if strings.HasPrefix(key, m.ks.typePrefix("")) {
		m.log = append(m.log, memEvent{rev: rev, key: key, typ: EventPut, value: value})
	}
}

// bump advances the revision and wakes watchers. Callers hold mu.
func (m *MemoryStore) bump() int64 {
	m.rev++
	close(m.changed)
	m.changed = make(chan struct{})
	return m.rev
}

func (m *MemoryStore) Get(ctx context.Context, key resource.Key) (*resource.Resource, int64, error) {
	if err := checkKey(key); err != nil {
		return nil, 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, 0, ErrClosed
	}
	v, ok := m.latest(m.ks.resourceKey(key))
	if !ok {
		return nil, m.rev, fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	r, err := decode(key, v.value, v.rev)
	if err != nil {
		m.corrupt.record(key, m.ks.resourceKey(key), v.rev, err)
		return nil, m.rev, &CorruptError{Key: key, Revision: v.rev, Err: err}
	}
	return r, m.rev, nil
}

func (m *MemoryStore) List(ctx context.Context, t resource.Type, opts ListOptions) (*ListResult, error) {
	if _, ok := resource.Lookup(t); !ok {
		return nil, fmt.Errorf("store: unknown resource type %q", t)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	rev := m.rev
	if opts.Revision > 0 {
		if opts.Revision < m.compactRev {
			return nil, &CompactedError{Requested: opts.Revision, CompactRevision: m.compactRev}
		}
		if opts.Revision > m.rev {
			return nil, fmt.Errorf("store: revision %d is in the future (current %d)", opts.Revision, m.rev)
		}
		rev = opts.Revision
	}
	prefix := m.ks.listPrefix(t, opts.Mesh)
	if opts.KeysOnly {
		var keys keyList
		for key := range m.keys {
			if !strings.HasPrefix(key, prefix) {
				continue
			}
			if v, ok := m.at(key, rev); ok {
				if k, ok := m.ks.parseKey(key); ok {
					keys.add(k, v.rev)
				}
			}
		}
		out, total := keys.page(opts)
		return &ListResult{Items: out, Total: total, Revision: rev}, nil
	}
	l := lazyList{bad: &m.corrupt}
	for key := range m.keys {
		if !strings.HasPrefix(key, prefix) {
			continue
		}
		v, ok := m.at(key, rev)
		if !ok {
			continue
		}
		k, ok := m.ks.parseKey(key)
		if !ok {
			continue
		}
		l.add(k, key, v.value, v.rev)
	}
	out, total := l.page(opts)
	return &ListResult{Items: out, Total: total, Revision: rev}, nil
}

func (m *MemoryStore) Put(ctx context.Context, r *resource.Resource, expectVersion int64) (int64, error) {
	if expectVersion < MustNotExist {
		return 0, fmt.Errorf("store: invalid expected version %d", expectVersion)
	}
	m.mu.Lock()
	maxBytes := m.maxBytes
	m.mu.Unlock()
	value, err := encode(r, maxBytes, nil)
	if err != nil {
		return 0, err
	}
	key := m.ks.resourceKey(r.Key())
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, ErrClosed
	}
	cur, exists := m.latest(key)
	switch {
	case expectVersion == MustNotExist && exists:
		return 0, fmt.Errorf("%w: %s", ErrAlreadyExists, r.Key())
	case expectVersion > 0 && !exists:
		return 0, fmt.Errorf("%w: %s", ErrNotFound, r.Key())
	case expectVersion > 0 && cur.rev != expectVersion:
		return 0, fmt.Errorf("%w: %s is at version %d, not %d", ErrConflict, r.Key(), cur.rev, expectVersion)
	}
	rev := m.bump()
	m.commit(rev, key, value, false)
	r.Version = rev
	return rev, nil
}

func (m *MemoryStore) Delete(ctx context.Context, key resource.Key, expectVersion int64) (int64, error) {
	if err := checkKey(key); err != nil {
		return 0, err
	}
	if expectVersion < 0 {
		return 0, fmt.Errorf("store: invalid expected version %d for delete", expectVersion)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, ErrClosed
	}
	skey := m.ks.resourceKey(key)
	cur, exists := m.latest(skey)
	if !exists {
		return 0, fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	if expectVersion > 0 && cur.rev != expectVersion {
		return 0, fmt.Errorf("%w: %s is at version %d, not %d", ErrConflict, key, cur.rev, expectVersion)
	}
	rev := m.bump()
	m.commit(rev, skey, nil, true)
	m.corrupt.clear(key)
	return rev, nil
}

func (m *MemoryStore) Txn(ctx context.Context, ops []Op) (int64, error) {
	m.mu.Lock()
	maxBytes := m.maxBytes
	m.mu.Unlock()
	prepared, err := prepareOps(m.ks, ops, maxBytes)
	if err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, ErrClosed
	}
	for _, chunk := range chunkOps(prepared, 0) {
		changes := false
		for _, p := range chunk {
			if _, ok := m.latest(p.key); ok || !p.op.Delete || p.op.ValueKey != "" {
				changes = true
			}
		}
		if !changes {
			continue
		}
		rev := m.bump()
		for _, p := range chunk {
			if p.op.ValueKey != "" {
				m.values[p.op.ValueKey] = append([]byte(nil), p.value...)
				continue
			}
			if p.op.Delete {
				if _, ok := m.latest(p.key); ok {
					m.commit(rev, p.key, nil, true)
				}
				continue
			}
			m.commit(rev, p.key, p.value, false)
			p.op.Resource.Version = rev
		}
	}
	return m.rev, nil
}

func (m *MemoryStore) Revision(ctx context.Context) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, ErrClosed
	}
	return m.rev, nil
}

func (m *MemoryStore) GetValue(ctx context.Context, key string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	v, ok := m.values[key]
	if !ok {
		return nil, fmt.Errorf("%w: value %q", ErrNotFound, key)
	}
	return append([]byte(nil), v...), nil
}

func (m *MemoryStore) CreateValue(ctx context.Context, key string, value []byte) ([]byte, error) {
	if key == "" {
		return nil, fmt.Errorf("store: empty value key")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	if v, ok := m.values[key]; ok {
		return append([]byte(nil), v...), nil
	}
	if m.maxBytes > 0 && len(value) > m.maxBytes {
		return nil, fmt.Errorf("%w: value %q is %d bytes, the cap is %d", ErrTooLarge, key, len(value), m.maxBytes)
	}
	m.values[key] = append([]byte(nil), value...)
	m.bump()
	return append([]byte(nil), value...), nil
}

func (m *MemoryStore) PutValue(ctx context.Context, key string, value []byte) (int64, error) {
	if key == "" {
		return 0, fmt.Errorf("store: empty value key")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, ErrClosed
	}
	if m.maxBytes > 0 && len(value) > m.maxBytes {
		return 0, fmt.Errorf("%w: value %q is %d bytes, the cap is %d", ErrTooLarge, key, len(value), m.maxBytes)
	}
	m.values[key] = append([]byte(nil), value...)
	return m.bump(), nil
}

// Compact drops history before rev, as etcd's compaction does: reads and
// watches from an earlier revision then fail with a *CompactedError.
func (m *MemoryStore) Compact(ctx context.Context, rev int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if rev <= m.compactRev {
		return &CompactedError{Requested: rev, CompactRevision: m.compactRev}
	}
	if rev > m.rev {
		return fmt.Errorf("store: compact revision %d is in the future (current %d)", rev, m.rev)
	}
	m.compactRev = rev
	for key, vs := range m.keys {
		i := sort.Search(len(vs), func(i int) bool { return vs[i].rev > rev }) - 1
		if i > 0 {
			vs = append([]memVersion(nil), vs[i:]...)
		}
		if len(vs) == 1 && vs[0].deleted {
			delete(m.keys, key)
			continue
		}
		m.keys[key] = vs
	}
	i := sort.Search(len(m.log), func(i int) bool { return m.log[i].rev >= rev })
	m.log = append([]memEvent(nil), m.log[i:]...)
	// Wake watchers so ones behind the compaction report it.
	close(m.changed)
	m.changed = make(chan struct{})
	return nil
}

// Watch replays history from FromRevision, then follows live changes.
func (m *MemoryStore) Watch(ctx context.Context, opts WatchOptions) (<-chan WatchResponse, error) {
	for _, t := range opts.Types {
		if _, ok := resource.Lookup(t); !ok {
			return nil, fmt.Errorf("store: unknown resource type %q", t)
		}
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, ErrClosed
	}
	next := opts.FromRevision
	if next <= 0 {
		next = m.rev + 1
	}
	m.mu.Unlock()
	ch := make(chan WatchResponse, 64)
	go m.follow(ctx, opts.Types, next, ch)
	return ch, nil
}

// follow feeds one watcher from the shared history, starting at revision next.
func (m *MemoryStore) follow(ctx context.Context, types []resource.Type, next int64, ch chan<- WatchResponse) {
	defer close(ch)
	send := func(resp WatchResponse) bool {
		select {
		case ch <- resp:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			send(WatchResponse{Err: ErrClosed})
			return
		}
		if next < m.compactRev {
			err := &CompactedError{Requested: next, CompactRevision: m.compactRev}
			m.mu.Unlock()
			send(WatchResponse{Err: err})
			return
		}
		i := sort.Search(len(m.log), func(i int) bool { return m.log[i].rev >= next })
		pending := m.log[i:len(m.log):len(m.log)]
		changed, cur := m.changed, m.rev
		m.mu.Unlock()

		for len(pending) > 0 {
			rev := pending[0].rev
			var resp WatchResponse
			resp.Revision = rev
			for len(pending) > 0 && pending[0].rev == rev {
				if ev, ok := m.event(pending[0], types); ok {
					resp.Events = append(resp.Events, ev)
				}
				pending = pending[1:]
			}
			if len(resp.Events) > 0 && !send(resp) {
				return
			}
		}
		if cur+1 > next {
			next = cur + 1
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		case <-m.done:
		}
	}
}

func (m *MemoryStore) event(e memEvent, types []resource.Type) (Event, bool) {
	k, ok := m.ks.parseKey(e.key)
	if !ok || !wantType(types, k.Type) {
		return Event{}, false
	}
	ev, err := makeEvent(k, e.key, e.typ, e.value, e.rev, e.prevRev, nil)
	switch {
	case err != nil:
		m.corrupt.record(k, e.key, e.rev, err)
	case e.typ == EventDelete || ev.Type == EventPut:
		m.corrupt.clear(k)
	}
	return ev, true
}

// makeEvent builds an Event from the value stored under k (the new value of
// a put, the last value of a delete). A delete whose last value is unknown
// or corrupt carries only the key. A put whose value is corrupt becomes a
// delete of the key marked Corrupt (reads treat the value as absent), and
// the decode error is returned for the caller to report. Values are
// decoded through shared when it is set (see decodedValues).
func makeEvent(k resource.Key, storageKey string, typ EventType, value []byte, rev, valueRev int64, shared *decodedValues) (Event, error) {
	ev := Event{Type: typ, Revision: rev}
	version := rev
	if typ == EventDelete {
		version = valueRev
	}
	var decodeErr error
	if len(value) > 0 {
		r, err := shared.decode(storageKey, k, value, version)
		if err == nil {
			ev.Resource = r
			return ev, nil
		}
		decodeErr = err
	}
	r, err := resource.New(k.Type, k.Mesh, k.Name)
	if err != nil {
		return Event{}, err
	}
	ev.Resource = r
	if typ == EventPut {
		ev.Type, ev.Corrupt = EventDelete, true
		return ev, decodeErr
	}
	return ev, nil
}

// preparedOp is one Txn operation with its storage key and encoded value.
type preparedOp struct {
	op    Op
	key   string
	value []byte
}

// prepareOps validates and encodes every op before anything is written.
func prepareOps(ks keyspace, ops []Op, maxBytes int) ([]preparedOp, error) {
	out := make([]preparedOp, 0, len(ops))
	for i, op := range ops {
		p := preparedOp{op: op}
		if op.ValueKey != "" {
			if maxBytes > 0 && len(op.Value) > maxBytes {
				return nil, fmt.Errorf("txn op %d: %w: value %q is %d bytes, the cap is %d", i, ErrTooLarge, op.ValueKey, len(op.Value), maxBytes)
			}
			p.key, p.value = ks.valueKey(op.ValueKey), op.Value
			out = append(out, p)
			continue
		}
		if op.Delete {
			if err := checkKey(op.Key); err != nil {
				return nil, fmt.Errorf("txn op %d: %w", i, err)
			}
			p.key = ks.resourceKey(op.Key)
		} else {
			v, err := encode(op.Resource, maxBytes, op.SpecJSON)
			if err != nil {
				return nil, fmt.Errorf("txn op %d: %w", i, err)
			}
			p.key, p.value = ks.resourceKey(op.Resource.Key()), v
		}
		out = append(out, p)
	}
	return out, nil
}

// chunkOps splits ops into transactions of at most MaxTxnOps operations, at
// most maxBytes of values (when > 0), and no key twice (etcd rejects that).
//
// The chunks are runs of ops itself, not copies, and the keys seen are
// counted in a map sized once: a zone writes every batch from global this
// way (~50 ops of ~170 bytes each in a burst), and growing both op by op
// was a tenth of what its Txn allocated.
func chunkOps(ops []preparedOp, maxBytes int) [][]preparedOp {
	var chunks [][]preparedOp
	seen := make(map[string]bool, min(len(ops), MaxTxnOps))
	start, size := 0, 0
	for i, p := range ops {
		sz := len(p.key) + len(p.value)
		if n := i - start; n == MaxTxnOps || seen[p.key] || (maxBytes > 0 && n > 0 && size+sz > maxBytes) {
			chunks = append(chunks, ops[start:i:i])
			start, size = i, 0
			clear(seen)
		}
		seen[p.key] = true
		size += sz
	}
	if start < len(ops) {
		chunks = append(chunks, ops[start:len(ops):len(ops)])
	}
	return chunks
}

// PutBatch writes rs in chunks as EtcdStore does; each chunk is applied under
// the lock at one revision, all of it or nothing.
func (m *MemoryStore) PutBatch(ctx context.Context, rs []*resource.Resource, opts BatchOptions) ([]BatchResult, error) {
	keys, err := batchKeys(m.ks, rs)
	if err != nil {
		return nil, err
	}
	results := make([]BatchResult, len(rs))
	inBatch := meshesWritten(rs)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	for i := 0; i < len(rs); {
		n := batchChunk(rs[i:], nil, 0, opts)
		chunk, res := rs[i:i+n], results[i:i+n]
		values := make([][]byte, n)
		written := meshesWritten(chunk)
		for j, r := range chunk {
			var cur *resource.Resource
			if v, ok := m.latest(keys[i+j]); ok {
				k, _ := m.ks.parseKey(keys[i+j])
				if cur, err = decode(k, v.value, v.rev); err != nil {
					if !errors.Is(err, ErrCorrupt) {
						return nil, err
					}
					// A corrupt value can be overwritten: it exists at its revision.
					m.corrupt.record(k, keys[i+j], v.rev, err)
					cur = corruptExisting(k, v.rev)
				}
			}
			if needsMesh(r, opts) && !(opts.DryRun && inBatch[r.Mesh]) && !written[r.Mesh] {
				if _, ok := m.latest(m.ks.resourceKey(resource.Key{Type: resource.TypeMesh, Name: r.Mesh})); !ok {
					res[j] = BatchResult{Created: cur == nil, Err: fmt.Errorf("%w: %q (needed by %s)", ErrNoMesh, r.Mesh, r.Key())}
					continue
				}
			}
			values[j] = prepareOne(r, cur, opts, opts.specJSON(i+j), m.maxBytes, &res[j])
		}
		if opts.DryRun {
			i += n
			continue
		}
		if ferr := firstErr(res); ferr != nil {
			abortChunk(res)
			markNotAttempted(results[i+n:])
			return results, ferr
		}
		rev := m.bump()
		for j, r := range chunk {
			m.commit(rev, keys[i+j], values[j], false)
			m.corrupt.clear(r.Key())
			r.Version = rev
			res[j].Revision = rev
		}
		i += n
		if opts.Progress != nil {
			opts.Progress(i)
		}
	}
	return results, firstErr(results)
}
