package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshtrace/meshtrace/resource"
)

// txnChunkBytes caps the values sent in one etcd transaction, below etcd's
// default 1.5 MiB request limit.
const txnChunkBytes = 1024 * 1024

// wrap turns an etcd error into a store error naming what was attempted.
func (s *EtcdStore) wrap(err error, what string) error {
	if s.isClosed() {
		return fmt.Errorf("%s: %w", what, ErrClosed)
	}
	return fmt.Errorf("store: %s: %w", what, err)
}

func (s *EtcdStore) Get(ctx context.Context, key resource.Key) (*resource.Resource, int64, error) {
	defer s.observe("get", time.Now())
	if err := checkKey(key); err != nil {
		return nil, 0, err
	}
	resp, err := s.client.Get(ctx, s.ks.resourceKey(key))
	if err != nil {
		return nil, 0, s.wrap(err, "get "+key.String())
	}
	if len(resp.Kvs) == 0 {
		return nil, resp.Header.Revision, fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	kv := resp.Kvs[0]
	r, err := decode(key, kv.Value, kv.ModRevision)
	if err != nil {
		s.corrupt.record(key, string(kv.Key), kv.ModRevision, err)
		return nil, resp.Header.Revision, &CorruptError{Key: key, Revision: kv.ModRevision, Err: err}
	}
	return r, resp.Header.Revision, nil
}

func (s *EtcdStore) List(ctx context.Context, t resource.Type, opts ListOptions) (*ListResult, error) {
	defer s.observe("list", time.Now())
	if _, ok := resource.Lookup(t); !ok {
		return nil, fmt.Errorf("store: unknown resource type %q", t)
	}
	getOpts := []clientv3.OpOption{clientv3.WithPrefix()}
	if opts.Revision > 0 {
		getOpts = append(getOpts, clientv3.WithRev(opts.Revision))
	}
	if opts.KeysOnly {
		getOpts = append(getOpts, clientv3.WithKeysOnly())
	}
	resp, err := s.client.Get(ctx, s.ks.listPrefix(t, opts.Mesh), getOpts...)
	if err != nil {
		if errors.Is(err, rpctypes.ErrCompacted) {
			return nil, &CompactedError{Requested: opts.Revision, CompactRevision: s.compactRevision(ctx, opts.Revision)}
		}
		return nil, s.wrap(err, "list "+string(t))
	}
	rev := resp.Header.Revision
	if opts.Revision > 0 {
		rev = opts.Revision
	}
	if opts.KeysOnly {
		var keys keyList
		for _, kv := range resp.Kvs {
			if k, ok := s.ks.parseKey(string(kv.Key)); ok {
				keys.add(k, kv.ModRevision)
			}
		}
		out, total := keys.page(opts)
		return &ListResult{Items: out, Total: total, Revision: rev}, nil
	}
	l := lazyList{bad: &s.corrupt}
	for _, kv := range resp.Kvs {
		k, ok := s.ks.parseKey(string(kv.Key))
		if !ok {
			continue
		}
		l.add(k, string(kv.Key), kv.Value, kv.ModRevision)
	}
	out, total := l.page(opts)
	return &ListResult{Items: out, Total: total, Revision: rev}, nil
}

// compactRevision asks etcd for its compact revision: a watch from a compacted
// revision answers with it. It returns 0 when etcd does not tell.
func (s *EtcdStore) compactRevision(ctx context.Context, rev int64) int64 {
	if !s.gate.enter() {
		return 0
	}
	defer s.gate.leave()
	wctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), 5*time.Second)
	defer cancel()
	for resp := range s.client.Watch(wctx, s.ks.prefix+"compact-probe", clientv3.WithRev(rev)) {
		if resp.CompactRevision > 0 {
			return resp.CompactRevision
		}
		if resp.Err() != nil {
			return 0
		}
	}
	return 0
}

