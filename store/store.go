// Package store keeps resources: an interface every part of meshtrace uses, an
// etcd implementation (embedded or external) and an in-memory one for unit tests.
package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/meshtrace/meshtrace/resource"
)

// Sentinel errors; wrap with %w and test with errors.Is.
var (
	ErrNotFound      = errors.New("resource not found")
	ErrAlreadyExists = errors.New("resource already exists")
	// ErrConflict means the resource changed since the version the caller read.
	ErrConflict = errors.New("resource version conflict")
	ErrTooLarge = errors.New("resource too large")
	// ErrCompacted means a watch or history read asked for a revision etcd no
	// longer keeps; errors.As a *CompactedError for the compact revision.
	ErrCompacted = errors.New("revision compacted")
	// ErrWatchOverflow means a subscriber fell too far behind; re-watch from the
	// last revision it handled.
	ErrWatchOverflow = errors.New("watch subscriber overflow")
	ErrClosed        = errors.New("store closed")
)

// CompactedError tells the compact revision, so a caller can re-list.
type CompactedError struct {
	Requested       int64
	CompactRevision int64
}

func (e *CompactedError) Error() string {
	return fmt.Sprintf("revision %d compacted (compact revision %d): re-list and diff", e.Requested, e.CompactRevision)
}

func (e *CompactedError) Unwrap() error { return ErrCompacted }

// Version expectations for Put and Delete.
const (
	// AnyVersion writes unconditionally.
	AnyVersion int64 = 0
	// MustNotExist makes Put a create: ErrAlreadyExists if the key exists.
	MustNotExist int64 = -1
)

// ListOptions select and paginate a List.
type ListOptions struct {
	// Mesh restricts mesh-scoped types to one mesh; "" lists every mesh.
	Mesh string
	// Labels keeps only resources carrying every one of these label values.
	Labels map[string]string
	// Offset skips that many matching items (items are ordered by mesh, then name).
	Offset int
	// Limit caps the page size; 0 means no cap.
	Limit int
	// Revision reads at that store revision; 0 means the latest.
	Revision int64
	// KeysOnly returns items with only their key and Version (no labels,
	// times or spec; the Labels filter is not applied): cheap, for diffing.
	KeysOnly bool
}

// ListResult is one page.
type ListResult struct {
	Items []*resource.Resource
	// Total is the number of matching items across all pages.
	Total int
	// Revision is the store revision the list was read at.
	Revision int64
}

// EventType says what happened to a resource.
type EventType int

const (
	EventPut EventType = iota + 1
	EventDelete
)

func (t EventType) String() string {
	switch t {
	case EventPut:
		return "PUT"
	case EventDelete:
		return "DELETE"
	}
	return "UNKNOWN"
}

// Event is one change. For deletes Resource carries the key (and the last
// known value when the store still has it). Resource is shared with every
// other watcher of the store: read it, never change it.
type Event struct {
	Type     EventType
	Resource *resource.Resource
	// Revision is the store revision of the change.
	Revision int64
	// Corrupt marks a delete standing for a put of a corrupt value (see
	// ErrCorrupt): the key no longer holds a resource anyone can read.
	Corrupt bool
}

// WatchResponse is a batch of events from one store revision range, or an error
// after which the channel closes (ErrCompacted, ErrWatchOverflow, ErrClosed).
type WatchResponse struct {
	Events   []Event
	Revision int64
	Err      error
}

// WatchOptions say what to watch and from where.
type WatchOptions struct {
	// Types to watch; empty means every type.
	Types []resource.Type
	// FromRevision delivers every change with revision >= FromRevision; 0 means
	// changes after now.
	FromRevision int64
}

// Op is one operation of a Txn.
type Op struct {
	// Delete removes Key; otherwise Resource is put unconditionally.
	Delete   bool
	Key      resource.Key
	Resource *resource.Resource
	// ValueKey, when set, makes the op a put of Value under that key of
	// GetValue and PutValue (stored as PutValue stores it, subject to the
	// same size cap) instead of a resource op: small control-plane state
	// (a sync cursor) then lands in the same transaction as the resources
	// it describes. Delete, Key and Resource are ignored.
	ValueKey string
	Value    []byte
	// SpecJSON, when set on a put, is Resource's spec exactly as
	// json.Marshal writes it, and decodes back to Resource.Spec
	// (reflect.DeepEqual): the store writes these bytes as the stored
	// spec instead of encoding the spec again. A zone has them from what
	// it received from global (kds's decodeCompact vouches for both).
	SpecJSON []byte
}

// Store is what every component needs of storage. Implementations must pass
// storetest.Run.
type Store interface {
	// Get returns the resource with Meta.Version set, and the store revision read at.
	Get(ctx context.Context, key resource.Key) (*resource.Resource, int64, error)
	// List returns one page of resources of type t.
	List(ctx context.Context, t resource.Type, opts ListOptions) (*ListResult, error)
	// Put creates or updates r. expectVersion is AnyVersion, MustNotExist or the
	// Meta.Version the caller read (ErrConflict when it changed, ErrNotFound when
	// gone). It returns the store revision of the write and sets r.Version.
	Put(ctx context.Context, r *resource.Resource, expectVersion int64) (int64, error)
	// Delete removes a resource (ErrNotFound when absent; ErrConflict when
	// expectVersion is set and differs) and returns the revision of the delete.
	Delete(ctx context.Context, key resource.Key, expectVersion int64) (int64, error)
	// Txn applies ops in transactions of at most 128 operations each (so the whole
	// batch is not atomic when longer) and returns the last revision written.
	// Ops are split in order: an op given last (a value op recording how far
	// the batch goes) is in the last transaction, and value ops count
	// against the cap like any other.
	Txn(ctx context.Context, ops []Op) (int64, error)
	// PutBatch creates or updates rs (no key twice) in transactions of at
	// most MaxTxnOps operations: within one transaction every resource lands
	// or none does. It stops at the first transaction with a failure and
	// returns one result per resource plus the first failure. See
	// BatchOptions for the mesh check, Prepare and dry runs; r.Version is set
	// for every resource written.
	PutBatch(ctx context.Context, rs []*resource.Resource, opts BatchOptions) ([]BatchResult, error)
	// Watch streams changes; see WatchOptions and WatchResponse.
	Watch(ctx context.Context, opts WatchOptions) (<-chan WatchResponse, error)
	// Revision returns the current store revision.
	Revision(ctx context.Context) (int64, error)
	// GetValue and PutValue keep small control-plane state (sync cursors,
	// signing keys) apart from resources; GetValue returns ErrNotFound when unset.
	GetValue(ctx context.Context, key string) ([]byte, error)
	PutValue(ctx context.Context, key string, value []byte) (int64, error)
	// CreateValue stores value under key only when the key is unset, and
	// returns what the key holds afterwards: value, or the value another
	// writer created first. Replicas racing to create a shared value (a
	// signing key, an id) thus all end up with the same one.
	CreateValue(ctx context.Context, key string, value []byte) ([]byte, error)
}
