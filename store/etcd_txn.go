package store

import (
	"context"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// txn commits req. An embedded server is handed the request directly:
// through the in-process client every compare and op was built as a
// clientv3 value (cloned, key and value copied, then converted back), and
// etcd's gRPC layer checked the puts for overlapping keys in an interval
// tree, all per op of every transaction. The store's transactions hold what
// that layer checks (at most MaxTxnOps of each kind, no key put twice); the
// server checks the request's size itself, and the quota is checked here as
// that layer does. The gate is passed as by the client. An external cluster
// is reached through the client, with its retries and call options.
//
// The request must not be changed after: etcd encodes it into its log
// before it returns, and the client sends it.
func (s *EtcdStore) txn(ctx context.Context, req *pb.TxnRequest) (*pb.TxnResponse, error) {
	if s.server != nil {
		if !s.gate.enter() {
			return nil, ErrClosed
		}
		defer s.gate.leave()
		srv := s.server.Server
		// As etcd's gRPC layer: a write that does not fit the backend's
		// quota raises the NOSPACE alarm (which then refuses every write)
		// and is refused before it is proposed. Left to the apply, it would
		// be written and still answer "no space".
		if !s.quota.Available(req) {
			srv.Alarm(ctx, &pb.AlarmRequest{MemberID: uint64(srv.MemberID()), Action: pb.AlarmRequest_ACTIVATE, Alarm: pb.AlarmType_NOSPACE})
			return nil, rpctypes.ErrNoSpace
		}
		resp, err := srv.Txn(ctx, req)
		if err != nil && ctx.Err() != nil {
			// The server words a proposal given up as its own "request
			// cancelled" or "timed out"; the client returned ctx's error.
			return nil, ctx.Err()
		}
		return resp, err
	}
	cmps := make([]clientv3.Cmp, len(req.Compare))
	for i, c := range req.Compare {
		cmps[i] = clientv3.FromCompare(c)
	}
	then, err := clientOps(req.Success)
	if err != nil {
		return nil, err
	}
	els, err := clientOps(req.Failure)
	if err != nil {
		return nil, err
	}
	resp, err := s.client.Txn(ctx).If(cmps...).Then(then...).Else(els...).Commit()
	if err != nil {
		return nil, err
	}
	return (*pb.TxnResponse)(resp), nil
}

// clientOps are the client's ops for the requests the store builds (puts,
// deletes and reads of single keys; reads may count only).
func clientOps(reqs []*pb.RequestOp) ([]clientv3.Op, error) {
	out := make([]clientv3.Op, len(reqs))
	for i, r := range reqs {
		switch {
		case r.GetRequestPut() != nil:
			p := r.GetRequestPut()
			out[i] = clientv3.OpPut(string(p.Key), string(p.Value))
		case r.GetRequestDeleteRange() != nil:
			out[i] = clientv3.OpDelete(string(r.GetRequestDeleteRange().Key))
		case r.GetRequestRange() != nil:
			g := r.GetRequestRange()
			if g.CountOnly {
				out[i] = clientv3.OpGet(string(g.Key), clientv3.WithCountOnly())
			} else {
				out[i] = clientv3.OpGet(string(g.Key))
			}
		default:
			return nil, fmt.Errorf("store: transaction op %d: unsupported %v", i, r)
		}
	}
	return out, nil
}

// txnOps builds the compares and operations of a transaction writing n
// resources: everything one resource needs (its compare, put and read, and
// the messages around them) is one block, and the blocks of a transaction
// one allocation. Each key's bytes are shared by its compare, put and read.
type txnOps struct {
	blocks     []opBlock
	nc, np, nr int
}

type opBlock struct {
	cmp      pb.Compare
	create   pb.Compare_CreateRevision
	mod      pb.Compare_ModRevision
	put      pb.PutRequest
	putOp    pb.RequestOp_RequestPut
	putReq   pb.RequestOp
	rng      pb.RangeRequest
	rangeOp  pb.RequestOp_RequestRange
	rangeReq pb.RequestOp
}

func newTxnOps(n int) *txnOps {
	return &txnOps{blocks: make([]opBlock, n)}
}

// compare is the compare that key holds version: with 0, that it does not
// exist (clientv3's Compare(CreateRevision(key), "=", 0)), else its
// modification revision (Compare(ModRevision(key), "=", version)).
func (t *txnOps) compare(key []byte, version int64) *pb.Compare {
	b := &t.blocks[t.nc]
	t.nc++
	c := &b.cmp
	c.Key, c.Result = key, pb.Compare_EQUAL
	if version == 0 {
		c.Target, c.TargetUnion = pb.Compare_CREATE, &b.create
	} else {
		b.mod.ModRevision = version
		c.Target, c.TargetUnion = pb.Compare_MOD, &b.mod
	}
	return c
}

// put is clientv3's OpPut(key, value).
func (t *txnOps) put(key, value []byte) *pb.RequestOp {
	b := &t.blocks[t.np]
	t.np++
	b.put.Key, b.put.Value = key, value
	b.putOp.RequestPut = &b.put
	b.putReq.Request = &b.putOp
	return &b.putReq
}

// get is clientv3's OpGet(key).
func (t *txnOps) get(key []byte) *pb.RequestOp {
	b := &t.blocks[t.nr]
	t.nr++
	b.rng.Key = key
	b.rangeOp.RequestRange = &b.rng
	b.rangeReq.Request = &b.rangeOp
	return &b.rangeReq
}

// meshExists is clientv3's Compare(CreateRevision(key), ">", 0), and
// meshCount its OpGet(key, WithCountOnly()): a Mesh's checks.
func meshExists(key []byte) *pb.Compare {
	return &pb.Compare{Key: key, Result: pb.Compare_GREATER, Target: pb.Compare_CREATE,
		TargetUnion: &pb.Compare_CreateRevision{}}
}

func meshCount(key []byte) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: key, CountOnly: true}}}
}
