package kds

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	kdsv1 "github.com/meshtrace/meshtrace/proto/kds/v1"
	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// session is one stream of a zone to a global replica.
type session struct {
	c    *Client
	conn *grpc.ClientConn
	log  hclog.Logger

	ctx    context.Context
	cancel context.CancelCauseFunc
	stream kdsv1.KDS_SyncClient

	live       liveness
	out        chan *kdsv1.ZoneMessage // our Acks to global's batches
	uploadAcks chan *kdsv1.Ack
	inspects   chan *kdsv1.ZoneMessage // answers to global's inspect requests

	q  *queue
	p  *pusher // owned by sendLoop
	ap *applier
	up []resource.Type // the types the zone uploads

	// progressed is set once a batch of global's was applied or a heartbeat
	// came after the Welcome: only then does the client's backoff start over.
	progressed atomic.Bool
}

func newSession(c *Client, conn *grpc.ClientConn) *session {
	s := &session{
		c:          c,
		conn:       conn,
		log:        c.log,
		out:        make(chan *kdsv1.ZoneMessage, 2),
		uploadAcks: make(chan *kdsv1.Ack, 2),
		inspects:   make(chan *kdsv1.ZoneMessage, 16),
		q:          newQueue(nil),
	}
	s.live.init(c.cfg.Heartbeat, c.cfg.StallIntervals)
	return s
}

func (s *session) fail(err error) { s.cancel(err) }

func (s *session) run(parent context.Context) (bool, error) {
	s.ctx, s.cancel = context.WithCancelCause(parent)
	defer s.cancel(nil)
	ctx := metadata.AppendToOutgoingContext(s.ctx, "authorization", "Bearer "+s.c.cfg.Token)
	stream, err := kdsv1.NewKDSClient(s.conn).Sync(ctx)
	if err != nil {
		return false, err
	}
	s.stream = stream
	s.c.mu.Lock()
	prev := cursor{StoreID: s.c.storeID, Revision: s.c.applied.Load()}
	held := s.c.held != nil
	s.c.mu.Unlock()
	upStore, err := zoneStoreID(s.ctx, s.c.cfg.Store)
	if err != nil {
		return false, fmt.Errorf("kds: zone store id: %w", err)
	}
	hello := &kdsv1.Hello{LastAppliedRevision: prev.Revision, StoreId: prev.StoreID, Version: s.c.cfg.Version,
		Zone: s.c.cfg.Zone, MaxMessageBytes: int64(s.c.cfg.MaxMessageBytes), UploadStoreId: upStore}
	if held {
		// Held deletes are judged again on a full snapshot.
		hello.LastAppliedRevision = 0
	}
	if err := stream.Send(&kdsv1.ZoneMessage{Msg: &kdsv1.ZoneMessage_Hello{Hello: hello}}); err != nil {
		if errors.Is(err, io.EOF) {
			// Global ended the stream before reading the Hello (it refused
			// the token): the status it ended it with comes from Recv. A
			// bare EOF would read as a transient error and restart the
			// zone's grace for Unauthenticated on every other attempt.
			_, err = stream.Recv()
		}
		return false, s.streamErr(err)
	}
	timer := time.AfterFunc(s.live.timeout, func() {
		s.fail(fmt.Errorf("%w: no Welcome within %s", ErrStalled, s.live.timeout))
	})
	msg, err := stream.Recv()
	timer.Stop()
	if err != nil {
		return false, s.streamErr(err)
	}
	welcome := msg.GetWelcome()
	if welcome == nil {
		return false, errors.New("kds: first message from global is not a Welcome")
	}
	// Global dictates the heartbeat: both ends send at its interval and
	// judge stalls by it, so zone and global settings cannot disagree.
	if hb := time.Duration(welcome.GetHeartbeatIntervalMs()) * time.Millisecond; hb > 0 {
		s.live.init(hb, s.c.cfg.StallIntervals)
	}
	s.live.received()
	s.log = s.log.With("global", welcome.GetGlobalInstance())
	s.ap = newApplier(s.c, welcome.GetStoreId(), welcome.GetReleaseDeletes(), prev, s.log)
	if err := s.ap.loadIndex(s.ctx); err != nil {
		return false, fmt.Errorf("kds: read synced copies: %w", err)
	}
	up := typesSynced(resource.SyncZoneToGlobal)
	s.up = up
	s.p = newPusher(s.q, messageBudget(s.c.cfg.MaxMessageBytes, welcome.GetMaxMessageBytes()), s.oversized)
	rev, err := s.startUploads(up, welcome.GetUploadRevision())
	if err != nil {
		return false, err
	}
	wch, err := s.c.cfg.Store.Watch(s.ctx, store.WatchOptions{Types: up, FromRevision: rev + 1})
	if err != nil {
		return false, fmt.Errorf("kds: watch zone store: %w", err)
	}
	s.c.connected.Store(true)
	s.c.metrics.connected.Set(1)
	s.c.count(func(st *ClientStats) { st.Sessions++ })
	s.log.Info("connected to global", "rev", hello.LastAppliedRevision, "snapshot", welcome.GetSnapshot())
	defer func() {
		s.c.connected.Store(false)
		s.c.metrics.connected.Set(0)
	}()

	var wg sync.WaitGroup
	wg.Add(4)
	go func() { defer wg.Done(); s.recvLoop() }()
	go func() { defer wg.Done(); s.sendLoop() }()
	go func() { defer wg.Done(); s.live.watchdog(s.ctx, s.fail) }()
	go func() { defer wg.Done(); feed(s.ctx, wch, s.q, uploadable, s.fail) }()
	<-s.ctx.Done()
	wg.Wait()
	return s.progressed.Load(), s.streamErr(context.Cause(s.ctx))
}

