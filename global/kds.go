package global

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshtrace/meshtrace/kds"
	"github.com/meshtrace/meshtrace/listen"
	"github.com/meshtrace/meshtrace/restapi"
	"github.com/meshtrace/meshtrace/store"
)

// KDSTLSDir is where generated KDS certificates live under dataDir.
const KDSTLSDir = "kds-tls"

// kdsMaxStreams caps concurrent streams on one KDS connection.
const kdsMaxStreams = 8

// kdsState is what the KDS runner publishes once its listener is bound.
type kdsState struct {
	ready  chan struct{}
	addr   string
	caFile string
	server *kds.Server
}

// setupKDS adds the KDS gRPC server to Run and the zone-token route to the API.
func (g *Global) setupKDS() {
	g.kds = &kdsState{ready: make(chan struct{})}
	g.AddRunner(g.runKDS)
	g.AddRoute("POST /tokens/zone", http.HandlerFunc(g.zoneTokenHandler))
	g.AddRoute("DELETE /tokens/zone/{id}", http.HandlerFunc(g.revokeZoneTokenHandler))
	g.AddRoute("POST /tokens/zone/signing-key/rotate", http.HandlerFunc(g.rotateSigningKeyHandler))
	g.AddRoute("POST /zones/{name}/release-deletes", http.HandlerFunc(g.releaseDeletesHandler))
	g.AddRoute("GET /admin/corrupt-values", http.HandlerFunc(g.corruptValuesHandler))
}

// corruptValuesHandler is GET /admin/corrupt-values: the stored values reads
// skip (undecodable, or naming another resource than their key) and that
// therefore never reach a zone, with the revision and the reason.
func (g *Global) corruptValuesHandler(w http.ResponseWriter, r *http.Request) {
	items := []store.CorruptValue{}
	if cr, ok := g.Store().(store.CorruptReporter); ok {
		items = append(items, cr.Corrupt()...)
	}
	restapi.WriteJSON(w, http.StatusOK, map[string]any{"total": len(items), "items": items})
}

// releaseDeletesHandler is POST /zones/{name}/release-deletes: the zone
// applies the snapshot deletes it holds (ZoneInsight held) at its next
// snapshot, which follows at once (its stream is cut on every replica).
func (g *Global) releaseDeletesHandler(w http.ResponseWriter, r *http.Request) {
	zone := r.PathValue("name")
	if err := kds.ValidateZoneName(zone); err != nil {
		restapi.WriteError(w, restapi.NewError(http.StatusBadRequest, err.Error()))
		return
	}
	var id string
	var err error
	if srv := g.KDSServer(); srv != nil {
		id, err = srv.ReleaseDeletes(r.Context(), zone)
	} else {
		id, err = kds.ReleaseDeletes(r.Context(), g.Store(), zone)
	}
	if err != nil {
		restapi.WriteError(w, restapi.StoreError(err, "zone "+zone))
		return
	}
	g.log.Warn("held snapshot deletes released by an operator", "zone", zone, "release", id)
	restapi.WriteJSON(w, http.StatusOK, map[string]string{"zone": zone, "release": id})
}

// KDSStarted is closed once the KDS server listens.
func (g *Global) KDSStarted() <-chan struct{} { return g.kds.ready }

// KDSAddr is the bound KDS address ("" before KDSStarted).
func (g *Global) KDSAddr() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.kds.addr
}

// KDSCAFile is the CA certificate zones pin ("" when KDS runs without TLS or
// with operator-provided files that include no CA).
func (g *Global) KDSCAFile() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.kds.caFile
}

// KDSServer is the running KDS server (nil before KDSStarted).
func (g *Global) KDSServer() *kds.Server {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.kds.server
}

// IssueZoneToken issues a signed token a zone authenticates with, valid
// for kds.DefaultTokenValidity.
func (g *Global) IssueZoneToken(ctx context.Context, zone string) (string, error) {
	return g.IssueZoneTokenFor(ctx, zone, kds.DefaultTokenValidity)
}

// IssueZoneTokenFor issues a zone token valid for validFor.
func (g *Global) IssueZoneTokenFor(ctx context.Context, zone string, validFor time.Duration) (string, error) {
	st := g.Store()
	if st == nil {
		return "", errors.New("global: not started")
	}
	return kds.IssueZoneTokenFor(ctx, st, zone, validFor)
}

func (g *Global) kdsCredentials() (credentials.TransportCredentials, string, error) {
	c := g.cfg.KDS
	if c.Insecure {
		return insecure.NewCredentials(), "", nil
	}
	certFile, keyFile, caFile := c.TLSCertFile, c.TLSKeyFile, ""
	if certFile == "" {
		hosts := []string{"localhost", "127.0.0.1"}
		if h, err := os.Hostname(); err == nil {
			hosts = append(hosts, h)
		}
		if host, _, err := net.SplitHostPort(c.Address); err == nil && host != "" && host != "0.0.0.0" && host != "::" {
			hosts = append(hosts, host)
		}
		hosts = append(hosts, c.TLSHosts...)
		files, err := kds.EnsureCerts(filepath.Join(g.cfg.DataDir, KDSTLSDir), hosts)
		if err != nil {
			return nil, "", err
		}
		certFile, keyFile, caFile = files.Cert, files.Key, files.CA
	}
	creds, err := kds.ServerCredentials(certFile, keyFile)
	return creds, caFile, err
}

