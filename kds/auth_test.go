package kds_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshtrace/meshtrace/kds"
	kdsv1 "github.com/meshtrace/meshtrace/proto/kds/v1"
	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// rawStream opens a KDS stream by hand, to send what a real client would not.
func (e *env) rawStream(t testing.TB, addr, tok string) (kdsv1.KDS_SyncClient, context.CancelFunc) {
	t.Helper()
	pemBytes, err := os.ReadFile(e.certs.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemBytes)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool})))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	stream, err := kdsv1.NewKDSClient(conn).Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stop := func() { cancel(); _ = conn.Close() }
	t.Cleanup(stop)
	return stream, stop
}

func hello(rev int64) *kdsv1.ZoneMessage {
	return &kdsv1.ZoneMessage{Msg: &kdsv1.ZoneMessage_Hello{Hello: &kdsv1.Hello{LastAppliedRevision: rev}}}
}

func TestTokens(t *testing.T) {
	ctx := context.Background()
	gs := newMemory(t)
	tok := token(t, gs, "east")
	claims, err := kds.ParseZoneToken(tok)
	if err != nil || claims.Zone != "east" || claims.ID == "" {
		t.Fatalf("claims %+v, %v", claims, err)
	}
	if _, err := kds.IssueZoneToken(ctx, gs, "Bad.Zone"); err == nil {
		t.Fatal("issued a token for an invalid zone name")
	}
	// A second replica over the same store accepts it; a token signed with
	// another key, or with edited claims, is refused.
	other := newMemory(t)
	forged := token(t, other, "east")
	// west's claims under east's signature: well formed, wrongly signed.
	parts := strings.Split(tok, ".")
	westParts := strings.Split(token(t, gs, "west"), ".")
	edited := parts[0] + "." + westParts[1] + "." + parts[2]

	e := newEnv(t)
	g := e.startGlobal(gs, "")
	for name, bad := range map[string]string{"foreign key": forged, "edited": edited, "garbage": "nope"} {
		t.Run(name, func(t *testing.T) {
			stream, _ := e.rawStream(t, g.addr, bad)
			_ = stream.Send(hello(0))
			_, err := stream.Recv()
			if status.Code(err) != codes.Unauthenticated {
				t.Fatalf("want Unauthenticated, got %v", err)
			}
		})
	}
	// A client with a forged token never connects: it exits with the reason.
	zs := newMemory(t)
	z := e.startRefusedZone("east", zs, forged, []string{g.addr})
	err = z.exitErr(t, 10*time.Second)
	if !errors.Is(err, kds.ErrRefused) || !strings.Contains(err.Error(), "bad signature") {
		t.Fatalf("want the zone to exit refused (bad signature), got %v", err)
	}
	if z.client.Stats().Sessions != 0 {
		t.Fatal("zone with a forged token connected")
	}
	if len(list(t, zs, resource.TypeMeshTrace)) != 0 {
		t.Fatal("zone with a forged token got data")
	}
}

// A zone configured as east with west's token is refused with a clear error
// and exits (it does not kick west off); west stays connected throughout.
func TestZoneNameMustMatchToken(t *testing.T) {
	e := newEnv(t)
	gs := newMemory(t)
	g := e.startGlobal(gs, "")
	westTok := token(t, gs, "west")
	west := e.startZone("west", newMemory(t), westTok, []string{g.addr})
	waitFor(t, "west to connect", 5*time.Second, west.client.Connected)
	sessions := west.client.Stats().Sessions
	impostor := e.startRefusedZone("east", newMemory(t), westTok, []string{g.addr})
	err := impostor.exitErr(t, 10*time.Second)
	if !errors.Is(err, kds.ErrRefused) || !strings.Contains(err.Error(), `configured as "east" but its token is for zone "west"`) {
		t.Fatalf("want a refusal naming both zones, got %v", err)
	}
	// Positive marker: a change after the refusal reaches west on its first stream.
	rev := put(t, gs, mesh("after"))
	waitApplied(t, rev, 5*time.Second, west)
	if s := west.client.Stats().Sessions; s != sessions {
		t.Fatalf("west was kicked off: %d sessions, want %d", s, sessions)
	}
}

