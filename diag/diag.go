// Package diag serves a control plane's /healthz, /readyz and /metrics.
package diag

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/meshtrace/meshtrace/restapi"
	"github.com/meshtrace/meshtrace/store"
)

// Check is one readiness condition: Probe returns what to show under Name, or
// why the process is not ready. An Info check is only reported (on /healthz
// and /readyz) and never makes the process unready.
type Check struct {
	Name  string
	Probe func(ctx context.Context) (any, error)
	Info  bool
}

// StoreCheck is ready when the store answers; it shows the store revision.
func StoreCheck(st store.Store) Check {
	return Check{Name: "revision", Probe: func(ctx context.Context) (any, error) { return st.Revision(ctx) }}
}

// Handler serves /healthz (the process is up, with the Info checks' values),
// /readyz (every other check passes, within 2 s) and Prometheus /metrics of
// reg.
func Handler(reg *prometheus.Registry, checks ...Check) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		body := map[string]any{"status": "ok"}
		for _, c := range checks {
			if c.Info {
				body[c.Name] = infoValue(ctx, c)
			}
		}
		restapi.WriteJSON(w, http.StatusOK, body)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		body := map[string]any{}
		var problems []string
		for _, c := range checks {
			if c.Info {
				body[c.Name] = infoValue(ctx, c)
				continue
			}
			v, err := c.Probe(ctx)
			if err != nil {
				problems = append(problems, c.Name+": "+err.Error())
				continue
			}
			body[c.Name] = v
		}
		if len(problems) > 0 {
			body["status"] = "unavailable"
			body["error"] = strings.Join(problems, "; ")
			restapi.WriteJSON(w, http.StatusServiceUnavailable, body)
			return
		}
		body["status"] = "ready"
		restapi.WriteJSON(w, http.StatusOK, body)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return mux
}

// infoValue is what an Info check shows: its value, or its error as text.
func infoValue(ctx context.Context, c Check) any {
	v, err := c.Probe(ctx)
	if err != nil {
		return map[string]any{"ok": false, "error": err.Error()}
	}
	return v
}