func (g *Global) runKDS(ctx context.Context) error {
	srv, err := kds.NewServer(kds.ServerConfig{
		Store:           g.Store(),
		Logger:          g.log,
		MaxMessageBytes: g.cfg.KDS.MaxMessageBytes,
		Heartbeat:       g.cfg.KDS.Heartbeat.D(),
		BatchGap:        g.cfg.KDS.BatchGap.D(),
		BatchStretch:    g.cfg.KDS.BatchStretch.D(),
		Registerer:      g.reg,
	})
	if err != nil {
		return fmt.Errorf("global: %w", err)
	}
	creds, caFile, err := g.kdsCredentials()
	if err != nil {
		return fmt.Errorf("global: kds tls: %w", err)
	}
	ln, err := listen.TCP("kds", g.cfg.KDS.Address, g.cfg.KDS.MaxConnections)
	if err != nil {
		return fmt.Errorf("global: kds.address: %w", err)
	}
	// A zone needs one stream (Sync); a few more leave room for reconnects.
	opts := append(srv.GRPCServerOptions(), ln.GRPCServerOptions(kdsMaxStreams)...)
	gs := grpc.NewServer(append(opts, grpc.Creds(creds))...)
	srv.Register(gs)
	g.mu.Lock()
	g.kds.addr, g.kds.caFile, g.kds.server = ln.Addr().String(), caFile, srv
	g.mu.Unlock()
	close(g.kds.ready)
	g.log.Info("kds server listening", "address", ln.Addr().String(), "tls", !g.cfg.KDS.Insecure, "instance", srv.Instance())

	errc := make(chan error, 2)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { errc <- srv.Run(runCtx) }()
	go func() { errc <- gs.Serve(ln) }()
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	// Close zone streams first so GracefulStop does not wait on them.
	cancel()
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(ShutdownTimeout):
		gs.Stop()
	}
	if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("global: kds: %w", err)
	}
	return nil
}

type zoneTokenRequest struct {
	Zone string `json:"zone"`
	// ValidFor is a Go duration ("24h"); empty means kds.DefaultTokenValidity,
	// as Kuma's API.
	ValidFor string `json:"validFor"`
}

// parseDuration reads an optional duration field of a request body.
func parseDuration(field, v string, def time.Duration) (time.Duration, *restapi.Error) {
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, restapi.NewError(http.StatusBadRequest, fmt.Sprintf("%s: %q is not a duration like \"24h\"", field, v))
	}
	return d, nil
}

// zoneTokenHandler is POST /tokens/zone {"zone": "west", "validFor": "24h"}
// (as kumactl generate zone-token): it answers the token as text.
func (g *Global) zoneTokenHandler(w http.ResponseWriter, r *http.Request) {
	var req zoneTokenRequest
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	if err != nil {
		restapi.WriteError(w, restapi.NewError(http.StatusBadRequest, "body must be JSON like {\"zone\": \"west\", \"validFor\": \"24h\"}: "+err.Error()))
		return
	}
	validFor, verr := parseDuration("validFor", req.ValidFor, kds.DefaultTokenValidity)
	if verr == nil && validFor == 0 {
		verr = restapi.NewError(http.StatusBadRequest, "validFor: must be positive")
	}
	if verr != nil {
		restapi.WriteError(w, verr)
		return
	}
	token, err := g.IssueZoneTokenFor(r.Context(), req.Zone, validFor)
	if err != nil {
		if verr := kds.ValidateZoneName(req.Zone); verr != nil {
			restapi.WriteError(w, restapi.NewError(http.StatusBadRequest, verr.Error()))
			return
		}
		restapi.WriteError(w, restapi.StoreError(err, "zone token"))
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.WriteString(w, token)
}

// revokeZoneTokenHandler is DELETE /tokens/zone/{id}: the token id (printed by
// `meshtrace-cp global token zone`, and in global's logs when a zone
// connects) is refused from now on and live streams using it are cut.
func (g *Global) revokeZoneTokenHandler(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := kds.RevokeZoneToken(r.Context(), g.Store(), id); err != nil {
		restapi.WriteError(w, restapi.StoreError(err, "zone token "+id))
		return
	}
	g.log.Info("zone token revoked", "token", id)
	restapi.WriteJSON(w, http.StatusOK, struct{}{})
}

type rotateKeyRequest struct {
	// GracePeriod is how long tokens of the previous key stay valid (Go
	// duration; empty means kds.DefaultKeyGracePeriod, "0s" retires it now).
	GracePeriod string `json:"gracePeriod"`
}

// rotateSigningKeyHandler is POST /tokens/zone/signing-key/rotate
// {"gracePeriod": "1h"}: new zone tokens are signed with a new key; the
// previous key's tokens stay valid for the grace period, then are refused
// and their streams cut. It answers kds.KeyRotation.
func (g *Global) rotateSigningKeyHandler(w http.ResponseWriter, r *http.Request) {
	var req rotateKeyRequest
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err == nil && len(bytes.TrimSpace(body)) > 0 {
		err = json.Unmarshal(body, &req)
	}
	if err != nil {
		restapi.WriteError(w, restapi.NewError(http.StatusBadRequest, "body must be JSON like {\"gracePeriod\": \"1h\"}: "+err.Error()))
		return
	}
	grace, verr := parseDuration("gracePeriod", req.GracePeriod, kds.DefaultKeyGracePeriod)
	if verr != nil {
		restapi.WriteError(w, verr)
		return
	}
	rot, err := kds.RotateSigningKey(r.Context(), g.Store(), grace)
	if err != nil {
		restapi.WriteError(w, restapi.StoreError(err, "zone token signing key"))
		return
	}
	g.log.Info("zone token signing key rotated", "kid", rot.KeyID, "previous", rot.PreviousKeyID, "previousRetiresAt", rot.PreviousRetires)
	restapi.WriteJSON(w, http.StatusOK, rot)
}