// streamErr prefers the cause we recorded over the transport's echo of it.
func (s *session) streamErr(err error) error {
	if cause := context.Cause(s.ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return err
}

// uploadable keeps global's copies out of the upward sync (a delete whose
// last value is known is judged by it too).
func uploadable(r *resource.Resource) bool {
	return r.Labels[resource.LabelOrigin] != resource.OriginGlobal
}

func (s *session) recvLoop() {
	r := receiver{
		ctx: s.ctx, live: &s.live, peer: "global", peerBatches: "batches",
		recv: func() (inbound, any, error) {
			msg, err := s.stream.Recv()
			if err != nil {
				return inbound{}, nil, err
			}
			switch m := msg.Msg.(type) {
			case *kdsv1.GlobalMessage_Batch:
				return inbound{batch: m.Batch}, nil, nil
			case *kdsv1.GlobalMessage_UploadAck:
				return inbound{ack: m.UploadAck}, nil, nil
			case *kdsv1.GlobalMessage_Heartbeat:
				return inbound{heartbeat: m.Heartbeat}, nil, nil
			case *kdsv1.GlobalMessage_Inspect:
				return inbound{other: func() { go s.answerInspect(m.Inspect) }}, nil, nil
			}
			return inbound{}, msg.Msg, nil
		},
		apply: s.ap.apply,
		answer: func(a *kdsv1.Ack) bool {
			select {
			case s.out <- &kdsv1.ZoneMessage{Msg: &kdsv1.ZoneMessage_Ack{Ack: a}}:
				return true
			default:
				return false
			}
		},
		acks:    s.uploadAcks,
		applied: func() { s.progressed.Store(true) },
		heartbeat: func(h *kdsv1.Heartbeat) error {
			s.progressed.Store(true)
			// Global has nothing pending for us up to this revision.
			if rev := h.GetRevision(); rev > s.c.applied.Load() {
				return s.c.saveCursor(s.ctx, s.ap.storeID, rev)
			}
			return nil
		},
		fail: s.fail,
	}
	r.run()
}

// sendLoop is the only sender on the stream.
func (s *session) sendLoop() {
	hb := time.NewTicker(s.live.interval)
	defer hb.Stop()
	report := time.NewTicker(s.c.cfg.ReportInterval)
	defer report.Stop()
	var lastReport []byte
	sendReport := func() {
		if s.c.cfg.ProxyReport == nil {
			return
		}
		b, err := json.Marshal(s.c.cfg.ProxyReport())
		if err != nil || bytes.Equal(b, lastReport) {
			return
		}
		lastReport = b
		s.send(&kdsv1.ZoneMessage{Msg: &kdsv1.ZoneMessage_Report{Report: &kdsv1.ZoneReport{ProxiesJson: b}}})
	}
	sendReport()
	for {
		select {
		case m := <-s.out:
			s.send(m)
			continue
		default:
		}
		if b := s.p.next(time.Now()); b != nil {
			s.live.sentBatch(b.Nonce)
			s.c.count(func(st *ClientStats) { st.Uploaded += len(b.Resources) })
			s.send(&kdsv1.ZoneMessage{Msg: &kdsv1.ZoneMessage_Upload{Upload: b}})
			continue
		}
		select {
		case <-s.ctx.Done():
			return
		case m := <-s.out:
			s.send(m)
		case m := <-s.inspects:
			s.send(m)
		case a := <-s.uploadAcks:
			if s.p.ack(a) == nil {
				s.fail(fmt.Errorf("kds: Ack for unknown upload %d", a.GetNonce()))
				return
			}
			s.live.acked()
			for _, e := range a.GetErrors() {
				s.log.Warn("global rejected upload", "type", e.GetType(), "mesh", e.GetMesh(), "name", e.GetName(), "reason", e.GetReason())
			}
			if a.GetError() != "" {
				s.log.Warn("global refused upload", "reason", a.GetError())
			}
		case <-s.q.ready:
		case <-report.C:
			sendReport()
		case <-hb.C:
			s.send(&kdsv1.ZoneMessage{Msg: &kdsv1.ZoneMessage_Heartbeat{Heartbeat: &kdsv1.Heartbeat{
				Revision:       s.c.applied.Load(),
				Applying:       s.live.applying(),
				UploadRevision: s.idleUploadCursor(),
			}}})
		}
	}
}

func (s *session) send(m *kdsv1.ZoneMessage) {
	if s.ctx.Err() != nil {
		return
	}
	s.live.sending(true)
	err := s.stream.Send(m)
	s.live.sending(false)
	if err != nil {
		s.fail(fmt.Errorf("kds: send: %w", err))
	}
}

func (s *session) oversized(e *entry, size int, err error) {
	reason := fmt.Sprintf("resource of %d bytes exceeds the KDS message cap of %d bytes; not uploaded", size, s.c.cfg.MaxMessageBytes)
	if err != nil {
		reason = "cannot encode: " + err.Error()
	}
	s.log.Error("resource not uploaded", "type", e.key.Type, "mesh", e.key.Mesh, "name", e.key.Name, "reason", reason)
	s.c.metrics.oversized.WithLabelValues(string(e.key.Type)).Inc()
}

// idleUploadCursor is the zone-store revision global may keep as the upload
// cursor when nothing is pending or unacknowledged, 0 otherwise. The zone's
// watch sees only the uploaded types, while its store also moves with
// global's copies and the sync cursors; so when idle the cursor is moved to
// the store's revision once no uploaded type changed since the last one
// pushed (what the watch has not delivered yet is never skipped). Without it
// an idle zone's upload cursor stays where its last upload left it, and
// once its store compacts past that a reconnect sends a full snapshot.
func (s *session) idleUploadCursor() int64 {
	if s.p.inflight != nil || s.p.snapPending || s.q.len() > 0 {
		return 0
	}
	from := max(s.q.observedRevision(), s.p.sentCursor)
	if from == 0 {
		return 0
	}
	st := s.c.cfg.Store
	cur, err := st.Revision(s.ctx)
	if err != nil || cur <= from {
		return from
	}
	quiet, err := unchangedBetween(s.ctx, st, s.up, from, cur)
	if err != nil {
		s.log.Debug("upload cursor not advanced", "from", from, "to", cur, "error", err)
		return from
	}
	if quiet {
		s.q.observe(cur)
		return cur
	}
	return from
}

// unchangedBetween reports whether no resource of types was created,
// changed or deleted between store revisions from and to, from two
// keys-only listings (their versions and counts).
func unchangedBetween(ctx context.Context, st store.Store, types []resource.Type, from, to int64) (bool, error) {
	for _, t := range types {
		after, err := st.List(ctx, t, store.ListOptions{Revision: to, KeysOnly: true})
		if err != nil {
			return false, err
		}
		for _, r := range after.Items {
			if r.Version > from {
				return false, nil
			}
		}
		before, err := st.List(ctx, t, store.ListOptions{Revision: from, KeysOnly: true, Limit: 1})
		if err != nil {
			return false, err
		}
		if before.Total != after.Total {
			return false, nil
		}
	}
	return true, nil
}

// startUploads queues what goes up first: the changes since from (the
// zone-store revision global has applied, from the Welcome), or a full
// upload snapshot when global knows none or that history is compacted. It
// returns the revision the zone's watch continues after.
func (s *session) startUploads(up []resource.Type, from int64) (int64, error) {
	ctx := s.c.cfg.Store
	if from > 0 {
		cur, err := ctx.Revision(s.ctx)
		if err != nil {
			return 0, fmt.Errorf("kds: zone store revision: %w", err)
		}
		if from <= cur {
			s.p.sentCursor = from
			s.q.observe(from)
			n, err := catchUp(s.ctx, ctx, up, from, cur, s.q, uploadable)
			if err == nil {
				s.q.observe(cur)
				s.log.Info("resuming uploads", "from", from, "to", cur, "changes", n)
				return cur, nil
			}
			if !errors.Is(err, store.ErrCompacted) {
				return 0, fmt.Errorf("kds: zone changes since %d: %w", from, err)
			}
			// History gone: start over with a snapshot.
			s.q = newQueue(nil)
			s.p = newPusher(s.q, s.p.budget, s.oversized)
		}
	}
	items, rev, err := listAt(s.ctx, ctx, up, uploadable, 0)
	if err != nil {
		return 0, fmt.Errorf("kds: list zone resources: %w", err)
	}
	s.p.startSnapshot(items, rev)
	return rev, nil
}

// zoneStoreID returns the id of the zone's own store, creating it once.
func zoneStoreID(ctx context.Context, st store.Store) (string, error) {
	b, err := st.GetValue(ctx, valueZoneStoreID)
	if errors.Is(err, store.ErrNotFound) {
		b, err = st.CreateValue(ctx, valueZoneStoreID, []byte(randomID(16)))
	}
	if err != nil {
		return "", err
	}
	return string(b), nil
}
