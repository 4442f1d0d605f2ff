package store

import (
	"errors"
	"fmt"
	"maps"
	"sync"

	"github.com/meshtrace/meshtrace/resource"
)

// Errors of PutBatch results.
var (
	// ErrNoMesh means a mesh-scoped resource names a Mesh that does not exist
	// (checked in the same transaction as the write).
	ErrNoMesh = errors.New("mesh does not exist")
	// ErrAborted marks a resource that was not written because another
	// resource of its transaction failed: a transaction lands whole or not at all.
	ErrAborted = errors.New("not written: another resource of its transaction failed")
	// ErrNotAttempted marks a resource after a failed transaction: PutBatch
	// stops at the first transaction that fails.
	ErrNotAttempted = errors.New("not attempted: an earlier transaction of the batch failed")
)

// BatchOptions tune PutBatch.
type BatchOptions struct {
	// RequireMesh makes every mesh-scoped resource need its Mesh to exist,
	// checked in the transaction that writes it (ErrNoMesh otherwise). A Mesh
	// written by the same batch counts as existing.
	RequireMesh bool
	// Prepare, when set, is called for each resource just before it is
	// encoded, with what the store holds under its key (nil when absent; the
	// existing resource may carry only its Meta, and must not be modified). It
	// may adjust r (creation time, labels) or refuse it with an error, which
	// becomes that resource's result and aborts its transaction. It can be
	// called more than once for one resource (when the store changed under
	// the batch the transaction is retried) and must not call the store.
	Prepare func(r, existing *resource.Resource) error
	// DryRun reads instead of writing: every check runs (mesh, Prepare, size)
	// and the results say what would be created or updated.
	DryRun bool
	// Progress, when set, is called after each transaction landed with the
	// number of resources written so far (not in a dry run).
	Progress func(written int)
	// SpecJSON, when set, holds for rs[i] the spec as json.Marshal writes it
	// (resource.MarshalSpec), or nil when the caller has not encoded it:
	// global encodes it to check a resource's size, and the store writes
	// those bytes instead of encoding the spec again. The caller (and
	// Prepare) must not change those specs after.
	SpecJSON [][]byte
}

// specJSON is SpecJSON[i] when set.
func (o BatchOptions) specJSON(i int) []byte {
	if i < len(o.SpecJSON) {
		return o.SpecJSON[i]
	}
	return nil
}

// from is o for the resources from the i-th on.
func (o BatchOptions) from(i int) BatchOptions {
	if len(o.SpecJSON) > 0 {
		o.SpecJSON = o.SpecJSON[min(i, len(o.SpecJSON)):]
	}
	return o
}

// BatchResult is the outcome of one resource of PutBatch.
type BatchResult struct {
	// Created is true when the resource did not exist before (or would not,
	// in a dry run).
	Created bool
	// Revision is the store revision of the transaction that wrote it; 0
	// when it was not written.
	Revision int64
	// Err is why the resource was not written: ErrNoMesh, ErrTooLarge,
	// ErrConflict, an error from Prepare, ErrAborted or ErrNotAttempted.
	Err error
}

// maxBatchAttempts bounds how often one transaction is retried when the store
// changed between the version PutBatch assumed and the write. Every failed
// attempt means another writer succeeded, so n writers racing on one key all
// land within n attempts.
const maxBatchAttempts = 20

// batchKeys checks every resource and returns the storage keys; a key twice
// is refused (one transaction cannot write a key twice, and the result would
// depend on the order).
func batchKeys(ks keyspace, rs []*resource.Resource) ([]string, error) {
	keys := make([]string, len(rs))
	seen := make(map[string]int, len(rs))
	for i, r := range rs {
		if r == nil {
			return nil, fmt.Errorf("store: batch item %d: nil resource", i)
		}
		if err := checkKey(r.Key()); err != nil {
			return nil, fmt.Errorf("store: batch item %d: %w", i, err)
		}
		k := ks.resourceKey(r.Key())
		if j, ok := seen[k]; ok {
			return nil, fmt.Errorf("store: batch items %d and %d are both %s", j, i, r.Key())
		}
		seen[k] = i
		keys[i] = k
	}
	return keys, nil
}

