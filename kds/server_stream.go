package kds

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	kdsv1 "github.com/meshtrace/meshtrace/proto/kds/v1"
	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// serverStream is one zone's stream on one global replica.
type serverStream struct {
	s       *Server
	stream  kdsv1.KDS_SyncServer
	zone    string
	tokenID string
	claims  ZoneTokenClaims
	log     hclog.Logger

	ctx    context.Context
	cancel context.CancelCauseFunc

	live     liveness
	hello    chan *kdsv1.Hello
	acks     chan *kdsv1.Ack           // zone's answers to our batches
	out      chan *kdsv1.GlobalMessage // our answers to the zone's uploads
	inspects chan *kdsv1.GlobalMessage // forwarded inspect requests
	calls    inspectCalls

	q *queue
	p *pusher // owned by sendLoop

	ins *insight
	up  *uploader // owned by recvLoop

	// release is the zone's release id sent in the Welcome; releaseUnknown
	// before the Welcome.
	release string
}

const releaseUnknown = "\x00unknown"

func newServerStream(s *Server, stream kdsv1.KDS_SyncServer, claims ZoneTokenClaims) *serverStream {
	ctx, cancel := context.WithCancelCause(stream.Context())
	st := &serverStream{
		s:        s,
		stream:   stream,
		zone:     claims.Zone,
		tokenID:  claims.ID,
		claims:   claims,
		log:      s.log.With("zone", claims.Zone),
		ctx:      ctx,
		cancel:   cancel,
		hello:    make(chan *kdsv1.Hello, 1),
		acks:     make(chan *kdsv1.Ack, 2),
		out:      make(chan *kdsv1.GlobalMessage, 2),
		inspects: make(chan *kdsv1.GlobalMessage, 16),
		q:        newQueue(s.wires),
		release:  releaseUnknown,
	}
	st.live.init(s.cfg.Heartbeat, s.cfg.StallIntervals)
	st.up = newUploader(s, claims.Zone, st.log)
	st.ins = newInsight(s.cfg.Instance)
	st.up.onCounts = func(c map[string]int64) {
		st.ins.update(func(s *resource.ZoneInsightSpec) { s.Uploaded = c })
	}
	return st
}

// fail tears the stream down with cause; the first cause wins.
func (st *serverStream) fail(cause error) { st.cancel(cause) }