func (s *EtcdStore) Put(ctx context.Context, r *resource.Resource, expectVersion int64) (int64, error) {
	defer s.observe("put", time.Now())
	if expectVersion < MustNotExist {
		return 0, fmt.Errorf("store: invalid expected version %d", expectVersion)
	}
	value, err := encode(r, s.maxBytes, nil)
	if err != nil {
		return 0, err
	}
	key := s.ks.resourceKey(r.Key())
	put := clientv3.OpPut(key, string(value))
	// Before sending: the watch event may come before the answer.
	w := s.decoded.written.add(key, value, r)
	var cmp clientv3.Cmp
	switch expectVersion {
	case AnyVersion:
		resp, err := s.client.Put(ctx, key, string(value))
		if err != nil {
			s.decoded.written.forget(w)
			return 0, s.wrap(err, "put "+r.Key().String())
		}
		r.Version = resp.Header.Revision
		s.hints.set(key, r)
		return resp.Header.Revision, nil
	case MustNotExist:
		cmp = clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
	default:
		cmp = clientv3.Compare(clientv3.ModRevision(key), "=", expectVersion)
	}
	resp, err := s.client.Txn(ctx).If(cmp).Then(put).Else(clientv3.OpGet(key, clientv3.WithKeysOnly())).Commit()
	if err != nil {
		s.decoded.written.forget(w)
		return 0, s.wrap(err, "put "+r.Key().String())
	}
	if !resp.Succeeded {
		s.decoded.written.forget(w)
		return 0, failedPrecondition(r.Key(), resp, expectVersion)
	}
	r.Version = resp.Header.Revision
	s.hints.set(key, r)
	return resp.Header.Revision, nil
}

// failedPrecondition explains a Txn whose comparison failed, from the Else Get.
func failedPrecondition(k resource.Key, resp *clientv3.TxnResponse, expectVersion int64) error {
	var cur int64
	if len(resp.Responses) == 1 {
		if kvs := resp.Responses[0].GetResponseRange().GetKvs(); len(kvs) == 1 {
			cur = kvs[0].ModRevision
		}
	}
	switch {
	case expectVersion == MustNotExist:
		return fmt.Errorf("%w: %s", ErrAlreadyExists, k)
	case cur == 0:
		return fmt.Errorf("%w: %s", ErrNotFound, k)
	default:
		return fmt.Errorf("%w: %s is at version %d, not %d", ErrConflict, k, cur, expectVersion)
	}
}

func (s *EtcdStore) Delete(ctx context.Context, key resource.Key, expectVersion int64) (int64, error) {
	defer s.observe("delete", time.Now())
	if err := checkKey(key); err != nil {
		return 0, err
	}
	if expectVersion < 0 {
		return 0, fmt.Errorf("store: invalid expected version %d for delete", expectVersion)
	}
	skey := s.ks.resourceKey(key)
	if expectVersion == AnyVersion {
		resp, err := s.client.Delete(ctx, skey)
		if err != nil {
			return 0, s.wrap(err, "delete "+key.String())
		}
		s.hints.set(skey, nil)
		s.corrupt.clear(key)
		if resp.Deleted == 0 {
			return 0, fmt.Errorf("%w: %s", ErrNotFound, key)
		}
		return resp.Header.Revision, nil
	}
	resp, err := s.client.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(skey), "=", expectVersion)).
		Then(clientv3.OpDelete(skey)).
		Else(clientv3.OpGet(skey, clientv3.WithKeysOnly())).Commit()
	if err != nil {
		return 0, s.wrap(err, "delete "+key.String())
	}
	if !resp.Succeeded {
		return 0, failedPrecondition(key, resp, expectVersion)
	}
	s.hints.set(skey, nil)
	s.corrupt.clear(key)
	return resp.Header.Revision, nil
}

func (s *EtcdStore) Txn(ctx context.Context, ops []Op) (int64, error) {
	defer s.observe("txn", time.Now())
	prepared, err := prepareOps(s.ks, ops, s.maxBytes)
	if err != nil {
		return 0, err
	}
	var rev int64
	for i, chunk := range chunkOps(prepared, txnChunkBytes) {
		ws := make([]*written, 0, len(chunk))
		for _, p := range chunk {
			if p.op.ValueKey == "" && !p.op.Delete {
				if w := s.decoded.written.addSpec(p.key, p.value, p.op.Resource, p.op.SpecJSON != nil); w != nil {
					ws = append(ws, w)
				}
			}
		}
		r, err := s.commitChunk(ctx, chunk)
		if err != nil {
			s.decoded.written.forget(ws...)
			return rev, s.wrap(err, fmt.Sprintf("txn chunk %d", i))
		}
		rev = r
		for _, p := range chunk {
			if !p.op.Delete && p.op.ValueKey == "" {
				p.op.Resource.Version = rev
			}
		}
	}
	if rev == 0 {
		return s.Revision(ctx)
	}
	return rev, nil
}

