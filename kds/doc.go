// Package kds is the sync protocol between the global control plane and its
// zones: one bidirectional gRPC stream per zone (proto/kds/v1).
//
// It does not know what it syncs. Every registered resource type whose
// resource.Descriptor.Sync is SyncGlobalToZone travels down, every type with
// SyncZoneToGlobal travels up (ZoneInsight excepted: global writes it from the
// stream's state and the zone's ZoneReport).
//
// Versions are global store revisions. A zone opens with the last revision it
// applied; global answers with the changes since (store history), or with a
// full snapshot when the zone is new, the history is compacted or the zone's
// cursor belongs to another store. Snapshots are applied by diff; deletes are
// explicit events, and a snapshot that would delete more than a configured
// share of the receiver's copies is refused and reported.
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
