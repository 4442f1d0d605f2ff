package kds

import (
	"bytes"
	"fmt"
	"testing"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	kdsv1 "github.com/meshtrace/meshtrace/proto/kds/v1"
)

// batchOf is a batch of n resources of about 400 bytes each, as a burst's.
func batchOf(n int) *kdsv1.GlobalMessage {
	b := &kdsv1.Batch{Nonce: 7, Revision: int64(n)}
	for i := range n {
		b.Resources = append(b.Resources, &kdsv1.Resource{Type: "MeshTrace", Mesh: "default", Name: fmt.Sprintf("burst-%d", i),
			Revision: int64(i + 1), Json: bytes.Repeat([]byte{'a' + byte(i%26)}, 400)})
	}
	return &kdsv1.GlobalMessage{Msg: &kdsv1.GlobalMessage_Batch{Batch: b}}
}

// wireCodec writes what gRPC's proto codec writes and reads it back, for
// messages below the pooling threshold, within the pool's tiers and past
// them; a buffer handed back and reused does not leak into the next message.
func TestWireCodecMatchesGRPCs(t *testing.T) {
	grpcs := encoding.GetCodecV2("proto")
	for _, n := range []int{0, 1, 100, 2000, 25000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			for range 2 { // the second time with a buffer from the pool
				msg := batchOf(n)
				want, err := grpcs.Marshal(msg)
				if err != nil {
					t.Fatal(err)
				}
				got, err := wireCodec{}.Marshal(msg)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got.Materialize(), want.Materialize()) {
					t.Fatalf("%d resources: %d bytes, gRPC's codec wrote %d", n, got.Len(), want.Len())
				}
				var back kdsv1.GlobalMessage
				if err := (wireCodec{}).Unmarshal(got, &back); err != nil {
					t.Fatal(err)
				}
				got.Free()
				want.Free()
				if !proto.Equal(&back, msg) {
					t.Fatalf("%d resources: read back differs", n)
				}
			}
		})
	}
}

func TestWireCodecRefusesOtherValues(t *testing.T) {
	if _, err := (wireCodec{}).Marshal("not a message"); err == nil {
		t.Error("marshalled a string")
	}
	if err := (wireCodec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer([]byte{1})}, new(int)); err == nil {
		t.Error("unmarshalled into an int")
	}
}

// BenchmarkWireMarshal marshals a batch of 150 resources (about 70 KB) with
// gRPC's proto codec and with wireCodec, handing the buffer back as the
// transport does once it is written.
func BenchmarkWireMarshal(b *testing.B) {
	msg := batchOf(150)
	for _, c := range []struct {
		name  string
		codec encoding.CodecV2
	}{{"grpc", encoding.GetCodecV2("proto")}, {"wire", wireCodec{}}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				data, err := c.codec.Marshal(msg)
				if err != nil {
					b.Fatal(err)
				}
				data.Free()
			}
		})
	}
}
