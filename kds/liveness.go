package kds

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	kdsv1 "github.com/meshtrace/meshtrace/proto/kds/v1"
)

// liveness watches one stream in both directions: a peer that sends nothing
// for the timeout, a Send blocked for the timeout, or a batch unacknowledged
// for the timeout without the peer saying it is still applying it, tears the
// stream down. The timeout is StallIntervals heartbeat intervals.
type liveness struct {
	interval, timeout time.Duration

	lastRecv      atomic.Int64  // unix nanos
	busyNow       atomic.Bool   // we are applying a peer batch (not reading)
	applyingNonce atomic.Uint64 // its nonce, sent in our heartbeats
	sendSince     atomic.Int64  // a Send in progress since; 0 when none
	inflightNonce atomic.Uint64
	inflightSince atomic.Int64
}

func (l *liveness) init(interval time.Duration, intervals int) {
	l.interval, l.timeout = interval, interval*time.Duration(intervals)
	l.lastRecv.Store(time.Now().UnixNano())
}

func (l *liveness) received() { l.lastRecv.Store(time.Now().UnixNano()) }

// apply applies the peer's batch b with apply. Meanwhile we are not reading,
// so the peer's silence is no stall, and our heartbeats carry b's nonce
// (applying) so the peer does not count b as unacknowledged.
func (l *liveness) apply(ctx context.Context, b *kdsv1.Batch, apply func(context.Context, *kdsv1.Batch) (*kdsv1.Ack, error)) (*kdsv1.Ack, error) {
	l.applyingNonce.Store(b.GetNonce())
	l.busyNow.Store(true)
	defer func() {
		l.busyNow.Store(false)
		l.received()
		l.applyingNonce.Store(0)
	}()
	return apply(ctx, b)
}

// applying is the nonce of the peer batch being applied, 0 when none.
func (l *liveness) applying() uint64 { return l.applyingNonce.Load() }

func (l *liveness) sending(b bool) {
	if b {
		l.sendSince.Store(time.Now().UnixNano())
	} else {
		l.sendSince.Store(0)
	}
}

// sendBlocked reports a Send in progress for more than a moment.
func (l *liveness) sendBlocked() bool {
	s := l.sendSince.Load()
	return s != 0 && time.Since(time.Unix(0, s)) > 50*time.Millisecond
}

func (l *liveness) sentBatch(nonce uint64) {
	l.inflightSince.Store(time.Now().UnixNano())
	l.inflightNonce.Store(nonce)
}

func (l *liveness) acked() {
	l.inflightNonce.Store(0)
	l.inflightSince.Store(0)
}

// progress is the peer's heartbeat saying it is applying batch nonce (0: none).
func (l *liveness) progress(nonce uint64) {
	if nonce != 0 && nonce == l.inflightNonce.Load() {
		l.inflightSince.Store(time.Now().UnixNano())
	}
}

// watchdog calls fail once the stream stalls; it returns when ctx ends.
func (l *liveness) watchdog(ctx context.Context, fail func(error)) {
	t := time.NewTicker(l.interval / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := l.check(time.Now()); err != nil {
			fail(err)
			return
		}
	}
}

func (l *liveness) check(now time.Time) error {
	age := func(since int64) time.Duration { return now.Sub(time.Unix(0, since)) }
	if s := l.sendSince.Load(); s != 0 && age(s) > l.timeout {
		return fmt.Errorf("%w: a send has been blocked for %s (peer not reading)", ErrStalled, age(s).Round(time.Millisecond))
	}
	if !l.busyNow.Load() && age(l.lastRecv.Load()) > l.timeout {
		return fmt.Errorf("%w: nothing received for %s", ErrStalled, age(l.lastRecv.Load()).Round(time.Millisecond))
	}
	if s := l.inflightSince.Load(); s != 0 && age(s) > l.timeout {
		return fmt.Errorf("%w: batch %d not acknowledged for %s", ErrStalled, l.inflightNonce.Load(), age(s).Round(time.Millisecond))
	}
	return nil
}