// commitChunk writes one chunk of Txn's ops (chunkOps: at most MaxTxnOps,
// no key twice) in one etcd transaction (see txn) and returns its revision.
func (s *EtcdStore) commitChunk(ctx context.Context, chunk []preparedOp) (int64, error) {
	req := &etcdserverpb.TxnRequest{Success: make([]*etcdserverpb.RequestOp, len(chunk))}
	for j, p := range chunk {
		if p.op.Delete && p.op.ValueKey == "" {
			req.Success[j] = &etcdserverpb.RequestOp{Request: &etcdserverpb.RequestOp_RequestDeleteRange{
				RequestDeleteRange: &etcdserverpb.DeleteRangeRequest{Key: []byte(p.key)}}}
		} else {
			req.Success[j] = &etcdserverpb.RequestOp{Request: &etcdserverpb.RequestOp_RequestPut{
				RequestPut: &etcdserverpb.PutRequest{Key: []byte(p.key), Value: p.value}}}
		}
	}
	resp, err := s.txn(ctx, req)
	if err != nil {
		return 0, err
	}
	return resp.Header.Revision, nil
}

func (s *EtcdStore) Revision(ctx context.Context) (int64, error) {
	defer s.observe("revision", time.Now())
	resp, err := s.client.Get(ctx, s.ks.prefix, clientv3.WithCountOnly())
	if err != nil {
		return 0, s.wrap(err, "revision")
	}
	return resp.Header.Revision, nil
}

func (s *EtcdStore) GetValue(ctx context.Context, key string) ([]byte, error) {
	defer s.observe("get_value", time.Now())
	resp, err := s.client.Get(ctx, s.ks.valueKey(key))
	if err != nil {
		return nil, s.wrap(err, "get value "+key)
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("%w: value %q", ErrNotFound, key)
	}
	return resp.Kvs[0].Value, nil
}

func (s *EtcdStore) PutValue(ctx context.Context, key string, value []byte) (int64, error) {
	defer s.observe("put_value", time.Now())
	if key == "" {
		return 0, errors.New("store: empty value key")
	}
	if len(value) > s.maxBytes {
		return 0, fmt.Errorf("%w: value %q is %d bytes, the cap is %d", ErrTooLarge, key, len(value), s.maxBytes)
	}
	resp, err := s.client.Put(ctx, s.ks.valueKey(key), string(value))
	if err != nil {
		return 0, s.wrap(err, "put value "+key)
	}
	return resp.Header.Revision, nil
}

func (s *EtcdStore) CreateValue(ctx context.Context, key string, value []byte) ([]byte, error) {
	defer s.observe("create_value", time.Now())
	if key == "" {
		return nil, errors.New("store: empty value key")
	}
	if len(value) > s.maxBytes {
		return nil, fmt.Errorf("%w: value %q is %d bytes, the cap is %d", ErrTooLarge, key, len(value), s.maxBytes)
	}
	k := s.ks.valueKey(key)
	resp, err := s.client.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, string(value))).
		Else(clientv3.OpGet(k)).
		Commit()
	if err != nil {
		return nil, s.wrap(err, "create value "+key)
	}
	if resp.Succeeded {
		return append([]byte(nil), value...), nil
	}
	kvs := resp.Responses[0].GetResponseRange().GetKvs()
	if len(kvs) == 0 {
		return nil, fmt.Errorf("store: create value %q: lost and gone again", key)
	}
	return kvs[0].Value, nil
}

// Compact discards history before rev (etcd compaction, waiting until it is
// physically applied). Reads and watches from earlier revisions then fail with
// a *CompactedError.
func (s *EtcdStore) Compact(ctx context.Context, rev int64) error {
	defer s.observe("compact", time.Now())
	_, err := s.client.Compact(ctx, rev, clientv3.WithCompactPhysical())
	if errors.Is(err, rpctypes.ErrCompacted) {
		return &CompactedError{Requested: rev, CompactRevision: s.compactRevision(ctx, rev)}
	}
	if err != nil {
		return s.wrap(err, fmt.Sprintf("compact at %d", rev))
	}
	return nil
}
