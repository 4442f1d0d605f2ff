package store

import (
	"context"

	"github.com/meshtrace/meshtrace/resource"
)

// SharedWatches returns the number of running shared watch hubs (each one etcd watch).
func (s *EtcdStore) SharedWatches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.shared)
}

// PutRaw stores value under k's storage key as it is (as MemoryStore.PutRaw
// does), so the conformance suite can plant corrupt values.
func (s *EtcdStore) PutRaw(k resource.Key, value []byte) int64 {
	resp, err := s.client.Put(context.Background(), s.ks.resourceKey(k), string(value))
	if err != nil {
		panic(err)
	}
	return resp.Header.Revision
}

// DecodedValues is the number of watch event values the store decoded
// (each once, whatever the number of hubs meeting it).
func (s *EtcdStore) DecodedValues() int64 { return s.decoded.decodes.Load() }

// ReusedValues is the number of watch event values the store took from its
// own writes instead of decoding them.
func (s *EtcdStore) ReusedValues() int64 { return s.decoded.written.reused.Load() }

// PendingWrites is the number of writes whose watch event the store still
// expects (registered, not yet met, not failed, not expired).
func (s *EtcdStore) PendingWrites() int { n, _ := s.decoded.written.pending(); return n }

// PendingBytes is the size of the values of PendingWrites.
func (s *EtcdStore) PendingBytes() int { _, b := s.decoded.written.pending(); return b }
