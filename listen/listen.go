// Package listen opens the control planes' TCP listeners with a cap on open
// connections, and builds the HTTP and gRPC servers that serve on them with
// the timeouts and size limits every listener needs.
//
// A listener at its cap makes room for a newcomer by closing its oldest
// connection that is doing nothing (never finished a request, or idle
// between requests, or a gRPC connection with no open stream); when every
// connection is busy the newcomer is closed at once. Either way a flood of
// idle connections costs at most the cap in file descriptors and never
// blocks the clients that do work.
package listen

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/stats"
)

// Sizes of the HTTP servers (API and diagnostics).
const (
	MaxHeaderBytes = 64 << 10
	MaxBodyBytes   = 8 << 20
)

// Timeouts of the HTTP servers, read when a server is built (variables only
// so that tests can shorten them).
var (
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 15 * time.Second // whole request, body included
	WriteTimeout      = 60 * time.Second
	IdleTimeout       = 60 * time.Second
)

// Limits of the gRPC servers (KDS and xDS), read when the options are built.
var (
	// HandshakeTimeout bounds TLS and HTTP/2 set-up of a new connection:
	// everything before a stream can present its token.
	HandshakeTimeout = 10 * time.Second
	// MaxConnectionIdle closes a connection that has had no stream that long.
	MaxConnectionIdle = 30 * time.Second
)

// Listener is a TCP listener with a cap on open connections.
type Listener struct {
	net.Listener
	name string
	max  int

	mu       sync.Mutex
	conns    map[*conn]struct{}
	byRemote map[string]*conn // the same connections by peer address

	evicted  prometheus.Counter
	rejected prometheus.Counter
	open     atomic.Int64
	evictedN atomic.Int64
}

// Metrics are the counters of every Listener, labelled by listener name.
var (
	evictedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshtrace_listener_evicted_connections_total",
		Help: "Idle connections closed to make room for new ones at the listener's cap.",
	}, []string{"listener"})
	rejectedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshtrace_listener_rejected_connections_total",
		Help: "New connections closed at once because every connection was busy at the cap.",
	}, []string{"listener"})
)

// Register adds the listener metrics to reg (once per registry).
func Register(reg prometheus.Registerer) {
	for _, c := range []prometheus.Collector{evictedTotal, rejectedTotal} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				panic(err)
			}
		}
	}
}

// TCP listens on addr with at most max open connections (max <= 0: no cap).
// name labels its metrics (e.g. "api").
func TCP(name, addr string, max int) (*Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return Wrap(name, ln, max), nil
}

// Wrap caps the connections accepted from ln.
func Wrap(name string, ln net.Listener, max int) *Listener {
	return &Listener{
		Listener: ln, name: name, max: max, conns: map[*conn]struct{}{}, byRemote: map[string]*conn{},
		evicted: evictedTotal.WithLabelValues(name), rejected: rejectedTotal.WithLabelValues(name),
	}
}

// Max is the cap on open connections (0: none).
func (l *Listener) Max() int { return l.max }

// Evicted is the number of idle connections closed to make room.
func (l *Listener) Evicted() int { return int(l.evictedN.Load()) }

// Open is the number of open connections.
func (l *Listener) Open() int { return int(l.open.Load()) }

// Accept returns the next connection, closing an idle one (or the new one)
// when the cap is reached.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		c := &conn{Conn: nc, l: l, since: time.Now()}
		c.idle.Store(true)
		l.mu.Lock()
		var victim *conn
		if l.max > 0 && len(l.conns) >= l.max {
			for o := range l.conns {
				if o.idle.Load() && (victim == nil || o.since.Before(victim.since)) {
					victim = o
				}
			}
			if victim == nil {
				l.mu.Unlock()
				l.rejected.Inc()
				nc.Close()
				continue
			}
			l.remove(victim)
		}
		l.conns[c] = struct{}{}
		l.byRemote[nc.RemoteAddr().String()] = c
		l.open.Store(int64(len(l.conns)))
		l.mu.Unlock()
		if victim != nil {
			l.evicted.Inc()
			l.evictedN.Add(1)
			victim.Conn.Close()
		}
		return c, nil
	}
}

