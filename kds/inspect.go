package kds

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	kdsv1 "github.com/meshtrace/meshtrace/proto/kds/v1"
)

// ErrZoneNotConnected means the zone has no stream on this global replica.
var ErrZoneNotConnected = errors.New("kds: zone not connected to this global instance")

// DefaultInspectTimeout bounds a forwarded inspect request.
const DefaultInspectTimeout = 10 * time.Second

// inspectCalls pairs InspectRequests sent on one stream with their responses.
type inspectCalls struct {
	mu      sync.Mutex
	next    uint64
	pending map[uint64]chan *kdsv1.InspectResponse
}

func (c *inspectCalls) start() (uint64, chan *kdsv1.InspectResponse) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending == nil {
		c.pending = map[uint64]chan *kdsv1.InspectResponse{}
	}
	c.next++
	ch := make(chan *kdsv1.InspectResponse, 1)
	c.pending[c.next] = ch
	return c.next, ch
}

func (c *inspectCalls) done(id uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.pending, id)
}

// deliver hands a response to its waiting caller; unknown ids (the caller
// gave up) are dropped.
func (c *inspectCalls) deliver(r *kdsv1.InspectResponse) {
	c.mu.Lock()
	ch := c.pending[r.GetId()]
	delete(c.pending, r.GetId())
	c.mu.Unlock()
	if ch != nil {
		ch <- r
	}
}

// Inspect forwards a GET of one of the zone's inspect endpoints over the
// zone's stream and returns the zone's HTTP status and body. It fails with
// ErrZoneNotConnected when the zone has no stream on this replica.
func (s *Server) Inspect(ctx context.Context, zone, path string) (int, []byte, error) {
	s.mu.Lock()
	st := s.streams[zone]
	s.mu.Unlock()
	if st == nil {
		return 0, nil, fmt.Errorf("%w: %s (instance %s)", ErrZoneNotConnected, zone, s.cfg.Instance)
	}
	ctx, cancel := context.WithTimeout(ctx, DefaultInspectTimeout)
	defer cancel()
	id, ch := st.calls.start()
	defer st.calls.done(id)
	req := &kdsv1.GlobalMessage{Msg: &kdsv1.GlobalMessage_Inspect{Inspect: &kdsv1.InspectRequest{Id: id, Path: path}}}
	select {
	case st.inspects <- req:
	case <-st.ctx.Done():
		return 0, nil, fmt.Errorf("%w: %s: stream closed", ErrZoneNotConnected, zone)
	case <-ctx.Done():
		return 0, nil, fmt.Errorf("kds: inspect %s in zone %s: %w", path, zone, ctx.Err())
	}
	select {
	case r := <-ch:
		return int(r.GetStatus()), r.GetBody(), nil
	case <-st.ctx.Done():
		return 0, nil, fmt.Errorf("%w: %s: stream closed", ErrZoneNotConnected, zone)
	case <-ctx.Done():
		return 0, nil, fmt.Errorf("kds: inspect %s in zone %s: %w", path, zone, ctx.Err())
	}
}

// answerInspect runs the zone's Inspect callback for one request and queues
// the answer; it runs on its own goroutine so the receive loop never waits.
func (s *session) answerInspect(req *kdsv1.InspectRequest) {
	status, body := 404, []byte(`{"title":"inspect is not served by this zone"}`)
	if f := s.c.cfg.Inspect; f != nil {
		status, body = f(s.ctx, req.GetPath())
	}
	msg := &kdsv1.ZoneMessage{Msg: &kdsv1.ZoneMessage_Inspect{Inspect: &kdsv1.InspectResponse{
		Id: req.GetId(), Status: int32(status), Body: body,
	}}}
	select {
	case s.inspects <- msg:
	case <-s.ctx.Done():
	}
}
