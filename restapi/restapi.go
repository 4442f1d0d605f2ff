// Package restapi serves resources from a store.Store over the REST paths and
// shapes kumactl 2.7 uses. The global CP and the zone CP both mount it; Config
// says which types are writable, which stored resources are read-only and how
// a write is adjusted before it is stored.
//
// Routes, for every registered type by its plural:
//
//	GET    /                                        index (product, version, mode)
//	GET    /_resources                              the registered types
//	mesh-scoped types (e.g. meshtraces, dataplanes):
//	PUT    /meshes/{mesh}/{plural}/{name}           create (201) or update (200)
//	GET    /meshes/{mesh}/{plural}/{name}
//	DELETE /meshes/{mesh}/{plural}/{name}
//	GET    /meshes/{mesh}/{plural}                  list in one mesh
//	GET    /{plural}                                list across meshes
//	global-scoped types (meshes, zones, zone-insights):
//	PUT|GET|DELETE /{plural}/{name}, GET /{plural}
//
// Lists take size (1..1000, default 100), offset and label filters written
// filter[labels.KEY]=VALUE; they answer {"total", "items", "next"} where next
// is the URL of the next page or null. PUT and DELETE take ?dry-run=true (or
// the header X-Meshtrace-Dry-Run: true) to validate and admit without storing.
//
// Bulk apply (our own; Kuma has none): POST /_apply with {"items": [resource,
// ...]} (the shape a list answers, Universal or Kubernetes items) validates
// every item, checks each against the store (its mesh exists, it is not
// read-only), and only then writes them in transactions of at most 128
// operations, each landing whole or not at all; the first failing
// transaction stops the apply. It answers {"created", "updated", "revision",
// "items": [{"index", "type", "mesh", "name", "status", "error"}]} with
// status created, updated, invalid, failed, aborted or skipped per item, and
// on failure the std-errors fields of the first failure. ?dry-run=true stops
// after the checks.
//
// Writes (any method but GET, HEAD and OPTIONS) need "Authorization: Bearer
// <Token>" when Config.Token is set; reads are always open.
//
// Deleting a Mesh that still holds resources is refused (400, naming them)
// rather than cascading: deleting a mesh should never silently remove
// policies that zones are enforcing.
package restapi

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// Modes of the control plane serving the API.
const (
	ModeGlobal = "global"
	ModeZone   = "zone"
)

// Identity reported on GET /. kumactl 2.7.29 accepts a server without a
// warning when its tagline is "Kuma" and its version is kumactl's own (or
// contains "preview"); product says what really answers.
const (
	Product = "meshtrace"
	Tagline = "Kuma"
	// Version is the Kuma release whose API this one follows.
	Version = "2.7.29"
)

// DefaultMaxBodyBytes caps a request body.
const DefaultMaxBodyBytes = 1 << 20

// DryRunHeader, when "true" on a PUT, validates without storing.
const DryRunHeader = "X-Meshtrace-Dry-Run"

// Config configures a Handler.
type Config struct {
	Store  store.Store
	Logger hclog.Logger
	// Mode is ModeGlobal (default) or ModeZone; it decides the kuma.io/origin
	// label of writes and is reported on GET /.
	Mode string
	// Zone names the zone in ModeZone.
	Zone string
	// InstanceID and ClusterID are reported on GET /; InstanceID defaults to
	// the hostname.
	InstanceID string
	ClusterID  string
	// Writable lists the types accepting PUT and DELETE; nil means Mesh and
	// every policy type. Other types answer 405.
	Writable []resource.Type
	// ReadOnly, when set, is asked about the stored resource before an update
	// or delete; true answers 405 (e.g. a zone's copies of global policies).
	ReadOnly func(r *resource.Resource) bool
	// Mutate, when set, adjusts a resource after labels are set and before it
	// is stored (e.g. a zone forcing kuma.io/zone).
	Mutate func(r *resource.Resource)
	// Token is the bearer token writes need; "" turns auth off.
	Token string
	// OpenWrites, when Token is "" and OpenWrites is not nil, are the only
	// types that may still be written; other writes answer 403 (a zone
	// without a token lets proxies register but not change policies).
	OpenWrites []resource.Type
	// Registerer receives the HTTP metrics; nil keeps them unregistered.
	Registerer prometheus.Registerer
	// Routes adds handlers by ServeMux pattern (e.g.
	// "GET /meshes/{mesh}/dataplanes/{name}/_rules"); they get the same auth
	// and metrics as built-in routes.
	Routes map[string]http.Handler
	// MaxBodyBytes caps request bodies (413 above); 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Admit, when set, decides on every write (PUT and DELETE, dry runs
	// included) after validation, just before it is stored: cur is the one to
	// store (nil on delete); old is the stored resource on delete and nil on
	// PUT, which does not read before it writes (the store compares versions
	// in its transaction): an Admit that needs the stored version of a PUT
	// must keep its own view of the store. An error
	// refuses the write (an *Error is answered as is, others as 500).
	// Warnings are answered in the body ({"warnings": [...]}). done, when not
	// nil, is called once with the revision written, 0 when nothing was.
	Admit func(ctx context.Context, old, cur *resource.Resource) (warnings []string, done func(rev int64), err error)
	// AdmitBatch, when set, decides on the documents of one POST /_apply
	// together (as they will all be stored) instead of Admit one by one:
	// itemErrs[i] refuses document i, warnings[i] are its warnings; err
	// refuses the whole request. done is as for Admit.
	AdmitBatch func(ctx context.Context, rs []*resource.Resource) (warnings [][]string, itemErrs []error, done func(rev int64), err error)
	// MaxBulkBodyBytes caps the body of POST /_apply (413 above); 0 means
	// DefaultMaxBulkBodyBytes.
	MaxBulkBodyBytes int64
	// MaxResourceBytes, when set, refuses (413) a resource whose Universal
	// JSON is larger: on global, what one KDS message can carry, so nothing
	// is accepted that could never reach the zones.
	MaxResourceBytes int
}

