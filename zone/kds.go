package zone

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"

	"github.com/meshtrace/meshtrace/kds"
	"github.com/meshtrace/meshtrace/store"
)

// setupKDS adds the KDS client when global addresses are configured.
func (z *Zone) setupKDS() {
	if len(z.cfg.Global.Addresses) == 0 {
		z.log.Info("no global address configured: running standalone")
		return
	}
	z.AddRunner(z.runKDS)
}

// KDSClient is the running KDS client (nil when standalone or before start).
func (z *Zone) KDSClient() *kds.Client {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.kds
}

func (z *Zone) token() (string, error) {
	g := z.cfg.Global
	if g.TokenFile == "" {
		return g.Token, nil
	}
	b, err := os.ReadFile(g.TokenFile)
	if err != nil {
		return "", fmt.Errorf("global.tokenFile: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func (z *Zone) runKDS(ctx context.Context, st store.Store) error {
	token, err := z.token()
	if err != nil {
		return fmt.Errorf("zone: %w", err)
	}
	g := z.cfg.Global
	c, err := kds.NewClient(kds.ClientConfig{
		Zone:            z.cfg.Name,
		Addresses:       g.Addresses,
		Token:           token,
		CAFile:          g.CAFile,
		Insecure:        g.Insecure,
		Store:           st,
		Logger:          z.log,
		ProxyReport:     z.ProxyReport,
		Inspect:         z.answerInspect,
		MaxMessageBytes: g.MaxMessageBytes,
		Heartbeat:       g.Heartbeat.D(),
		AuthGrace:       g.AuthGrace.D(),
		Registerer:      z.reg,
	})
	if err != nil {
		return fmt.Errorf("zone: %w", err)
	}
	z.mu.Lock()
	z.kds = c
	z.globalUp = c.Connected
	z.mu.Unlock()
	return c.Run(ctx)
}

// inspectPath matches the read-only inspect endpoints global may forward.
var inspectPath = regexp.MustCompile(`^/meshes/[^/]+/(dataplanes/[^/]+/(_rules|xds)|meshtraces/[^/]+/_resources/dataplanes)$`)

// answerInspect serves global's forwarded inspect GET through the zone's own
// API handler, so global shows exactly what the zone answers.
func (z *Zone) answerInspect(ctx context.Context, path string) (int, []byte) {
	if !inspectPath.MatchString(path) {
		return http.StatusForbidden, []byte(`{"title":"only inspect paths are forwarded to zones"}`)
	}
	z.mu.Lock()
	api := z.api
	z.mu.Unlock()
	if api == nil {
		return http.StatusServiceUnavailable, []byte(`{"title":"zone API not started"}`)
	}
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, path, nil)
	rec := httptest.NewRecorder()
	api.ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes()
}
