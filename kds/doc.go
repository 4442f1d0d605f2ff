// Package kds is the sync protocol between the global control plane and its
// zones: one bidirectional gRPC stream per zone (proto/kds/v1).
//
// It does not know what it syncs. Every registered resource type whose
// resource.Descriptor.Sync has SyncGlobalToZone travels down, every type with
// SyncZoneToGlobal travels up (ZoneInsight excepted: global writes it from the
// stream's state and the zone's ZoneReport); policies do both (SyncBoth):
// one created on a zone goes up under HashedName, read-only on global, and
// never down to other zones.
//
// Versions are global store revisions. One store watch per server (feed.go)
// feeds every zone stream's coalescing queue; its cursor moves only at
// watch-response boundaries, and idle heartbeats carry it, so a quiet zone's
// cursor keeps up with the store. A zone opens with the last revision it
// applied; global answers with the changes since (a diff of two key
// listings), or with a full snapshot when the zone is new, the history is
// compacted or the zone's cursor belongs to another store. Snapshots are
// applied by diff; their deletes are held (reported, kept across restarts,
// released by an operator) only when global looks like it lost its data:
// store id changed, revision behind the zone's cursor, or empty while the
// zone is not. Both sides announce their message caps in the handshake and
// cut batches to the smaller. Corrupt stored values never travel.
//
// Both halves of a stream are built from the same parts: a coalescing queue
// and a pusher sending one batch at a time (queue.go), liveness, retried
// commits (commit.go) and one receiver (receive.go), parametrised by what a
// side accepts from its peer: global takes uploads of types synced up
// (uploader), a zone takes types synced down (applier).
//
// Global wiring:
//
//	srv, err := kds.NewServer(kds.ServerConfig{Store: st, Logger: log, Registerer: reg})
//	certs, err := kds.EnsureCerts(dir, hosts)
//	creds, err := kds.ServerCredentials(certs.Cert, certs.Key)
//	g := grpc.NewServer(append(srv.GRPCServerOptions(), grpc.Creds(creds))...)
//	srv.Register(g)
//	// errgroup: g.Serve(lis) and srv.Run(ctx); when ctx ends Run closes the
//	// streams, then g.GracefulStop() with a deadline, then g.Stop().
//
// Tokens: kds.IssueZoneToken(ctx, st, zone) and kds.RevokeZoneToken(ctx, st, id).
//
// Zone wiring:
//
//	c, err := kds.NewClient(kds.ClientConfig{Zone: name, Addresses: addrs,
//		Token: token, CAFile: caFile, Store: zoneStore, Logger: log,
//		ProxyReport: proxies, OnApplied: onApplied, Registerer: reg})
//	// errgroup: c.Run(ctx)
package kds
