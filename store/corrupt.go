package store

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshtrace/meshtrace/resource"
)

// ErrCorrupt means a stored value cannot be decoded, or names another
// resource than the key it is stored under (the key is the identity).
// Reads and watches treat such a value as absent: List skips it, a watch
// reports it as a delete of its key (Event.Corrupt), and the store keeps it
// in Corrupt() until the key is written or deleted.
var ErrCorrupt = errors.New("corrupt stored value")

// CorruptError is the error of a Get whose key holds a corrupt value. It
// wraps ErrCorrupt and carries the value's modification revision, so the key
// can still be deleted under an optimistic check (Delete with that version).
type CorruptError struct {
	Key      resource.Key
	Revision int64
	Err      error
}

func (e *CorruptError) Error() string { return e.Err.Error() }
func (e *CorruptError) Unwrap() error { return e.Err }

// corruptExisting stands for a corrupt current value where a write needs what
// the key holds (PutBatch's Prepare and its optimistic check): the key exists
// at version rev and nothing else is known (no labels, no creation time). A
// write over it compares that version like over any value, so a concurrent
// writer still conflicts.
func corruptExisting(k resource.Key, rev int64) *resource.Resource {
	return &resource.Resource{Meta: resource.Meta{Type: k.Type, Mesh: k.Mesh, Name: k.Name, Version: rev}}
}

// CorruptValue is one stored value that reads skip.
type CorruptValue struct {
	Key      string `json:"key"`
	Revision int64  `json:"revision"`
	Error    string `json:"error"`
}

// CorruptReporter is implemented by stores that report the values they skip.
type CorruptReporter interface {
	Corrupt() []CorruptValue
}

// corruptSet remembers the corrupt values a store met, logging each key and
// revision once.
type corruptSet struct {
	mu  sync.Mutex
	m   map[resource.Key]CorruptValue
	n   atomic.Int64 // len(m), read without the lock on the hot path
	log hclog.Logger
}

func (c *corruptSet) record(k resource.Key, storageKey string, rev int64, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[resource.Key]CorruptValue{}
	}
	if cur, ok := c.m[k]; ok && cur.Revision == rev {
		return
	}
	c.m[k] = CorruptValue{Key: storageKey, Revision: rev, Error: err.Error()}
	c.n.Store(int64(len(c.m)))
	if c.log != nil {
		c.log.Error("corrupt value skipped", "key", storageKey, "rev", rev, "error", err)
	}
}

// clear forgets k once it holds a good value or is gone.
func (c *corruptSet) clear(k resource.Key) {
	if c.n.Load() == 0 {
		return
	}
	c.mu.Lock()
	delete(c.m, k)
	c.n.Store(int64(len(c.m)))
	c.mu.Unlock()
}

func (c *corruptSet) list() []CorruptValue {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]CorruptValue, 0, len(c.m))
	for _, v := range c.m {
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b CorruptValue) int { return strings.Compare(a.Key, b.Key) })
	return out
}

func (c *corruptSet) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// register exports the number of known corrupt values on reg (once per
// registry; a second store on the same registry is not counted).
func (c *corruptSet) register(reg prometheus.Registerer) {
	if reg == nil {
		return
	}
	_ = reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "meshtrace_store_corrupt_values",
		Help: "Stored values skipped because they cannot be decoded or name another resource than their key.",
	}, func() float64 { return float64(c.count()) }))
}

// corruptf wraps ErrCorrupt.
func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}