// Handler is the REST API. It is safe for concurrent use.
type Handler struct {
	cfg      Config
	log      hclog.Logger
	audit    auditLogger
	mux      *http.ServeMux
	writable map[resource.Type]bool
	hostname string
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// New validates cfg and builds the handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Store == nil {
		return nil, errors.New("restapi: Config.Store is required")
	}
	switch cfg.Mode {
	case "":
		cfg.Mode = ModeGlobal
	case ModeGlobal, ModeZone:
	default:
		return nil, fmt.Errorf("restapi: Config.Mode %q: want %q or %q", cfg.Mode, ModeGlobal, ModeZone)
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxBulkBodyBytes <= 0 {
		cfg.MaxBulkBodyBytes = DefaultMaxBulkBodyBytes
	}
	h := &Handler{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux(), writable: map[resource.Type]bool{}}
	if a, ok := cfg.Logger.(auditLogger); ok {
		h.audit = a
	} else {
		h.audit = hclogAudit{cfg.Logger}
	}
	h.hostname, _ = os.Hostname()
	if h.cfg.InstanceID == "" {
		h.cfg.InstanceID = h.hostname
	}
	if cfg.Writable == nil {
		for _, d := range resource.Types() {
			if d.Type == resource.TypeMesh || d.IsPolicy {
				h.writable[d.Type] = true
			}
		}
	} else {
		for _, t := range cfg.Writable {
			if _, ok := resource.Lookup(t); !ok {
				return nil, fmt.Errorf("restapi: Config.Writable: unknown type %q", t)
			}
			h.writable[t] = true
		}
	}
	if err := h.initMetrics(); err != nil {
		return nil, err
	}
	if err := h.routes(); err != nil {
		return nil, err
	}
	return h, nil
}

func (h *Handler) initMetrics() error {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshtrace_http_requests_total",
		Help: "REST API requests by status code, method and route pattern.",
	}, []string{"code", "method", "route"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "meshtrace_http_request_duration_seconds",
		Help:    "REST API request latency by route pattern.",
		Buckets: prometheus.DefBuckets,
	}, []string{"route"})
	h.requests, h.duration = requests, duration
	if h.cfg.Registerer == nil {
		return nil
	}
	var err error
	if h.requests, err = register(h.cfg.Registerer, requests); err != nil {
		return err
	}
	h.duration, err = register(h.cfg.Registerer, duration)
	return err
}

// register registers c, reusing an identical collector already registered
// (two handlers on one registry share their metrics).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("restapi: register metrics: %w", err)
	}
	return c, nil
}

func (h *Handler) routes() error {
	h.handle("GET /{$}", http.HandlerFunc(h.index))
	h.handle("GET /_resources", http.HandlerFunc(h.types))
	h.handle("POST /_apply", http.HandlerFunc(h.bulkHandler))
	for _, d := range resource.Types() {
		item, list := "/"+d.Plural+"/{name}", "/"+d.Plural
		if d.Scope == resource.ScopeMesh {
			item, list = "/meshes/{mesh}/"+d.Plural+"/{name}", "/meshes/{mesh}/"+d.Plural
			h.handle("GET /"+d.Plural, h.listHandler(d, false))
		}
		h.handle("GET "+item, h.getHandler(d))
		h.handle("GET "+list, h.listHandler(d, d.Scope == resource.ScopeMesh))
		if h.writable[d.Type] && h.cfg.Token == "" && h.cfg.OpenWrites != nil && !slices.Contains(h.cfg.OpenWrites, d.Type) {
			nt := h.needsToken(d)
			h.handle("PUT "+item, nt)
			h.handle("DELETE "+item, nt)
		} else if h.writable[d.Type] {
			h.handle("PUT "+item, h.putHandler(d))
			h.handle("DELETE "+item, h.deleteHandler(d))
		} else {
			ro := h.notWritable(d)
			h.handle("PUT "+item, ro)
			h.handle("DELETE "+item, ro)
		}
	}
	for pattern, handler := range h.cfg.Routes {
		if err := h.safeHandle(pattern, handler); err != nil {
			return err
		}
	}
	h.handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, NewError(http.StatusNotFound, fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path)))
	}))
	return nil
}