// A Zone an operator disables is cut from its live stream, and the zone
// exits (PermissionDenied).
func TestDisabledZoneIsCut(t *testing.T) {
	e := newEnv(t)
	gs := newMemory(t)
	g := e.startGlobal(gs, "")
	z := e.startRefusedZone("east", newMemory(t), token(t, gs, "east"), []string{g.addr})
	waitFor(t, "east to connect", 5*time.Second, z.client.Connected)
	zr, _, err := gs.Get(context.Background(), resource.Key{Type: resource.TypeZone, Name: "east"})
	if err != nil {
		t.Fatal(err)
	}
	zr.Spec.(*resource.ZoneSpec).Enabled = new(bool)
	put(t, gs, zr)
	err = z.exitErr(t, 10*time.Second)
	if !errors.Is(err, kds.ErrRefused) || !strings.Contains(err.Error(), "disabled") {
		t.Fatalf("want the zone to exit refused (disabled), got %v", err)
	}
}

// failingValues is a store whose GetValue fails while down is set: an
// outage during a token check.
type failingValues struct {
	store.Store
	down atomic.Bool
}

func (f *failingValues) GetValue(ctx context.Context, key string) ([]byte, error) {
	if f.down.Load() {
		return nil, errors.New("etcd: no leader")
	}
	return f.Store.GetValue(ctx, key)
}

// A store outage while a token is checked is Unavailable: the zone keeps
// retrying and connects once the store is back.
func TestStoreOutageDuringTokenCheckIsUnavailable(t *testing.T) {
	e := newEnv(t)
	gs := &failingValues{Store: newMemory(t)}
	tok := token(t, gs, "east")
	gs.down.Store(true)
	g := e.startGlobal(gs, "")
	stream, _ := e.rawStream(t, g.addr, tok)
	_ = stream.Send(hello(0))
	if _, err := stream.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("want Unavailable during the outage, got %v", err)
	}
	z := e.startZone("east", newMemory(t), tok, []string{g.addr})
	gs.down.Store(false)
	waitFor(t, "east to connect after the outage", 10*time.Second, z.client.Connected)
}

// Revoking a token cuts the zone's live stream and refuses it afterwards.
func TestRevokedTokenIsCut(t *testing.T) {
	e := newEnv(t)
	gs := newMemory(t)
	g := e.startGlobal(gs, "")
	tok := token(t, gs, "east")
	z := e.startRefusedZone("east", newMemory(t), tok, []string{g.addr})
	waitFor(t, "east to connect", 5*time.Second, z.client.Connected)
	claims, _ := kds.ParseZoneToken(tok)
	if err := kds.RevokeZoneToken(context.Background(), gs, claims.ID); err != nil {
		t.Fatal(err)
	}
	err := z.exitErr(t, 10*time.Second)
	if !errors.Is(err, kds.ErrRefused) || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("want the zone to exit refused (revoked), got %v", err)
	}
	if s := z.client.Stats().Sessions; s != 1 {
		t.Fatalf("revoked zone reconnected: %d sessions", s)
	}
}