func (st *serverStream) run() error {
	defer st.cancel(nil)
	go st.recvLoop()
	var hello *kdsv1.Hello
	select {
	case hello = <-st.hello:
	case <-time.After(st.live.timeout):
		return fmt.Errorf("%w: no Hello within %s", ErrStalled, st.live.timeout)
	case <-st.ctx.Done():
		return context.Cause(st.ctx)
	}
	ctx := st.ctx
	if z := hello.GetZone(); z != "" && z != st.zone {
		st.log.Error("zone refused: its configured name is not its token's zone", "configured", z)
		return fmt.Errorf("%w: the zone is configured as %q but its token is for zone %q", ErrZoneMismatch, z, st.zone)
	}
	// Only now may the stream replace the zone's older one.
	if err := st.s.attach(st); err != nil {
		return err
	}
	defer st.s.detach(st)
	storeID, err := st.s.storeID(ctx)
	if err != nil {
		return fmt.Errorf("kds: read store id: %w", err)
	}
	down := typesSynced(resource.SyncGlobalToZone)
	last := hello.GetLastAppliedRevision()
	snapshot, err := st.needSnapshot(ctx, hello, storeID, down)
	if err != nil {
		return err
	}
	release, err := releaseID(ctx, st.s.cfg.Store, st.zone)
	if err != nil {
		return err
	}
	upRev, err := uploadRevision(ctx, st.s.cfg.Store, st.zone, hello.GetUploadStoreId())
	if err != nil {
		return err
	}

	st.p = newPusher(st.q, messageBudget(st.s.cfg.MaxMessageBytes, hello.GetMaxMessageBytes()), st.oversized)
	st.p.gap, st.p.stretch = st.s.cfg.BatchGap, st.s.cfg.BatchStretch
	// One store watch per server feeds every stream: subscribe first, then
	// read what comes before the feed's position.
	sub, pos, err := st.s.feed.subscribe(ctx, st.q, st.fail)
	if err != nil {
		return err
	}
	defer sub.close()
	var rev int64
	if snapshot {
		items, _, err := listAt(ctx, st.s.cfg.Store, down, sendDown, pos)
		if errors.Is(err, store.ErrCompacted) {
			st.s.feed.rebase()
		}
		if err != nil {
			return fmt.Errorf("kds: snapshot at %d: %w", pos, err)
		}
		st.p.startSnapshot(items, pos)
		sub.caughtUp(pos)
		rev = pos
	} else {
		st.p.sentCursor = last
		st.q.observe(last)
		if last < pos {
			n, err := catchUp(ctx, st.s.cfg.Store, down, last, pos, st.q, sendDown)
			var ce *store.CompactedError
			if errors.As(err, &ce) && ce.Requested == pos {
				st.s.feed.rebase()
			}
			if err != nil {
				return fmt.Errorf("kds: changes since %d: %w", last, err)
			}
			st.log.Debug("caught up", "from", last, "to", pos, "changes", n)
		}
		sub.caughtUp(max(pos, last))
		rev = max(pos, last)
	}
	if err := st.ins.begin(ctx, st.s.cfg.Store, st.zone, last); err != nil {
		st.log.Warn("cannot read zone insight", "error", err)
	}
	st.log.Info("zone connected", "rev", last, "snapshot", snapshot, "token", st.tokenID)
	st.send(&kdsv1.GlobalMessage{Msg: &kdsv1.GlobalMessage_Welcome{Welcome: &kdsv1.Welcome{
		GlobalInstance:      st.s.cfg.Instance,
		StoreId:             storeID,
		Snapshot:            snapshot,
		Revision:            rev,
		HeartbeatIntervalMs: st.s.cfg.Heartbeat.Milliseconds(),
		MaxMessageBytes:     int64(st.s.cfg.MaxMessageBytes),
		ReleaseDeletes:      release,
		UploadRevision:      upRev,
	}}}, "welcome")
	st.s.mu.Lock()
	st.release = release
	st.s.mu.Unlock()

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); st.live.watchdog(st.ctx, st.fail) }()
	go func() { defer wg.Done(); st.flushLoop() }()
	sendDone := make(chan struct{})
	go func() { defer close(sendDone); st.sendLoop() }()
	<-st.ctx.Done()
	cause := context.Cause(st.ctx)
	wg.Wait()
	st.joinSendLoop(sendDone)

	// The stream's context is gone; finish the bookkeeping with a fresh one.
	fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st.ins.update(func(s *resource.ZoneInsightSpec) {
		s.Online = false
		s.DisconnectedTime = time.Now().UTC()
	})
	if err := st.writeInsight(fctx); err != nil {
		st.log.Warn("cannot write zone insight", "error", err)
	}
	st.s.metrics.held.DeleteLabelValues(st.zone)
	st.log.Info("zone disconnected", "reason", cause)
	return cause
}

// needSnapshot decides between resuming from the zone's revision and a full
// snapshot: the zone is new, its revision is of another store (or from the
// future of this one), or the history since it is compacted.
func (st *serverStream) needSnapshot(ctx context.Context, hello *kdsv1.Hello, storeID string, down []resource.Type) (bool, error) {
	last := hello.GetLastAppliedRevision()
	if last <= 0 {
		return true, nil
	}
	if hello.GetStoreId() != storeID {
		st.log.Info("zone's revision is of another store: snapshot", "rev", last)
		return true, nil
	}
	cur, err := st.s.cfg.Store.Revision(ctx)
	if err != nil {
		return false, fmt.Errorf("kds: %w", err)
	}
	if last > cur {
		st.log.Info("zone's revision is ahead of the store: snapshot", "rev", last, "current", cur)
		return true, nil
	}
	if len(down) == 0 {
		return false, nil
	}
	// A read at the zone's revision fails when the history is compacted.
	_, err = st.s.cfg.Store.List(ctx, down[0], store.ListOptions{Revision: last, Limit: 1})
	if errors.Is(err, store.ErrCompacted) {
		st.log.Info("history since the zone's revision is compacted: snapshot", "rev", last)
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("kds: %w", err)
	}
	return false, nil
}

// sendDown keeps resources that came from a zone out of the downward sync.
func sendDown(r *resource.Resource) bool {
	return r.Labels[resource.LabelOrigin] != resource.OriginZone
}

// listAt reads every resource of types at store revision rev (0: the
// latest) and returns them with the revision read at.
func listAt(ctx context.Context, st store.Store, types []resource.Type, keep func(*resource.Resource) bool, rev int64) ([]*entry, int64, error) {
	var out []*entry
	for _, t := range orderTypes(types) {
		res, err := st.List(ctx, t, store.ListOptions{Revision: rev})
		if err != nil {
			return nil, 0, err
		}
		if rev == 0 {
			rev = res.Revision
		}
		for _, r := range res.Items {
			if keep(r) {
				out = append(out, &entry{key: r.Key(), res: r, rev: r.Version})
			}
		}
	}
	if rev == 0 {
		var err error
		if rev, err = st.Revision(ctx); err != nil {
			return nil, 0, err
		}
	}
	return out, rev, nil
}