// needsMesh reports whether r must find its Mesh.
func needsMesh(r *resource.Resource, opts BatchOptions) bool {
	if !opts.RequireMesh || r.Mesh == "" {
		return false
	}
	d, ok := resource.Lookup(r.Type)
	return ok && d.Scope == resource.ScopeMesh
}

// batchChunk is how many of rs go into the next transaction: at most
// MaxTxnOps compares (one per resource plus one per mesh checked) and no more
// than maxBytes of encoded values when sizes are known (sizes[i] > 0).
func batchChunk(rs []*resource.Resource, sizes []int, maxBytes int, opts BatchOptions) int {
	meshes := map[string]bool{}
	bytes := 0
	for i, r := range rs {
		extra := 0
		if needsMesh(r, opts) && !meshes[r.Mesh] {
			extra = 1
		}
		if i+1+len(meshes)+extra > MaxTxnOps {
			return i
		}
		if i < len(sizes) && maxBytes > 0 && i > 0 && bytes+sizes[i] > maxBytes {
			return i
		}
		if extra == 1 {
			meshes[r.Mesh] = true
		}
		if i < len(sizes) {
			bytes += sizes[i]
		}
	}
	return len(rs)
}

// meshesWritten returns the names of the Meshes among rs.
func meshesWritten(rs []*resource.Resource) map[string]bool {
	out := map[string]bool{}
	for _, r := range rs {
		if r.Type == resource.TypeMesh {
			out[r.Name] = true
		}
	}
	return out
}

// firstErr returns the first per-resource error of results.
func firstErr(results []BatchResult) error {
	for i := range results {
		if results[i].Err != nil {
			return results[i].Err
		}
	}
	return nil
}

// abortChunk marks every resource of a failed transaction that has no error
// of its own as aborted.
func abortChunk(results []BatchResult) {
	for i := range results {
		if results[i].Err == nil {
			results[i].Err = ErrAborted
		}
		results[i].Revision = 0
	}
}

func markNotAttempted(results []BatchResult) {
	for i := range results {
		results[i] = BatchResult{Err: ErrNotAttempted}
	}
}

// prepareOne runs Prepare and encodes r (with specJSON, see
// BatchOptions.SpecJSON), recording a refusal in res.
func prepareOne(r, existing *resource.Resource, opts BatchOptions, specJSON []byte, maxBytes int, res *BatchResult) []byte {
	res.Created, res.Err, res.Revision = existing == nil, nil, 0
	if opts.Prepare != nil {
		if err := opts.Prepare(r, existing); err != nil {
			res.Err = err
			return nil
		}
	}
	v, err := encode(r, maxBytes, specJSON)
	if err != nil {
		res.Err = err
		return nil
	}
	return v
}

// hints remember the version and envelope of resources this process wrote or
// read, so a write can name the version it expects in its transaction without
// reading first. A stale hint only costs a retry: the transaction's compare
// fails and returns the current value.
//
// The map holds pointers: a Meta is over a hundred bytes, and every write of
// a new name adds one, so the map's growth moved them all (in a burst of
// creates, a fifth of writeChunk's CPU); it now moves pointers.
type hints struct {
	mu sync.Mutex
	m  map[string]*resource.Meta
}

// maxHints bounds the cache; past it the cache starts over.
const maxHints = 1 << 17

func (h *hints) get(key string) (*resource.Resource, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	m, ok := h.m[key]
	if !ok {
		return nil, false
	}
	return &resource.Resource{Meta: *m}, true
}

// set records what key holds now; nil forgets it.
func (h *hints) set(key string, r *resource.Resource) {
	if r == nil {
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(h.m, key)
		return
	}
	m := r.Meta
	m.Labels = maps.Clone(m.Labels)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil || len(h.m) >= maxHints {
		h.m = map[string]*resource.Meta{}
	}
	h.m[key] = &m
}
