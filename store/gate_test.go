package store

import (
	"context"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// blockingKV is a KV whose Get and Commit wait until released.
type blockingKV struct {
	clientv3.KV
	entered chan struct{}
	release chan struct{}
}

func (b blockingKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	b.entered <- struct{}{}
	<-b.release
	return &clientv3.GetResponse{}, nil
}

// Put answers at once (the test's probe for the gate having shut).
func (b blockingKV) Put(ctx context.Context, key, val string, opts ...clientv3.OpOption) (*clientv3.PutResponse, error) {
	return &clientv3.PutResponse{}, nil
}

func (b blockingKV) Txn(ctx context.Context) clientv3.Txn { return blockingTxn{b} }

type blockingTxn struct{ b blockingKV }

func (t blockingTxn) If(...clientv3.Cmp) clientv3.Txn  { return t }
func (t blockingTxn) Then(...clientv3.Op) clientv3.Txn { return t }
func (t blockingTxn) Else(...clientv3.Op) clientv3.Txn { return t }
func (t blockingTxn) Commit() (*clientv3.TxnResponse, error) {
	t.b.entered <- struct{}{}
	<-t.b.release
	return &clientv3.TxnResponse{}, nil
}

// Closing the gate waits for the calls inside (a Get and a transaction's
// Commit), refuses every later call with ErrClosed without reaching etcd,
// and gives up after its timeout when a call does not leave.
func TestGateClosesAfterCallsInside(t *testing.T) {
	b := blockingKV{entered: make(chan struct{}), release: make(chan struct{})}
	var g gate
	kv := gatedKV{kv: b, gate: &g}
	results := make(chan error, 2)
	go func() { _, err := kv.Get(context.Background(), "k"); results <- err }()
	<-b.entered
	go func() { _, err := kv.Txn(context.Background()).If().Then().Commit(); results <- err }()
	<-b.entered

	closed := make(chan bool, 1)
	go func() { closed <- g.close(time.Minute) }()
	// A later call is refused: the gate shuts before it waits. Retry until
	// the close above has begun (the refusal is the positive marker).
	for {
		_, err := kv.Put(context.Background(), "k", "v")
		if errors.Is(err, ErrClosed) {
			break
		}
		if err != nil {
			t.Fatalf("put: %v", err)
		}
	}
	if _, err := kv.Txn(context.Background()).Commit(); !errors.Is(err, ErrClosed) {
		t.Fatalf("commit after close: %v, want ErrClosed", err)
	}
	select {
	case <-closed:
		t.Fatal("close returned with two calls inside")
	default:
	}
	b.release <- struct{}{}
	b.release <- struct{}{}
	for range 2 {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}
	if !<-closed {
		t.Fatal("close reported calls still inside after they left")
	}

	var g2 gate
	kv2 := gatedKV{kv: b, gate: &g2}
	go func() { _, _ = kv2.Get(context.Background(), "k") }()
	<-b.entered
	if g2.close(10 * time.Millisecond) {
		t.Fatal("close reported idle with a call stuck inside")
	}
	b.release <- struct{}{}
}
