package kds

import (
	"fmt"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// wireCodec is gRPC's proto codec with a buffer pool of finer sizes, for
// both ends of a KDS stream. gRPC's default pool has tiers of 32 KiB and
// 1 MiB and clears a buffer's whole capacity on every Get, so every batch
// between 32 KiB and 1 MiB (a burst's usual batch) cleared a megabyte when
// global encoded it (most of the cost of a Send) and again when the zone
// read it. With a tier at every power of two a buffer is at most twice the
// message. Buffers are still cleared before reuse, as gRPC's are.
type wireCodec struct{}

// wirePool's tiers: 256 B and 4 KiB as gRPC's, then every power of two up
// to 8 MiB (past the largest message cap a peer may set, larger messages
// get a buffer of their own).
var wirePool = func() mem.BufferPool {
	exps := []uint8{8, 12}
	for e := uint8(13); e <= 23; e++ {
		exps = append(exps, e)
	}
	p, err := mem.NewBinaryTieredBufferPool(exps...)
	if err != nil {
		panic(err)
	}
	return p
}()

// Name is the content subtype gRPC negotiates: this codec reads and writes
// the same bytes as gRPC's own "proto" codec.
func (wireCodec) Name() string { return "proto" }

func (wireCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("kds: cannot marshal %T: not a proto message", v)
	}
	// The size computed here is used by MarshalAppend (UseCachedSize); the
	// message is not changed while it is sent.
	size := proto.Size(m)
	opts := proto.MarshalOptions{UseCachedSize: true}
	if mem.IsBelowBufferPoolingThreshold(size) {
		b, err := opts.Marshal(m)
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	buf := wirePool.Get(size)
	if _, err := opts.MarshalAppend((*buf)[:0], m); err != nil {
		wirePool.Put(buf)
		return nil, err
	}
	return mem.BufferSlice{mem.NewBuffer(buf, wirePool)}, nil
}

func (wireCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("kds: cannot unmarshal into %T: not a proto message", v)
	}
	buf := data.MaterializeToBuffer(wirePool)
	defer buf.Free()
	// proto.Unmarshal copies what it keeps: the buffer can go back.
	return proto.Unmarshal(buf.ReadOnlyData(), m)
}
