package store

import (
	"context"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// Group commit: concurrent small writes (single PUTs) share one etcd
// transaction instead of one each. etcd already shares a WAL fsync between
// the proposals pending at the same moment, but every transaction is still
// its own raft entry, apply, revision and watch event batch; a shared
// transaction costs one of each, and the zones receive the writes together.
//
// A write is sent at once while fewer than maxGroupsInFlight transactions
// are in flight, and writes arriving while they are queue up and go together
// in the next one. A lone writer waits for nothing.
//
// Writers that keep writing (eight clients each PUTting in a loop) would
// otherwise settle into two cohorts taking turns, each transaction carrying
// about half of them: the writers just answered are still on their way back
// when the next transaction leaves. So the next transaction waits, at most
// groupHold, until as many writers are queued as were waiting at once
// recently (the peak of queued and in-flight writers, forgotten after
// peakWindow): then all of them share one commit and one fsync.
//
// Each write keeps its own semantics: its compares (expected version, mesh
// exists) are all in the shared If. When any compare fails nothing of the
// transaction is written, and every member gets its own Else reads: a member
// whose compares failed handles them as after its own transaction, and the
// others (whose reads show their compares held) retry alone.

// maxGroupsInFlight is how many group transactions may be in flight at once.
// One is true group commit: everything arriving during a round trip goes in
// the next transaction. Measured with global BenchmarkPut (64 clients): 1 in
// flight gave 5.4-6.2k writes/s and 39 WAL fsyncs per 1000 writes, 2 gave
// 4.4-4.5k and 67, no grouping 2.4-3.2k and 98-121 (load 5).
const maxGroupsInFlight = 1

// groupHold bounds how long a transaction waits for the writers expected
// back; about the time of one commit, so waiting can at worst double one
// write's latency, while a full group halves the commits. peakWindow is how
// long the peak of waiting writers counts.
const (
	groupHold  = time.Millisecond
	peakWindow = 100 * time.Millisecond
)

// groupMember is one writer's transaction, waiting to be sent.
type groupMember struct {
	ctx   context.Context
	keys  []string // keys it puts: two members putting one key never share
	bytes int
	cmps  []*pb.Compare
	puts  []*pb.RequestOp
	gets  []*pb.RequestOp
	// meshes are the storage keys of the Meshes it checks: the last
	// len(meshes) compares (the Mesh exists) and gets (its count) are
	// theirs, in this order. Members checking one Mesh share one compare
	// and one get.
	meshes []string
	done   chan groupResult
}

// groupResult is a member's share of its group's transaction.
type groupResult struct {
	resp *pb.TxnResponse // Responses are the member's own
	// shared is set when the member's transaction went with others: a failed
	// transaction may have failed on another member's compare.
	shared bool
	err    error
}

type committer struct {
	mu       sync.Mutex
	queue    []*groupMember
	inflight int
	sending  int // members of the transaction in flight
	peak     int // most members queued and sending at once, since peakAt
	peakAt   time.Time
	arrived  chan struct{} // a member was queued (buffered 1)
}

// commit sends m's transaction, alone or with others waiting at the same
// time, and returns m's share of the result.
func (s *EtcdStore) commit(m *groupMember) groupResult {
	m.done = make(chan groupResult, 1)
	g := &s.group
	g.mu.Lock()
	g.queue = append(g.queue, m)
	now := time.Now()
	if n := len(g.queue) + g.sending; n > g.peak || now.Sub(g.peakAt) > peakWindow {
		g.peak, g.peakAt = n, now
	}
	if g.arrived == nil {
		g.arrived = make(chan struct{}, 1)
	}
	select {
	case g.arrived <- struct{}{}:
	default:
	}
	lead := g.inflight < maxGroupsInFlight
	if lead {
		g.inflight++
	}
	g.mu.Unlock()
	if lead {
		s.lead()
	}
	select {
	case r := <-m.done:
		return r
	case <-m.ctx.Done():
		// Like a cancelled transaction of its own: it may still land.
		return groupResult{err: m.ctx.Err()}
	}
}

// lead sends the queued members in one transaction, and keeps doing so
// (in a new goroutine, so its own writer returns) while more are queued.
func (s *EtcdStore) lead() {
	g := &s.group
	s.awaitGroup()
	g.mu.Lock()
	batch := g.take()
	if len(batch) == 0 {
		g.inflight--
		g.mu.Unlock()
		return
	}
	g.sending = len(batch)
	g.mu.Unlock()
	s.send(batch)
	g.mu.Lock()
	g.sending = 0
	more := len(g.queue) > 0
	if !more {
		g.inflight--
	}
	g.mu.Unlock()
	if more {
		go s.lead()
	}
}

// awaitGroup waits, at most groupHold, until as many members are queued as
// the recent peak (see groupHold); at once when they already are.
func (s *EtcdStore) awaitGroup() {
	g := &s.group
	var deadline *time.Timer
	for {
		g.mu.Lock()
		queued, want, arrived := len(g.queue), g.peak, g.arrived
		if time.Since(g.peakAt) > peakWindow {
			want = 0
		}
		g.mu.Unlock()
		if queued >= want {
			break
		}
		if deadline == nil {
			deadline = time.NewTimer(groupHold)
			defer deadline.Stop()
		}
		select {
		case <-arrived:
		case <-deadline.C:
			return
		case <-s.ctx.Done():
			return
		}
	}
}

// take removes from the queue the members of the next transaction: in
// order, within etcd's limits, no key put twice. Members whose writer gave
// up are dropped. Called with g.mu held.
func (g *committer) take() []*groupMember {
	var batch, rest []*groupMember
	var cmps, puts, gets, bytes int
	seen := map[string]bool{}
	for _, m := range g.queue {
		if m.ctx.Err() != nil {
			m.done <- groupResult{err: m.ctx.Err()}
			continue
		}
		fits := len(batch) == 0 || (cmps+len(m.cmps) <= MaxTxnOps && puts+len(m.puts) <= MaxTxnOps &&
			gets+len(m.gets) <= MaxTxnOps && bytes+m.bytes <= txnChunkBytes)
		for _, k := range m.keys {
			fits = fits && !seen[k]
		}
		if !fits {
			rest = append(rest, m)
			continue
		}
		for _, k := range m.keys {
			seen[k] = true
		}
		cmps, puts, gets, bytes = cmps+len(m.cmps), puts+len(m.puts), gets+len(m.gets), bytes+m.bytes
		batch = append(batch, m)
	}
	g.queue = rest
	return batch
}

// send commits one transaction for batch and hands each member its share.
func (s *EtcdStore) send(batch []*groupMember) {
	if len(batch) == 1 {
		m := batch[0]
		resp, err := s.txn(m.ctx, &pb.TxnRequest{Compare: m.cmps, Success: m.puts, Failure: m.gets})
		m.done <- groupResult{resp: resp, err: err}
		return
	}
	ops := groupOps(batch)
	// Not one member's context: one writer giving up must not fail the
	// others. The store's own context ends it on Close.
	resp, err := s.txn(s.ctx, &pb.TxnRequest{Compare: ops.cmps, Success: ops.puts, Failure: ops.gets})
	off := 0
	for i, m := range batch {
		r := groupResult{shared: true, err: err}
		if err == nil {
			own := &pb.TxnResponse{Header: resp.Header, Succeeded: resp.Succeeded}
			if resp.Succeeded {
				own.Responses = resp.Responses[off : off+len(m.puts)]
				off += len(m.puts)
			} else {
				own.Responses = make([]*pb.ResponseOp, len(ops.elseOf[i]))
				for j, at := range ops.elseOf[i] {
					own.Responses[j] = resp.Responses[at]
				}
			}
			r.resp = own
		}
		m.done <- r
	}
}

// sharedOps is the transaction of a group of members.
type sharedOps struct {
	cmps       []*pb.Compare
	puts, gets []*pb.RequestOp
	// elseOf[i] are the indexes, among the Else responses, of member i's
	// gets, in its order.
	elseOf [][]int
}

// groupOps puts the members' transactions together: every member's own
// compares, puts and gets in order, then each Mesh checked once however
// many members check it (the same compare and the same read, which etcd
// would otherwise decode, range and answer once per member).
func groupOps(batch []*groupMember) sharedOps {
	var nc, np, ng, meshFrom int
	for _, m := range batch {
		nc, np, ng = nc+len(m.cmps), np+len(m.puts), ng+len(m.gets)
		meshFrom += len(m.gets) - len(m.meshes)
	}
	ops := sharedOps{
		cmps:   make([]*pb.Compare, 0, nc),
		puts:   make([]*pb.RequestOp, 0, np),
		gets:   make([]*pb.RequestOp, meshFrom, ng),
		elseOf: make([][]int, len(batch)),
	}
	var meshCmps []*pb.Compare
	meshAt := map[string]int{} // mesh key -> index of its get
	own := 0
	for i, m := range batch {
		ownCmps, ownGets := len(m.cmps)-len(m.meshes), len(m.gets)-len(m.meshes)
		ops.cmps = append(ops.cmps, m.cmps[:ownCmps]...)
		ops.puts = append(ops.puts, m.puts...)
		elseOf := make([]int, 0, len(m.gets))
		for _, g := range m.gets[:ownGets] {
			ops.gets[own] = g
			elseOf = append(elseOf, own)
			own++
		}
		// The Meshes' compares and gets come after every member's own.
		for j, k := range m.meshes {
			at, ok := meshAt[k]
			if !ok {
				at = len(ops.gets)
				meshAt[k] = at
				meshCmps = append(meshCmps, m.cmps[ownCmps+j])
				ops.gets = append(ops.gets, m.gets[ownGets+j])
			}
			elseOf = append(elseOf, at)
		}
		ops.elseOf[i] = elseOf
	}
	ops.cmps = append(ops.cmps, meshCmps...)
	return ops
}