func (l *Listener) forget(c *conn) {
	l.mu.Lock()
	l.remove(c)
	l.open.Store(int64(len(l.conns)))
	l.mu.Unlock()
}

// remove drops c from the listener's books; l.mu is held.
func (l *Listener) remove(c *conn) {
	if _, ok := l.conns[c]; !ok {
		return
	}
	delete(l.conns, c)
	if k := c.RemoteAddr().String(); l.byRemote[k] == c {
		delete(l.byRemote, k)
	}
}

// conn is an accepted connection; idle says it may be closed to make room.
type conn struct {
	net.Conn
	l     *Listener
	since time.Time // when it last became idle
	idle  atomic.Bool
	// streams counts open gRPC streams (see StatsHandler).
	streams atomic.Int64
	once    sync.Once
}

func (c *conn) Close() error {
	c.once.Do(func() { c.l.forget(c) })
	return c.Conn.Close()
}

func (c *conn) setIdle(idle bool) {
	c.l.mu.Lock()
	if idle && !c.idle.Load() {
		c.since = time.Now()
	}
	c.idle.Store(idle)
	c.l.mu.Unlock()
}

// maxBytesHandler is http.MaxBytesHandler(h, n), which copies every
// request to wrap its body, except for a request that announced a length
// of at most n: net/http's body ends after that length, so the limit holds
// as it is.
func maxBytesHandler(h http.Handler, n int64) http.Handler {
	limited := http.MaxBytesHandler(h, n)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength >= 0 && r.ContentLength <= n {
			h.ServeHTTP(w, r)
			return
		}
		limited.ServeHTTP(w, r)
	})
}

// HTTPServer returns a server for h with the package's timeouts, header and
// body limits, and the connection states ln needs to tell idle connections
// from busy ones. Serve it on ln.
func HTTPServer(h http.Handler, ln *Listener) *http.Server {
	return &http.Server{
		Handler:           maxBytesHandler(h, MaxBodyBytes),
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ConnState: func(nc net.Conn, s http.ConnState) {
			c, ok := nc.(*conn)
			if !ok {
				return
			}
			switch s {
			case http.StateActive, http.StateHijacked:
				c.setIdle(false)
			case http.StateIdle:
				c.setIdle(true)
			}
		},
	}
}

// GRPCServerOptions are the options of a gRPC server serving on l: a
// handshake deadline, closing of connections without streams, keepalive
// pings to find dead peers, a cap on concurrent streams per connection, and
// the stats handler that marks connections with streams busy.
func (l *Listener) GRPCServerOptions(maxStreams uint32) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ConnectionTimeout(HandshakeTimeout),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: MaxConnectionIdle,
			Time:              30 * time.Second,
			Timeout:           10 * time.Second,
		}),
		grpc.MaxConcurrentStreams(maxStreams),
		grpc.StatsHandler(streamTracker{l}),
	}
}

// lookup finds an open connection by its peer address (unique among the
// connections of one listener).
func (l *Listener) lookup(addr net.Addr) *conn {
	if addr == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.byRemote[addr.String()]
}

// streamTracker marks a connection busy while it has an open stream.
type streamTracker struct{ l *Listener }

type connKey struct{}

func (t streamTracker) TagConn(ctx context.Context, info *stats.ConnTagInfo) context.Context {
	if c := t.l.lookup(info.RemoteAddr); c != nil {
		return context.WithValue(ctx, connKey{}, c)
	}
	return ctx
}

func (streamTracker) HandleConn(context.Context, stats.ConnStats) {}

func (streamTracker) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }

func (streamTracker) HandleRPC(ctx context.Context, s stats.RPCStats) {
	c := connFrom(ctx)
	if c == nil {
		return
	}
	switch s.(type) {
	case *stats.Begin:
		if c.streams.Add(1) == 1 {
			c.setIdle(false)
		}
	case *stats.End:
		if c.streams.Add(-1) == 0 {
			c.setIdle(true)
		}
	}
}

// connFrom finds the Listener connection of a gRPC stream.
func connFrom(ctx context.Context) *conn {
	c, _ := ctx.Value(connKey{}).(*conn)
	return c
}
