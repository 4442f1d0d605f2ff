package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/meshtrace/meshtrace/resource"
)

// PutBatch writes rs in etcd transactions of at most MaxTxnOps compares and
// operations. Each transaction compares, for every resource, the version it
// expects (from what this process last wrote or read, or "absent") and, with
// RequireMesh, that each Mesh exists; then puts. When a compare fails the
// transaction's Else branch returns the current values and the transaction is
// retried with them, so a write costs one round trip unless another writer
// got in between: no read before the write.
func (s *EtcdStore) PutBatch(ctx context.Context, rs []*resource.Resource, opts BatchOptions) ([]BatchResult, error) {
	defer s.observe("put_batch", time.Now())
	keys, err := batchKeys(s.ks, rs)
	if err != nil {
		return nil, err
	}
	results := make([]BatchResult, len(rs))
	inBatch := meshesWritten(rs)
	for i := 0; i < len(rs); {
		var n int
		if opts.DryRun {
			n, err = s.checkChunk(ctx, rs[i:], keys[i:], results[i:], inBatch, opts.from(i))
		} else {
			n, err = s.writeChunk(ctx, rs[i:], keys[i:], results[i:], opts.from(i))
		}
		if err != nil {
			// The store failed: nothing of this transaction is known written.
			for j := i; j < i+n; j++ {
				results[j] = BatchResult{Err: err}
			}
			markNotAttempted(results[i+n:])
			return results, err
		}
		if ferr := firstErr(results[i : i+n]); ferr != nil && !opts.DryRun {
			abortChunk(results[i : i+n])
			markNotAttempted(results[i+n:])
			return results, ferr
		}
		i += n
		if opts.Progress != nil && !opts.DryRun {
			opts.Progress(i)
		}
	}
	return results, firstErr(results)
}

// chunkMeshes lists the meshes a transaction over rs must check: those of
// mesh-scoped resources whose Mesh is not itself written in it.
func chunkMeshes(rs []*resource.Resource, opts BatchOptions) []string {
	written := meshesWritten(rs)
	var out []string
	seen := map[string]bool{}
	for _, r := range rs {
		if needsMesh(r, opts) && !written[r.Mesh] && !seen[r.Mesh] {
			seen[r.Mesh] = true
			out = append(out, r.Mesh)
		}
	}
	return out
}

// meshChecks keeps, by Mesh name, what a write checks of its Mesh: the
// compare that it exists and the count read of the Else branch. Every
// write into a mesh sends the same ones, and etcd's client only reads
// them, so they are built once instead of once per write (a storage key,
// a compare and an Op of several allocations each).
type meshChecks struct {
	mu sync.Mutex
	m  map[string]meshCheck
}

type meshCheck struct {
	key string
	cmp *pb.Compare
	get *pb.RequestOp
}

// maxMeshChecks bounds the cache (writes may name meshes that do not
// exist); past it the cache starts over.
const maxMeshChecks = 1024

func (c *meshChecks) get(ks keyspace, name string) meshCheck {
	c.mu.Lock()
	defer c.mu.Unlock()
	if mc, ok := c.m[name]; ok {
		return mc
	}
	key := ks.resourceKey(resource.Key{Type: resource.TypeMesh, Name: name})
	mc := meshCheck{key: key, cmp: meshExists([]byte(key)), get: meshCount([]byte(key))}
	if c.m == nil || len(c.m) >= maxMeshChecks {
		c.m = make(map[string]meshCheck)
	}
	c.m[name] = mc
	return mc
}