// Uploaded Dataplanes are stored as <zone>.<name>, labelled and tagged with
// the authenticated zone; deletes follow; the ZoneInsight shows the zone.
func TestUploadDataplanes(t *testing.T) {
	e := newEnv(t)
	gs := newMemory(t)
	put(t, gs, mesh("default"))
	g := e.startGlobal(gs, "")
	zs := newMemory(t)
	dp := dataplane("default", "dp-1", "web")
	dp.Labels = map[string]string{resource.LabelZone: "west", "team": "a"}
	dp.Spec.(*resource.DataplaneSpec).Networking.Inbound[0].Tags[resource.TagZone] = "west"
	put(t, zs, dp)
	put(t, zs, dataplane("default", "dp-2", "api"))
	proxies := []resource.ProxyTracing{{Mesh: "default", Name: "dp-1", Backend: resource.BackendZipkin, Collector: "http://zipkin:9411"}}
	z := e.startZone("east", zs, token(t, gs, "east"), []string{g.addr}, func(c *kds.ClientConfig) {
		c.ProxyReport = func() []resource.ProxyTracing { return proxies }
	})
	waitFor(t, "dataplanes on global", 5*time.Second, func() bool { return len(list(t, gs, resource.TypeDataplane)) == 2 })
	got := list(t, gs, resource.TypeDataplane)["Dataplane/default/east.dp-1"]
	if got == nil {
		t.Fatalf("east.dp-1 missing: %v", list(t, gs, resource.TypeDataplane))
	}
	want := map[string]string{resource.LabelZone: "east", resource.LabelOrigin: resource.OriginZone, resource.LabelDisplayName: "dp-1", "team": "a"}
	for k, v := range want {
		if got.Labels[k] != v {
			t.Fatalf("label %s = %q, want %q (%v)", k, got.Labels[k], v, got.Labels)
		}
	}
	if tag := got.Spec.(*resource.DataplaneSpec).Networking.Inbound[0].Tags[resource.TagZone]; tag != "east" {
		t.Fatalf("inbound zone tag %q", tag)
	}
	if _, err := zs.Delete(context.Background(), dp.Key(), store.AnyVersion); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the delete on global", 5*time.Second, func() bool { return len(list(t, gs, resource.TypeDataplane)) == 1 })

	waitFor(t, "the insight", 5*time.Second, func() bool {
		in := insight(t, gs, "east")
		return in != nil && in.Online && len(in.Proxies) == 1 && in.GlobalInstance == g.srv.Instance()
	})
	if _, _, err := gs.Get(context.Background(), resource.Key{Type: resource.TypeZone, Name: "east"}); err != nil {
		t.Fatalf("Zone resource: %v", err)
	}
	z.stop()
	waitFor(t, "the zone offline", 5*time.Second, func() bool {
		in := insight(t, gs, "east")
		return in != nil && !in.Online && !in.DisconnectedTime.IsZero()
	})
	// The zone's Dataplanes stay on global while it is away.
	if len(list(t, gs, resource.TypeDataplane)) != 1 {
		t.Fatal("disconnect deleted dataplanes")
	}
	// Changes made while away arrive with the upload snapshot of the next
	// connection: two new, one deleted (one of the three it then has: within
	// the delete cap).
	put(t, zs, dataplane("default", "dp-3", "db"))
	put(t, zs, dataplane("default", "dp-4", "db"))
	if _, err := zs.Delete(context.Background(), resource.Key{Type: resource.TypeDataplane, Mesh: "default", Name: "dp-2"}, store.AnyVersion); err != nil {
		t.Fatal(err)
	}
	z = e.startZone("east", zs, token(t, gs, "east"), []string{g.addr})
	waitFor(t, "the upload snapshot applied", 5*time.Second, func() bool {
		dps := list(t, gs, resource.TypeDataplane)
		return len(dps) == 2 && dps["Dataplane/default/east.dp-3"] != nil && dps["Dataplane/default/east.dp-4"] != nil
	})
	if v := metricValue(t, g.reg, "meshtrace_kds_streams", ""); v != 1 {
		t.Fatalf("meshtrace_kds_streams = %v", v)
	}
}