func (st *serverStream) recvLoop() {
	msg, err := st.stream.Recv()
	if err != nil {
		st.fail(err)
		return
	}
	st.live.received()
	h := msg.GetHello()
	if h == nil {
		st.fail(errors.New("kds: first message is not a Hello"))
		return
	}
	st.up.storeID = h.GetUploadStoreId() // this goroutine applies the uploads
	st.hello <- h
	r := receiver{
		ctx: st.ctx, live: &st.live, peer: "zone", peerBatches: "uploads",
		recv: func() (inbound, any, error) {
			msg, err := st.stream.Recv()
			if err != nil {
				return inbound{}, nil, err
			}
			switch m := msg.Msg.(type) {
			case *kdsv1.ZoneMessage_Upload:
				return inbound{batch: m.Upload}, nil, nil
			case *kdsv1.ZoneMessage_Ack:
				return inbound{ack: m.Ack}, nil, nil
			case *kdsv1.ZoneMessage_Heartbeat:
				return inbound{heartbeat: m.Heartbeat}, nil, nil
			case *kdsv1.ZoneMessage_Report:
				return inbound{other: func() { st.ins.setProxies(m.Report.GetProxiesJson(), st.log) }}, nil, nil
			case *kdsv1.ZoneMessage_Inspect:
				return inbound{other: func() { st.calls.deliver(m.Inspect) }}, nil, nil
			}
			return inbound{}, msg.Msg, nil
		},
		apply: st.up.apply,
		answer: func(a *kdsv1.Ack) bool {
			select {
			case st.out <- &kdsv1.GlobalMessage{Msg: &kdsv1.GlobalMessage_UploadAck{UploadAck: a}}:
				return true
			default:
				return false
			}
		},
		acks: st.acks,
		heartbeat: func(h *kdsv1.Heartbeat) error {
			st.ins.zoneApplied(h.GetRevision())
			if err := st.up.idle(st.ctx, h.GetUploadRevision(), time.Now()); err != nil {
				// Only a resume point: the next heartbeat tries again.
				st.log.Warn("idle upload cursor not kept", "error", err)
			}
			return nil
		},
		fail: st.fail,
	}
	r.run()
}

// sendLoop is the only sender on the stream.
func (st *serverStream) sendLoop() {
	hb := time.NewTicker(st.s.cfg.Heartbeat)
	defer hb.Stop()
	gap := time.NewTimer(time.Hour)
	gap.Stop()
	defer gap.Stop()
	var pendingSince time.Time
	for {
		select {
		case m := <-st.out:
			st.send(m, "upload_ack")
			continue
		default:
		}
		now := time.Now()
		if b := st.p.next(now); b != nil {
			if st.log.IsDebug() {
				for _, r := range b.Resources {
					st.log.Debug("sending to zone", "type", r.Type, "mesh", r.Mesh, "name", r.Name, "rev", r.Revision, "delete", r.Delete, "nonce", b.Nonce)
				}
			}
			st.live.sentBatch(b.Nonce)
			st.ins.sent(b)
			st.send(&kdsv1.GlobalMessage{Msg: &kdsv1.GlobalMessage_Batch{Batch: b}}, "batch")
			continue
		}
		if st.p.busy() {
			if pendingSince.IsZero() {
				pendingSince = now
			}
		} else {
			pendingSince = time.Time{}
		}
		st.reportLag(pendingSince)
		// Changes held by the batch gap (see pusher): wake when it ends.
		var gapC <-chan time.Time
		if t := st.p.heldUntil(); st.p.inflight == nil && st.q.len() > 0 && t.After(now) {
			gap.Reset(t.Sub(now))
			gapC = gap.C
		}
		select {
		case <-st.ctx.Done():
			return
		case <-gapC:
		case m := <-st.out:
			st.send(m, "upload_ack")
		case m := <-st.inspects:
			st.send(m, "inspect")
		case a := <-st.acks:
			f := st.p.ack(a)
			if f == nil {
				st.fail(fmt.Errorf("kds: Ack for unknown batch %d", a.GetNonce()))
				return
			}
			st.live.acked()
			st.acked(f, a)
		case <-st.q.ready:
		case <-hb.C:
			// Nothing pending or unacknowledged: the zone may persist the
			// revision the feed has reached, so a quiet zone's cursor keeps
			// up with the store (and its reconnects resume, not snapshot).
			var cursor int64
			if st.p.inflight == nil && !st.p.snapPending {
				cursor, _ = st.q.idleCursor()
			}
			st.send(&kdsv1.GlobalMessage{Msg: &kdsv1.GlobalMessage_Heartbeat{Heartbeat: &kdsv1.Heartbeat{
				Revision: cursor,
				Applying: st.live.applying(),
			}}}, "heartbeat")
		}
	}
}

