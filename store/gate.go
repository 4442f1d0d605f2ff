package store

import (
	"context"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// gate lets calls into etcd through until it is shut, and lets shut wait
// for the calls already inside. The embedded store calls its server
// in-process, where nothing else stands between a request and the server's
// backend: over gRPC, the server's graceful stop waits for requests in
// flight; in-process, a read still running when the server closes its
// backend would read a closed bbolt database and crash the process.
type gate struct {
	mu     sync.Mutex
	shut   bool
	inside int
	idle   chan struct{} // closed when shut and the last call has left
}

// enter reports whether a call may go in; a true answer must be matched by
// one leave.
func (g *gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.shut {
		return false
	}
	g.inside++
	return true
}

func (g *gate) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.inside--
	if g.inside == 0 && g.idle != nil {
		close(g.idle)
		g.idle = nil
	}
}

// close refuses every later call and waits up to timeout for the calls
// inside to leave. It reports whether they all left.
func (g *gate) close(timeout time.Duration) bool {
	g.mu.Lock()
	g.shut = true
	if g.inside == 0 {
		g.mu.Unlock()
		return true
	}
	if g.idle == nil {
		g.idle = make(chan struct{})
	}
	idle := g.idle
	g.mu.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-idle:
		return true
	case <-t.C:
		return false
	}
}

// gatedKV passes every key-value call through a gate: a call made once the
// gate is shut fails with ErrClosed without reaching etcd.
type gatedKV struct {
	kv   clientv3.KV
	gate *gate
}

var _ clientv3.KV = gatedKV{}

func (k gatedKV) Put(ctx context.Context, key, val string, opts ...clientv3.OpOption) (*clientv3.PutResponse, error) {
	if !k.gate.enter() {
		return nil, ErrClosed
	}
	defer k.gate.leave()
	return k.kv.Put(ctx, key, val, opts...)
}

func (k gatedKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	if !k.gate.enter() {
		return nil, ErrClosed
	}
	defer k.gate.leave()
	return k.kv.Get(ctx, key, opts...)
}

// GetStream is gated only as it starts: the store does not use it, and a
// stream outliving Close ends with the server.
func (k gatedKV) GetStream(ctx context.Context, key string, opts ...clientv3.OpOption) (clientv3.GetStreamChan, error) {
	if !k.gate.enter() {
		return nil, ErrClosed
	}
	defer k.gate.leave()
	return k.kv.GetStream(ctx, key, opts...)
}

func (k gatedKV) Delete(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.DeleteResponse, error) {
	if !k.gate.enter() {
		return nil, ErrClosed
	}
	defer k.gate.leave()
	return k.kv.Delete(ctx, key, opts...)
}

func (k gatedKV) Compact(ctx context.Context, rev int64, opts ...clientv3.CompactOption) (*clientv3.CompactResponse, error) {
	if !k.gate.enter() {
		return nil, ErrClosed
	}
	defer k.gate.leave()
	return k.kv.Compact(ctx, rev, opts...)
}

func (k gatedKV) Do(ctx context.Context, op clientv3.Op) (clientv3.OpResponse, error) {
	if !k.gate.enter() {
		return clientv3.OpResponse{}, ErrClosed
	}
	defer k.gate.leave()
	return k.kv.Do(ctx, op)
}

func (k gatedKV) Txn(ctx context.Context) clientv3.Txn {
	return gatedTxn{txn: k.kv.Txn(ctx), gate: k.gate}
}

// gatedTxn builds a transaction as etcd's does and passes its Commit
// through the gate.
type gatedTxn struct {
	txn  clientv3.Txn
	gate *gate
}

func (t gatedTxn) If(cs ...clientv3.Cmp) clientv3.Txn {
	return gatedTxn{txn: t.txn.If(cs...), gate: t.gate}
}

func (t gatedTxn) Then(ops ...clientv3.Op) clientv3.Txn {
	return gatedTxn{txn: t.txn.Then(ops...), gate: t.gate}
}

func (t gatedTxn) Else(ops ...clientv3.Op) clientv3.Txn {
	return gatedTxn{txn: t.txn.Else(ops...), gate: t.gate}
}

func (t gatedTxn) Commit() (*clientv3.TxnResponse, error) {
	if !t.gate.enter() {
		return nil, ErrClosed
	}
	defer t.gate.leave()
	return t.txn.Commit()
}