// A zone can never overwrite or delete another zone's or global's resources.
func TestZoneCannotTouchOthers(t *testing.T) {
	e := newEnv(t)
	gs := newMemory(t)
	put(t, gs, mesh("default"))
	g := e.startGlobal(gs, "")
	west := e.startZone("west", func() store.Store { s := newMemory(t); put(t, s, dataplane("default", "x", "web")); return s }(), token(t, gs, "west"), []string{g.addr})
	waitFor(t, "west's dataplane", 5*time.Second, func() bool { return len(list(t, gs, resource.TypeDataplane)) == 1 })
	// An operator's resource on global whose name east could map onto.
	gdp := dataplane("default", "east.mine", "svc")
	put(t, gs, gdp)
	_ = west

	stream, _ := e.rawStream(t, g.addr, token(t, gs, "east"))
	if err := stream.Send(hello(0)); err != nil {
		t.Fatal(err)
	}
	welcome := recvUntil(t, stream, func(m *kdsv1.GlobalMessage) bool { return m.GetWelcome() != nil })
	_ = welcome
	dpJSON := func(name, zoneLabel string) []byte {
		r := dataplane("default", name, "web")
		r.Labels = map[string]string{resource.LabelZone: zoneLabel, resource.LabelOrigin: resource.OriginZone}
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	upload := &kdsv1.Batch{Nonce: 1, Resources: []*kdsv1.Resource{
		// Claims to be west's: stored as east's own, under east's prefix.
		{Type: "Dataplane", Mesh: "default", Name: "x", Json: dpJSON("x", "west")},
		// Would land on the operator's east.mine: refused.
		{Type: "Dataplane", Mesh: "default", Name: "mine", Json: dpJSON("mine", "east")},
		// Deletes of others' names map under east's prefix: no effect.
		{Type: "Dataplane", Mesh: "default", Name: "west.x", Delete: true},
		// Meshes are not accepted from zones (global-to-zone only).
		{Type: "Mesh", Name: "p", Json: []byte(`{}`)},
	}}
	if err := stream.Send(&kdsv1.ZoneMessage{Msg: &kdsv1.ZoneMessage_Upload{Upload: upload}}); err != nil {
		t.Fatal(err)
	}
	ack := recvUntil(t, stream, func(m *kdsv1.GlobalMessage) bool { return m.GetUploadAck() != nil }).GetUploadAck()
	rejected := map[string]string{}
	for _, e := range ack.Errors {
		rejected[e.Name] = e.Reason
	}
	if len(rejected) != 2 || !strings.Contains(rejected["mine"], "belongs to global") || !strings.Contains(rejected["p"], "not accepted") {
		t.Fatalf("rejections: %v", rejected)
	}
	all := list(t, gs, resource.TypeDataplane)
	wx := all["Dataplane/default/west.x"]
	if wx == nil || wx.Labels[resource.LabelZone] != "west" {
		t.Fatalf("west.x was touched: %+v", wx)
	}
	ex := all["Dataplane/default/east.x"]
	if ex == nil || ex.Labels[resource.LabelZone] != "east" {
		t.Fatalf("east.x: %+v", ex)
	}
	if m := all["Dataplane/default/east.mine"]; m == nil || m.Labels[resource.LabelOrigin] == resource.OriginZone {
		t.Fatalf("operator's east.mine was overwritten: %+v", m)
	}
	// An upload snapshot naming nothing deletes east's own (the zone is the
	// truth of what it uploads), never west's or global's.
	end := &kdsv1.Batch{Nonce: 2, Snapshot: true, SnapshotEnd: true}
	if err := stream.Send(&kdsv1.ZoneMessage{Msg: &kdsv1.ZoneMessage_Upload{Upload: end}}); err != nil {
		t.Fatal(err)
	}
	recvUntil(t, stream, func(m *kdsv1.GlobalMessage) bool { return m.GetUploadAck() != nil })
	all = list(t, gs, resource.TypeDataplane)
	if len(all) != 2 || all["Dataplane/default/west.x"] == nil || all["Dataplane/default/east.mine"] == nil {
		t.Fatalf("empty upload snapshot: want west.x and east.mine left, got %v", all)
	}
}

func recvUntil(t testing.TB, stream kdsv1.KDS_SyncClient, match func(*kdsv1.GlobalMessage) bool) *kdsv1.GlobalMessage {
	t.Helper()
	for {
		m, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if match(m) {
			return m
		}
	}
}

func TestEnsureCerts(t *testing.T) {
	dir := t.TempDir()
	a, err := kds.EnsureCerts(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(a.Cert)
	b, err := kds.EnsureCerts(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(b.Cert)
	if string(before) != string(after) {
		t.Fatal("second start regenerated the certificate")
	}
	if fi, _ := os.Stat(a.Key); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v", fi.Mode())
	}
	if err := os.Remove(filepath.Join(dir, "tls.key")); err != nil {
		t.Fatal(err)
	}
	if _, err := kds.EnsureCerts(dir, nil); err == nil {
		t.Fatal("an incomplete set was accepted")
	}
	// A zone pinning another CA cannot connect.
	e := newEnv(t)
	gs := newMemory(t)
	g := e.startGlobal(gs, "")
	other := newEnv(t)
	z := other.startZone("east", newMemory(t), token(t, gs, "east"), []string{g.addr})
	// Positive marker: the zone tried (and failed the TLS handshake) several times.
	waitFor(t, "3 dials", 10*time.Second, func() bool { return z.client.Stats().Dials >= 3 })
	if z.client.Stats().Sessions != 0 {
		t.Fatal("zone trusting another CA connected")
	}
}

// A policy created on a zone (kuma.io/origin: zone) syncs up to global under
// Kuma 2.7's hashed name, labelled with its zone, origin and display name;
// it is not sent down to other zones; a change or delete on the zone follows
// on global; the same name in another zone is another resource.
func TestZoneOriginatedPoliciesSyncUp(t *testing.T) {
	e := newEnv(t)
	gs := newMemory(t)
	put(t, gs, mesh("default"))
	g := e.startGlobal(gs, "")
	local := func(v int) *resource.Resource {
		r := meshTrace("default", "local-trace", v)
		r.Labels = map[string]string{resource.LabelOrigin: resource.OriginZone}
		return r
	}
	east, west := newMemory(t), newMemory(t)
	put(t, east, mesh("default"))
	put(t, east, local(1))
	put(t, west, local(2))
	ze := e.startZone("east", east, token(t, gs, "east"), []string{g.addr})
	zw := e.startZone("west", west, token(t, gs, "west"), []string{g.addr})
	eastName, westName := kds.HashedName("default", "local-trace", "east", ""), kds.HashedName("default", "local-trace", "west", "")
	if eastName == westName || !strings.HasPrefix(eastName, "local-trace-") || len(eastName) != len("local-trace-")+16 {
		t.Fatalf("hashed names %q, %q", eastName, westName)
	}
	waitFor(t, "both zones' policies on global", 10*time.Second, func() bool {
		all := list(t, gs, resource.TypeMeshTrace)
		return all["MeshTrace/default/"+eastName] != nil && all["MeshTrace/default/"+westName] != nil
	})
	got := list(t, gs, resource.TypeMeshTrace)["MeshTrace/default/"+eastName]
	if got.Labels[resource.LabelOrigin] != resource.OriginZone || got.Labels[resource.LabelZone] != "east" || got.Labels[resource.LabelDisplayName] != "local-trace" {
		t.Fatalf("labels on global: %v", got.Labels)
	}
	// Not sent down: after a later change on global reached both zones,
	// neither zone holds the other's copy.
	rev := put(t, gs, meshTrace("default", "from-global", 1))
	waitApplied(t, rev, 10*time.Second, ze, zw)
	for name, zs := range map[string]store.Store{"east": east, "west": west} {
		for k := range list(t, zs, resource.TypeMeshTrace) {
			if strings.Contains(k, "local-trace-") {
				t.Fatalf("zone %s got the synced-up copy %s", name, k)
			}
		}
	}
	// A change on the zone follows; a delete too.
	put(t, east, local(50))
	waitFor(t, "the change on global", 10*time.Second, func() bool {
		r := list(t, gs, resource.TypeMeshTrace)["MeshTrace/default/"+eastName]
		return r != nil && r.Spec.(*resource.MeshTraceSpec).Default.Sampling.Overall.IntVal == 50
	})
	if _, err := east.Delete(context.Background(), local(0).Key(), store.AnyVersion); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the delete on global", 10*time.Second, func() bool {
		return list(t, gs, resource.TypeMeshTrace)["MeshTrace/default/"+eastName] == nil
	})
	if list(t, gs, resource.TypeMeshTrace)["MeshTrace/default/"+westName] == nil {
		t.Fatal("west's policy went with east's")
	}
	// West's ZoneInsight counts what west has on global.
	waitFor(t, "west's uploaded count", 10*time.Second, func() bool {
		ins := insight(t, gs, "west")
		return ins != nil && ins.Uploaded["MeshTrace"] == 1
	})
}

