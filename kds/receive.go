package kds

import (
	"context"
	"errors"
	"fmt"

	kdsv1 "github.com/meshtrace/meshtrace/proto/kds/v1"
)

// inbound is one message from the peer, sorted by what the receiving loop
// does with it; exactly one field is set. Each side maps its own message
// type (ZoneMessage on global, GlobalMessage on a zone) onto it.
type inbound struct {
	batch     *kdsv1.Batch     // the peer's changes: applied, then Acked
	ack       *kdsv1.Ack       // the peer's Ack of one of our batches
	heartbeat *kdsv1.Heartbeat // the peer's progress
	other     func()           // a message only this side knows (inspect, report)
}

// receiver is the receiving half of a stream, the same on both sides:
// liveness, the peer's batches applied one at a time and each Acked before
// the next, the peer's Acks of our batches handed to the sender, heartbeats.
// What a side may accept is the receiver's parameter: apply (which types it
// takes from the peer, how it stores them) and the heartbeat's meaning.
type receiver struct {
	ctx  context.Context
	live *liveness
	// peer names the other side, and peerBatches what it sends us, in
	// protocol errors ("zone", "uploads").
	peer, peerBatches string
	// recv reads the next message; unknown is set to its type when it is
	// none of inbound's.
	recv func() (in inbound, unknown any, err error)
	// apply applies one of the peer's batches; an error ends the stream.
	apply func(context.Context, *kdsv1.Batch) (*kdsv1.Ack, error)
	// answer queues our Ack of a batch for the sender without blocking:
	// false when one is already waiting, i.e. the peer did not wait for it.
	answer func(*kdsv1.Ack) bool
	// acks takes the peer's Acks to the sender.
	acks chan<- *kdsv1.Ack
	// applied, when set, is called after each applied batch.
	applied func()
	// heartbeat handles the peer's heartbeat after its progress is noted;
	// an error ends the stream.
	heartbeat func(*kdsv1.Heartbeat) error
	fail      func(error)
}

func (r *receiver) run() {
	for {
		in, unknown, err := r.recv()
		if err != nil {
			r.fail(err)
			return
		}
		r.live.received()
		switch {
		case in.batch != nil:
			ack, err := r.live.apply(r.ctx, in.batch, r.apply)
			if err != nil {
				r.fail(err)
				return
			}
			if r.applied != nil {
				r.applied()
			}
			if !r.answer(ack) {
				r.fail(fmt.Errorf("kds: %s sent %s without waiting for Acks", r.peer, r.peerBatches))
				return
			}
		case in.ack != nil:
			select {
			case r.acks <- in.ack:
			default:
				r.fail(errors.New("kds: " + r.peer + " sent Acks for batches never sent"))
				return
			}
		case in.heartbeat != nil:
			r.live.progress(in.heartbeat.GetApplying())
			if err := r.heartbeat(in.heartbeat); err != nil {
				r.fail(err)
				return
			}
		case in.other != nil:
			in.other()
		default:
			r.fail(fmt.Errorf("kds: unexpected message %T", unknown))
			return
		}
	}
}
