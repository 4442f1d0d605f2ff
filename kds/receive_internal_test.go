package kds

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	kdsv1 "github.com/meshtrace/meshtrace/proto/kds/v1"
)

// The receiver both sides share applies the peer's batches in order and
// Acks each, hands the peer's Acks and heartbeats on, and ends the stream
// with a clear error when the peer breaks the protocol: a second batch
// before our Ack of the first, an Ack of a batch never sent, a message it
// does not know.
func TestReceiver(t *testing.T) {
	type script struct {
		name   string
		msgs   []inbound
		answer []bool // results of answer, in order
		acks   int    // room for the peer's Acks
		want   string // the error the stream ends with
	}
	hb := &kdsv1.Heartbeat{Revision: 7}
	for _, tc := range []script{
		{name: "every message handled, then the stream ends", msgs: []inbound{
			{batch: &kdsv1.Batch{Nonce: 1}}, {ack: &kdsv1.Ack{Nonce: 9}}, {heartbeat: hb}, {other: func() {}}, {batch: &kdsv1.Batch{Nonce: 2}},
		}, answer: []bool{true, true}, acks: 1, want: "EOF"},
		{name: "batches without waiting for Acks", msgs: []inbound{{batch: &kdsv1.Batch{Nonce: 1}}, {batch: &kdsv1.Batch{Nonce: 2}}},
			answer: []bool{true, false}, want: "kds: zone sent uploads without waiting for Acks"},
		{name: "an Ack of nothing sent", msgs: []inbound{{ack: &kdsv1.Ack{Nonce: 3}}},
			want: "kds: zone sent Acks for batches never sent"},
		{name: "an unknown message", msgs: []inbound{{}}, want: "kds: unexpected message string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var applied []uint64
			var answered, heartbeats, others int
			for i := range tc.msgs {
				if tc.msgs[i].other != nil {
					tc.msgs[i].other = func() { others++ }
				}
			}
			acks := make(chan *kdsv1.Ack, tc.acks)
			var failed error
			next := 0
			r := receiver{
				ctx: context.Background(), live: &liveness{}, peer: "zone", peerBatches: "uploads",
				recv: func() (inbound, any, error) {
					if next == len(tc.msgs) {
						return inbound{}, nil, io.EOF
					}
					next++
					return tc.msgs[next-1], "a string", nil
				},
				apply: func(_ context.Context, b *kdsv1.Batch) (*kdsv1.Ack, error) {
					applied = append(applied, b.GetNonce())
					return &kdsv1.Ack{Nonce: b.GetNonce()}, nil
				},
				answer: func(a *kdsv1.Ack) bool {
					answered++
					return tc.answer[answered-1]
				},
				acks: acks,
				heartbeat: func(h *kdsv1.Heartbeat) error {
					if h != hb {
						t.Errorf("heartbeat %v handed on as %v", hb, h)
					}
					heartbeats++
					return nil
				},
				fail: func(err error) {
					if failed == nil {
						failed = err
					}
				},
			}
			r.run()
			if failed == nil || !strings.Contains(failed.Error(), tc.want) {
				t.Fatalf("ended with %v, want %q", failed, tc.want)
			}
			if errors.Is(failed, io.EOF) && (len(applied) != 2 || answered != 2 || len(acks) != 1 || heartbeats != 1 || others != 1) {
				t.Fatalf("applied %v, answered %d, acks %d, heartbeats %d, others %d", applied, answered, len(acks), heartbeats, others)
			}
		})
	}
}