// A zone that reconnects resumes its uploads from the revision global
// applied (kept on global under the zone store's id): only what changed
// while it was away goes up, not every resource again.
func TestUploadsResume(t *testing.T) {
	e := newEnv(t)
	gs := newMemory(t)
	put(t, gs, mesh("default"))
	g := e.startGlobal(gs, "")
	zs := newMemory(t)
	for i := range 20 {
		put(t, zs, dataplane("default", fmt.Sprintf("dp-%d", i), "web"))
	}
	tok := token(t, gs, "east")
	z := e.startZone("east", zs, tok, []string{g.addr})
	waitFor(t, "20 dataplanes on global", 10*time.Second, func() bool { return len(list(t, gs, resource.TypeDataplane)) == 20 })
	if s := z.client.Stats(); s.Uploaded != 20 {
		t.Fatalf("first connect uploaded %d, want 20", s.Uploaded)
	}
	z.stop()
	changed := dataplane("default", "dp-3", "web")
	changed.Spec.(*resource.DataplaneSpec).Networking.Address = "10.0.0.99"
	put(t, zs, changed)
	if _, err := zs.Delete(context.Background(), resource.Key{Type: resource.TypeDataplane, Mesh: "default", Name: "dp-4"}, store.AnyVersion); err != nil {
		t.Fatal(err)
	}
	z = e.startZone("east", zs, tok, []string{g.addr})
	waitFor(t, "the change and the delete on global", 10*time.Second, func() bool {
		all := list(t, gs, resource.TypeDataplane)
		dp := all["Dataplane/default/east.dp-3"]
		return len(all) == 19 && dp != nil && dp.Spec.(*resource.DataplaneSpec).Networking.Address == "10.0.0.99"
	})
	if s := z.client.Stats(); s.Uploaded != 2 {
		t.Fatalf("resume uploaded %d resources, want 2 (one change, one delete)", s.Uploaded)
	}
}