// writeChunk writes the first resources of rs in one transaction and returns
// how many it took. Per-resource failures are in results.
func (s *EtcdStore) writeChunk(ctx context.Context, rs []*resource.Resource, keys []string, results []BatchResult, opts BatchOptions) (int, error) {
	n := batchChunk(rs, nil, 0, opts)
	existing := make([]*resource.Resource, n)
	for i := range n {
		existing[i], _ = s.hints.get(keys[i])
	}
	values := make([][]byte, n)
	for attempt := 1; ; attempt++ {
		sizes := make([]int, n)
		for i := range n {
			values[i] = prepareOne(rs[i], existing[i], opts, opts.specJSON(i), s.maxBytes, &results[i])
			sizes[i] = len(keys[i]) + len(values[i])
		}
		if firstErr(results[:n]) != nil {
			return n, nil
		}
		if attempt == 1 {
			n = batchChunk(rs[:n], sizes, txnChunkBytes, opts)
		}
		meshes := chunkMeshes(rs[:n], opts)
		ops := newTxnOps(n)
		cmps := make([]*pb.Compare, 0, n+len(meshes))
		puts := make([]*pb.RequestOp, n)
		gets := make([]*pb.RequestOp, 0, n+len(meshes))
		for i := range n {
			key := []byte(keys[i])
			var version int64
			if existing[i] != nil {
				version = existing[i].Version
			}
			cmps = append(cmps, ops.compare(key, version))
			puts[i] = ops.put(key, values[i])
			gets = append(gets, ops.get(key))
		}
		// Before sending: the watch event may come before the answer.
		var ws []*written
		for i := range n {
			if w := s.decoded.written.add(keys[i], values[i], rs[i]); w != nil {
				ws = append(ws, w)
			}
		}
		meshKeys := make([]string, len(meshes))
		for j, m := range meshes {
			c := s.meshes.get(s.ks, m)
			meshKeys[j] = c.key
			cmps = append(cmps, c.cmp)
			gets = append(gets, c.get)
		}
		var resp *pb.TxnResponse
		var shared bool
		var err error
		if attempt == 1 {
			// First try: with whatever other writes are waiting now.
			bytes := 0
			for _, sz := range sizes[:n] {
				bytes += sz
			}
			r := s.commit(&groupMember{ctx: ctx, keys: keys[:n], bytes: bytes, cmps: cmps, puts: puts, gets: gets, meshes: meshKeys})
			resp, shared, err = r.resp, r.shared, r.err
		} else {
			resp, err = s.txn(ctx, &pb.TxnRequest{Compare: cmps, Success: puts, Failure: gets})
		}
		if err != nil {
			s.decoded.written.forget(ws...)
			return n, s.wrap(err, fmt.Sprintf("batch transaction of %d resources", n))
		}
		if resp.Succeeded {
			rev := resp.Header.Revision
			for i := range n {
				rs[i].Version = rev
				results[i].Revision = rev
				s.hints.set(keys[i], rs[i])
				s.corrupt.clear(rs[i].Key())
			}
			return n, nil
		}
		// Nothing was written: Prepare may change rs before a retry.
		s.decoded.written.forget(ws...)
		// Someone else wrote meanwhile (or a hint was stale): learn the
		// current state from the Else reads and try again.
		var conflict bool
		for i := range n {
			cur, err := s.fromRange(keys[i], resp.Responses[i])
			if err != nil {
				results[i].Err = err
				return n, nil
			}
			if !sameVersion(cur, existing[i]) {
				conflict = true
			}
			existing[i] = cur
		}
		missing := false
		for j, m := range meshes {
			if resp.Responses[n+j].GetResponseRange().GetCount() == 0 {
				missing = true
				for i := range n {
					if needsMesh(rs[i], opts) && rs[i].Mesh == m {
						results[i].Err = fmt.Errorf("%w: %q (needed by %s)", ErrNoMesh, m, rs[i].Key())
					}
				}
			}
		}
		if missing {
			return n, nil
		}
		if !conflict && shared {
			// Another write of the shared transaction failed its compare,
			// not this one: try again alone.
			continue
		}
		if !conflict || attempt == maxBatchAttempts {
			for i := range n {
				results[i].Err = fmt.Errorf("%w: %s kept changing while it was written", ErrConflict, rs[i].Key())
			}
			return n, nil
		}
	}
}

// checkChunk is writeChunk for a dry run: one read-only transaction reads the
// resources and their meshes, then every check runs against what it read.
func (s *EtcdStore) checkChunk(ctx context.Context, rs []*resource.Resource, keys []string, results []BatchResult, inBatch map[string]bool, opts BatchOptions) (int, error) {
	n := batchChunk(rs, nil, 0, opts)
	var meshes []string
	for _, m := range chunkMeshes(rs[:n], opts) {
		if !inBatch[m] {
			meshes = append(meshes, m)
		}
	}
	ops := newTxnOps(n)
	gets := make([]*pb.RequestOp, 0, n+len(meshes))
	for i := range n {
		gets = append(gets, ops.get([]byte(keys[i])))
	}
	for _, m := range meshes {
		gets = append(gets, s.meshes.get(s.ks, m).get)
	}
	resp, err := s.txn(ctx, &pb.TxnRequest{Success: gets})
	if err != nil {
		return n, s.wrap(err, fmt.Sprintf("batch read of %d resources", n))
	}
	missing := map[string]bool{}
	for j, m := range meshes {
		if resp.Responses[n+j].GetResponseRange().GetCount() == 0 {
			missing[m] = true
		}
	}
	for i := range n {
		cur, err := s.fromRange(keys[i], resp.Responses[i])
		if err != nil {
			results[i].Err = err
			continue
		}
		if missing[rs[i].Mesh] && needsMesh(rs[i], opts) {
			results[i] = BatchResult{Created: cur == nil, Err: fmt.Errorf("%w: %q (needed by %s)", ErrNoMesh, rs[i].Mesh, rs[i].Key())}
			continue
		}
		prepareOne(rs[i], cur, opts, opts.specJSON(i), s.maxBytes, &results[i])
	}
	return n, nil
}

// fromRange decodes the result of an OpGet of key and remembers it as a hint.
func (s *EtcdStore) fromRange(key string, op *pb.ResponseOp) (*resource.Resource, error) {
	kvs := op.GetResponseRange().GetKvs()
	if len(kvs) == 0 {
		s.hints.set(key, nil)
		return nil, nil
	}
	k, _ := s.ks.parseKey(key)
	r, err := decode(k, kvs[0].Value, kvs[0].ModRevision)
	if errors.Is(err, ErrCorrupt) {
		// A corrupt value can be overwritten: it exists at its revision, and
		// the write compares that revision like any other.
		s.corrupt.record(k, key, kvs[0].ModRevision, err)
		r, err = corruptExisting(k, kvs[0].ModRevision), nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w (key %s)", err, key)
	}
	s.hints.set(key, r)
	return r, nil
}

func sameVersion(a, b *resource.Resource) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Version == b.Version
}
