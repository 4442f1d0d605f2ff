package inspect

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/restapi"
)

// ErrNotFound is what a Source returns for an unknown proxy or policy.
var ErrNotFound = errors.New("not found")

// Source answers inspect questions; the zone answers from its live proxy
// state, global from its store.
type Source interface {
	DataplaneRules(ctx context.Context, mesh, name string) (DataplaneRules, error)
	PolicyDataplanes(ctx context.Context, mesh, name string) (AffectedDataplanes, error)
}

// XDSSource is implemented by sources that also hold proxies' Envoy config.
type XDSSource interface {
	DataplaneXDS(ctx context.Context, mesh, name string) ([]byte, error)
}

// Routes returns the inspect endpoints for restapi.Config.Routes.
func Routes(src Source) map[string]http.Handler {
	routes := map[string]http.Handler{
		"GET /meshes/{mesh}/dataplanes/{name}/_rules": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mesh, name := r.PathValue("mesh"), r.PathValue("name")
			out, err := src.DataplaneRules(r.Context(), mesh, name)
			if err != nil {
				writeErr(w, err, fmt.Sprintf("dataplane %q in mesh %q", name, mesh))
				return
			}
			restapi.WriteJSON(w, http.StatusOK, out)
		}),
		"GET /meshes/{mesh}/meshtraces/{name}/_resources/dataplanes": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mesh, name := r.PathValue("mesh"), r.PathValue("name")
			out, err := src.PolicyDataplanes(r.Context(), mesh, name)
			if err != nil {
				writeErr(w, err, fmt.Sprintf("meshtrace %q in mesh %q", name, mesh))
				return
			}
			for i := range out.Items {
				out.Items[i].Type = string(resource.TypeDataplane)
			}
			restapi.WriteJSON(w, http.StatusOK, out)
		}),
	}
	if xs, ok := src.(XDSSource); ok {
		routes["GET /meshes/{mesh}/dataplanes/{name}/xds"] = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mesh, name := r.PathValue("mesh"), r.PathValue("name")
			out, err := xs.DataplaneXDS(r.Context(), mesh, name)
			if err != nil {
				writeErr(w, err, fmt.Sprintf("dataplane %q in mesh %q", name, mesh))
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(out)
		})
	}
	return routes
}

func writeErr(w http.ResponseWriter, err error, what string) {
	if errors.Is(err, ErrNotFound) {
		restapi.WriteError(w, restapi.NewError(http.StatusNotFound, what+" not found"))
		return
	}
	restapi.WriteError(w, restapi.StoreError(err, what))
}

// Policy returns the reference of a policy key.
func Policy(k resource.Key) PolicyRef { return PolicyRef{Type: k.Type, Mesh: k.Mesh, Name: k.Name} }
