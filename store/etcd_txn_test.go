package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/storage"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/meshtrace/meshtrace/resource"
)

// recordingKV is an etcd KV service that keeps the last transaction it was
// sent and answers nothing else.
type recordingKV struct {
	pb.KVClient
	last *pb.TxnRequest
}

func (r *recordingKV) Txn(_ context.Context, req *pb.TxnRequest, _ ...grpc.CallOption) (*pb.TxnResponse, error) {
	r.last = req
	return &pb.TxnResponse{Header: &pb.ResponseHeader{}}, nil
}

// clientTxn is the request etcd's client sends for a transaction of these
// compares and ops.
func clientTxn(t *testing.T, cmps []clientv3.Cmp, then, els []clientv3.Op) *pb.TxnRequest {
	t.Helper()
	rec := &recordingKV{}
	if _, err := clientv3.NewKVFromKVClient(rec, nil).Txn(context.Background()).If(cmps...).Then(then...).Else(els...).Commit(); err != nil {
		t.Fatal(err)
	}
	return rec.last
}

// The requests the store builds for a write are the ones etcd's client
// built from the compares and ops the store used to give it, and the client
// ops clientOps gives for an external cluster make the same request again.
func TestTxnOpsAreTheClients(t *testing.T) {
	type write struct {
		key     string
		version int64 // 0: create
		value   string
	}
	for _, tc := range []struct {
		name   string
		writes []write
		meshes []string
	}{
		{name: "create", writes: []write{{key: "/p/MeshTrace/default/a", value: `{"x":1}`}}},
		{name: "update", writes: []write{{key: "/p/MeshTrace/default/a", version: 42, value: `{}`}}},
		{name: "mixed with meshes", writes: []write{
			{key: "/p/MeshTrace/m1/a", value: "v1"},
			{key: "/p/MeshTrace/m1/b", version: 7, value: "v2"},
			{key: "/p/MeshTrace/m2/c", version: 1 << 40, value: ""},
		}, meshes: []string{"/p/Mesh/m1", "/p/Mesh/m2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cmps []clientv3.Cmp
			var puts, gets []clientv3.Op
			ops := newTxnOps(len(tc.writes))
			got := &pb.TxnRequest{}
			for _, w := range tc.writes {
				if w.version == 0 {
					cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(w.key), "=", 0))
				} else {
					cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(w.key), "=", w.version))
				}
				puts = append(puts, clientv3.OpPut(w.key, w.value))
				gets = append(gets, clientv3.OpGet(w.key))
				key := []byte(w.key)
				got.Compare = append(got.Compare, ops.compare(key, w.version))
				got.Success = append(got.Success, ops.put(key, []byte(w.value)))
				got.Failure = append(got.Failure, ops.get(key))
			}
			for _, m := range tc.meshes {
				cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(m), ">", 0))
				gets = append(gets, clientv3.OpGet(m, clientv3.WithCountOnly()))
				got.Compare = append(got.Compare, meshExists([]byte(m)))
				got.Failure = append(got.Failure, meshCount([]byte(m)))
			}
			want := clientTxn(t, cmps, puts, gets)
			if !proto.Equal(got, want) {
				t.Fatalf("built\n%v\nthe client's\n%v", got, want)
			}
			// An external cluster: the same request through the client.
			var ccmps []clientv3.Cmp
			for _, c := range got.Compare {
				ccmps = append(ccmps, clientv3.FromCompare(c))
			}
			then, err := clientOps(got.Success)
			if err != nil {
				t.Fatal(err)
			}
			els, err := clientOps(got.Failure)
			if err != nil {
				t.Fatal(err)
			}
			if again := clientTxn(t, ccmps, then, els); !proto.Equal(again, want) {
				t.Fatalf("through the client\n%v\nwant\n%v", again, want)
			}
		})
	}
}

// A delete passes to an external cluster as the client's delete; an op
// the store never builds is refused, not sent as something else.
func TestClientOps(t *testing.T) {
	del := &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte("k")}}}
	ops, err := clientOps([]*pb.RequestOp{del})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := clientTxn(t, nil, ops, nil), clientTxn(t, nil, []clientv3.Op{clientv3.OpDelete("k")}, nil); !proto.Equal(got, want) {
		t.Errorf("delete sent as %v, want %v", got, want)
	}
	nested := &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{}}}
	if _, err := clientOps([]*pb.RequestOp{nested}); err == nil {
		t.Error("a nested transaction was accepted")
	}
}

// refusingQuota is a backend quota with no room left.
type refusingQuota struct{ storage.Quota }

func (refusingQuota) Available(any) bool { return false }

// A write past the embedded server's quota is refused before it is
// proposed and raises the NOSPACE alarm, as through etcd's gRPC layer:
// nothing of it is written. Reads still pass.
func TestEmbeddedWritePastQuotaIsRefused(t *testing.T) {
	ctx := context.Background()
	s, err := OpenEmbedded(ctx, EmbeddedConfig{Dir: t.TempDir(), UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.quota = refusingQuota{s.quota}
	mesh, err := resource.New(resource.TypeMesh, "", "m")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		write func() error
	}{
		{"PutBatch", func() error {
			_, err := s.PutBatch(ctx, []*resource.Resource{mesh}, BatchOptions{})
			return err
		}},
		{"Txn", func() error {
			_, err := s.Txn(ctx, []Op{{ValueKey: "k", Value: []byte("v")}})
			return err
		}},
	} {
		if err := tc.write(); !errors.Is(err, rpctypes.ErrNoSpace) {
			t.Errorf("%s past the quota: %v, want %v", tc.name, err, rpctypes.ErrNoSpace)
		}
	}
	if _, _, err := s.Get(ctx, mesh.Key()); !errors.Is(err, ErrNotFound) {
		t.Errorf("the refused Mesh: %v, want not found", err)
	}
	if _, err := s.GetValue(ctx, "k"); !errors.Is(err, ErrNotFound) {
		t.Errorf("the refused value: %v, want not found", err)
	}
	alarms := s.server.Server.Alarms()
	if len(alarms) != 1 || alarms[0].Alarm != pb.AlarmType_NOSPACE {
		t.Errorf("alarms %v, want NOSPACE", alarms)
	}
}

// A write whose context ends before it is answered either landed or says
// so with the context's error, as through etcd's client: the server's own
// words for a proposal given up while it waited ("request cancelled",
// "timed out") do not reach the caller.
func TestEmbeddedWriteWithEndedContext(t *testing.T) {
	s, err := OpenEmbedded(context.Background(), EmbeddedConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for i := range 40 {
		// Deadlines from the past to about one fsync ahead: some end
		// before the proposal, some while it waits to be applied.
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i-5)*10*time.Microsecond)
		want := context.DeadlineExceeded
		if i == 0 {
			ctx, want = cancelled, context.Canceled
		}
		_, err := s.Txn(ctx, []Op{{ValueKey: fmt.Sprintf("k-%d", i), Value: []byte("v")}})
		cancel()
		if err != nil && !errors.Is(err, want) {
			t.Fatalf("deadline %d: %v, want %v or success", i, err, want)
		}
	}
}