// joinSendLoop waits for sendLoop to end once the stream's context is done.
// A server-side Send blocked on a peer that stopped reading only returns
// once the handler does, so that one case is not waited for: the Send then
// fails at once and sendLoop touches nothing after it.
func (st *serverStream) joinSendLoop(done <-chan struct{}) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			if st.live.sendBlocked() {
				st.log.Warn("a send to the zone is blocked; returning without it")
				return
			}
		}
	}
}

func (st *serverStream) send(m *kdsv1.GlobalMessage, kind string) {
	if st.ctx.Err() != nil {
		return
	}
	st.live.sending(true)
	err := st.stream.Send(m)
	st.live.sending(false)
	if err != nil {
		st.fail(fmt.Errorf("kds: send: %w", err))
		return
	}
	st.s.metrics.messages.WithLabelValues(kind).Inc()
}

func (st *serverStream) reportLag(pendingSince time.Time) {
	var revs int64
	var secs float64
	if !pendingSince.IsZero() {
		revs = st.q.observedRevision() - st.ins.acked()
		if revs < 0 {
			revs = 0
		}
		secs = time.Since(pendingSince).Seconds()
	}
	st.s.metrics.lagRevs.WithLabelValues(st.zone).Set(float64(revs))
	st.s.metrics.nacks.WithLabelValues(st.zone) // export 0 for a zone before its first NACK
	st.s.metrics.lagSeconds.WithLabelValues(st.zone).Set(secs)
	st.ins.setLag(revs)
}

// acked records the zone's answer to a batch.
func (st *serverStream) acked(f *flight, a *kdsv1.Ack) {
	now := time.Now().UTC()
	var nacks []resource.NACK
	for _, e := range a.GetErrors() {
		nacks = append(nacks, resource.NACK{
			Type: resource.Type(e.GetType()), Mesh: e.GetMesh(), Name: e.GetName(),
			Revision: e.GetRevision(), Reason: e.GetReason(), Time: now,
		})
	}
	if a.GetError() != "" {
		nacks = append(nacks, resource.NACK{Revision: f.cursor, Reason: a.GetError(), Time: now})
	}
	st.ins.ackedBatch(f, a, nacks)
	if f.end {
		st.s.metrics.held.WithLabelValues(st.zone).Set(float64(a.GetHeldDeletes()))
	}
	for _, n := range nacks {
		st.log.Warn("zone rejected", "type", n.Type, "mesh", n.Mesh, "name", n.Name, "reason", n.Reason)
		st.s.nack(st.zone, n)
	}
}

// oversized reports a resource that alone exceeds the message cap; it is
// dropped until it changes again.
func (st *serverStream) oversized(e *entry, size int, err error) {
	reason := fmt.Sprintf("resource of %d bytes exceeds the KDS message cap of %d bytes; not sent", size, st.s.cfg.MaxMessageBytes)
	if err != nil {
		reason = "cannot encode: " + err.Error()
	}
	st.log.Error("resource not sent", "type", e.key.Type, "mesh", e.key.Mesh, "name", e.key.Name, "reason", reason)
	st.s.metrics.oversized.WithLabelValues(st.zone, string(e.key.Type)).Inc()
	n := resource.NACK{Type: e.key.Type, Mesh: e.key.Mesh, Name: e.key.Name, Revision: e.rev, Reason: reason, Time: time.Now().UTC()}
	st.ins.recordNACK(n)
	st.s.nack(st.zone, n)
}

// flushLoop writes the zone's insight at once (online), then at most every
// InsightInterval.
func (st *serverStream) flushLoop() {
	t := time.NewTicker(st.s.cfg.InsightInterval)
	defer t.Stop()
	for {
		if st.ins.isDirty() {
			if err := st.writeInsight(st.ctx); err != nil && st.ctx.Err() == nil {
				st.log.Warn("cannot write zone insight", "error", err)
			}
		}
		select {
		case <-st.ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (st *serverStream) writeInsight(ctx context.Context) error {
	return st.ins.write(ctx, st.s.cfg.Store, st.zone)
}