// needsToken refuses writes of d while the API has no token.
func (h *Handler) needsToken(d *resource.Descriptor) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, NewError(http.StatusForbidden, fmt.Sprintf("writing %s needs a token: set api.token and send it as \"Authorization: Bearer <token>\"", d.Plural)))
	})
}

// safeHandle registers an extra route, turning ServeMux's panic on a bad or
// conflicting pattern into an error.
func (h *Handler) safeHandle(pattern string, handler http.Handler) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("restapi: route %q: %v", pattern, p)
		}
	}()
	h.handle(pattern, handler)
	return nil
}

// handle registers handler under pattern wrapped with metrics and auth.
func (h *Handler) handle(pattern string, handler http.Handler) {
	route := pattern
	if pattern == "/" {
		route = "unmatched"
	}
	// The route's series are looked up once each, when first used.
	duration := sync.OnceValue(func() prometheus.Observer { return h.duration.WithLabelValues(route) })
	var counters sync.Map // requestLabels -> prometheus.Counter
	h.mux.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		if isWrite(r.Method) && !h.authorized(r) {
			rec.Header().Set("WWW-Authenticate", `Bearer realm="meshtrace"`)
			WriteError(rec, NewError(http.StatusUnauthorized, "writes need a valid token: send \"Authorization: Bearer <admin token>\""))
		} else {
			handler.ServeHTTP(rec, r)
		}
		took := time.Since(start)
		labels := requestLabels{rec.status, methodLabel(r.Method)}
		c, ok := counters.Load(labels)
		if !ok {
			c, _ = counters.LoadOrStore(labels, h.requests.WithLabelValues(strconv.Itoa(labels.code), labels.method, route))
		}
		c.(prometheus.Counter).Inc()
		duration().Observe(took.Seconds())
		if h.log.IsDebug() {
			h.log.Debug("request", "method", r.Method, "path", r.URL.Path, "route", route, "code", rec.status, "took", took)
		}
	}))
}

// auditLogger logs the audit line of a change to a resource at Info, as
// Info(msg, "type", typ, "mesh", mesh, "name", name, "rev", rev) does.
// The loggers config.LogConfig builds have it, writing the same bytes
// without boxing the fields into interfaces; other loggers get hclogAudit.
type auditLogger interface {
	Audit(msg, typ, mesh, name string, rev int64)
}

// hclogAudit is the audit line through Info.
type hclogAudit struct{ log hclog.Logger }

func (a hclogAudit) Audit(msg, typ, mesh, name string, rev int64) {
	// Checked first: the fields are boxed even when Info drops the line.
	if a.log.IsInfo() {
		a.log.Info(msg, "type", typ, "mesh", mesh, "name", name, "rev", rev)
	}
}

// requestLabels are a route's request counter labels.
type requestLabels struct {
	code   int
	method string
}

// ServeHTTP serves the API.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// methodLabel keeps the metrics' method label to a known set.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPost, http.MethodDelete,
		http.MethodPatch, http.MethodOptions:
		return m
	}
	return "OTHER"
}

func isWrite(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

func (h *Handler) authorized(r *http.Request) bool {
	if h.cfg.Token == "" {
		return true
	}
	auth := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(tok)), []byte(h.cfg.Token)) == 1
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

type indexResponse struct {
	Hostname    string `json:"hostname"`
	Tagline     string `json:"tagline"`
	Product     string `json:"product"`
	Version     string `json:"version"`
	BasedOnKuma string `json:"basedOnKuma"`
	InstanceID  string `json:"instanceId"`
	ClusterID   string `json:"clusterId"`
	Mode        string `json:"mode"`
	Zone        string `json:"zone,omitempty"`
}

func (h *Handler) index(w http.ResponseWriter, r *http.Request) {
	WriteJSON(w, http.StatusOK, indexResponse{
		Hostname:    h.hostname,
		Tagline:     Tagline,
		Product:     Product,
		Version:     Version,
		BasedOnKuma: Version,
		InstanceID:  h.cfg.InstanceID,
		ClusterID:   h.cfg.ClusterID,
		Mode:        h.cfg.Mode,
		Zone:        h.cfg.Zone,
	})
}

type typeDescription struct {
	Name     string `json:"name"`
	Scope    string `json:"scope"`
	ReadOnly bool   `json:"readOnly"`
	Path     string `json:"path"`
	Policy   bool   `json:"policy"`
}

func (h *Handler) types(w http.ResponseWriter, r *http.Request) {
	out := struct {
		Resources []typeDescription `json:"resources"`
	}{Resources: []typeDescription{}}
	for _, d := range resource.Types() {
		scope := "Mesh"
		if d.Scope == resource.ScopeGlobal {
			scope = "Global"
		}
		out.Resources = append(out.Resources, typeDescription{
			Name: string(d.Type), Scope: scope, ReadOnly: !h.writable[d.Type], Path: d.Plural, Policy: d.IsPolicy,
		})
	}
	WriteJSON(w, http.StatusOK, out)
}

func (h *Handler) notWritable(d *resource.Descriptor) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, NewError(http.StatusMethodNotAllowed,
			fmt.Sprintf("%s resources are read-only on this %s control plane", d.Type, h.cfg.Mode)))
	})
}
