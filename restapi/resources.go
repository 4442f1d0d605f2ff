package restapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// List paging limits.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// describe names a resource for messages: `MeshTrace "t" in mesh "default"`.
func describe(k resource.Key) string {
	if k.Mesh == "" {
		return fmt.Sprintf("%s %q", k.Type, k.Name)
	}
	return fmt.Sprintf("%s %q in mesh %q", k.Type, k.Name, k.Mesh)
}

func keyOf(d *resource.Descriptor, r *http.Request) resource.Key {
	k := resource.Key{Type: d.Type, Name: r.PathValue("name")}
	if d.Scope == resource.ScopeMesh {
		k.Mesh = r.PathValue("mesh")
	}
	return k
}

func (h *Handler) getHandler(d *resource.Descriptor) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := keyOf(d, r)
		res, _, err := h.cfg.Store.Get(r.Context(), key)
		if err != nil {
			WriteError(w, StoreError(err, describe(key)))
			return
		}
		if wantEffective(r) {
			res = resource.Effective(res)
		}
		WriteJSON(w, http.StatusOK, res)
	})
}

// listResponse is Kuma's list shape.
type listResponse struct {
	Total int               `json:"total"`
	Items []json.RawMessage `json:"items"`
	Next  *string           `json:"next"`
}

func (h *Handler) listHandler(d *resource.Descriptor, inMesh bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		opts, size, apiErr := parseListQuery(r.URL.Query())
		if apiErr != nil {
			WriteError(w, apiErr)
			return
		}
		if inMesh {
			opts.Mesh = r.PathValue("mesh")
		}
		page, err := h.cfg.Store.List(r.Context(), d.Type, opts)
		if err != nil {
			WriteError(w, StoreError(err, d.Plural))
			return
		}
		out := listResponse{Total: page.Total, Items: make([]json.RawMessage, 0, len(page.Items))}
		effective := wantEffective(r)
		for _, item := range page.Items {
			if effective {
				item = resource.Effective(item)
			}
			b, err := json.Marshal(item)
			if err != nil {
				WriteError(w, NewError(http.StatusInternalServerError, fmt.Sprintf("encode %s: %v", describe(item.Key()), err)))
				return
			}
			out.Items = append(out.Items, b)
		}
		if next := opts.Offset + len(page.Items); len(page.Items) > 0 && next < page.Total {
			u := nextURL(r, next, size)
			out.Next = &u
		}
		WriteJSON(w, http.StatusOK, out)
	})
}

// parseListQuery reads size, offset and filter[labels.K]=V.
func parseListQuery(q url.Values) (store.ListOptions, int, *Error) {
	opts := store.ListOptions{Limit: DefaultPageSize}
	var bad []resource.Violation
	if s := q.Get("size"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxPageSize {
			bad = append(bad, resource.Violation{Field: "size", Message: fmt.Sprintf("must be an integer from 1 to %d, got %q", MaxPageSize, s)})
		} else {
			opts.Limit = n
		}
	}
	if s := q.Get("offset"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			bad = append(bad, resource.Violation{Field: "offset", Message: fmt.Sprintf("must be a non-negative integer, got %q", s)})
		} else {
			opts.Offset = n
		}
	}
	for k, vs := range q {
		if !strings.HasPrefix(k, "filter[") {
			continue
		}
		label, ok := strings.CutPrefix(k, "filter[labels.")
		if ok {
			label, ok = strings.CutSuffix(label, "]")
		}
		if !ok || label == "" {
			bad = append(bad, resource.Violation{Field: k, Message: "unsupported filter: write filter[labels.KEY]=VALUE"})
			continue
		}
		if opts.Labels == nil {
			opts.Labels = map[string]string{}
		}
		opts.Labels[label] = vs[len(vs)-1]
	}
	if len(bad) > 0 {
		return opts, 0, NewError(http.StatusBadRequest, "invalid list parameters", bad...)
	}
	return opts, opts.Limit, nil
}

// nextURL is the absolute URL of the page starting at offset, keeping filters.
func nextURL(r *http.Request, offset, size int) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "http" || p == "https" {
		scheme = p
	}
	q := r.URL.Query()
	q.Set("offset", strconv.Itoa(offset))
	q.Set("size", strconv.Itoa(size))
	return scheme + "://" + r.Host + r.URL.Path + "?" + q.Encode()
}

// EffectiveParam, set to true on a GET, returns specs with their defaults
// filled in (the form zones use) instead of as applied.
const EffectiveParam = "effective"

func wantEffective(r *http.Request) bool {
	if r.URL.RawQuery == "" {
		return false
	}
	return parseBool(r.URL.Query().Get(EffectiveParam))
}

func isDryRun(r *http.Request) bool {
	var v string
	if r.URL.RawQuery != "" {
		v = r.URL.Query().Get("dry-run")
	}
	if v == "" {
		v = r.Header.Get(DryRunHeader)
	}
	return parseBool(v)
}

// parseBool is strconv.ParseBool, false when it fails; without the error
// it allocates for "", the value of a parameter or header not sent.
func parseBool(v string) bool {
	if v == "" {
		return false
	}
	b, _ := strconv.ParseBool(v)
	return b
}

// writeResult is the body of a successful write.
type writeResult struct {
	// Warnings are what admission noted without refusing (e.g. a residency
	// violation in a zone in Audit mode).
	Warnings []string `json:"warnings,omitempty"`
}

func (h *Handler) putHandler(d *resource.Descriptor) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status, warnings, apiErr := h.put(d, w, r)
		if apiErr != nil {
			WriteError(w, apiErr)
			return
		}
		writeWriteResult(w, status, warnings)
	})
}

// emptyWriteResult is writeResult{} as WriteJSON writes it.
var emptyWriteResult = []byte("{}\n")

// writeWriteResult answers a write; most have no warnings, and their
// answer is always the same bytes.
func writeWriteResult(w http.ResponseWriter, status int, warnings []string) {
	if len(warnings) > 0 {
		WriteJSON(w, status, writeResult{Warnings: warnings})
		return
	}
	// What Header().Set would store, without a new slice per response
	// (nothing changes a header's values in place).
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(status)
	_, _ = w.Write(emptyWriteResult)
}

var jsonContentType = []string{"application/json"}

// readBody reads a request body of at most limit bytes, in one allocation
// when the client said its length, and closes it once read whole.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	b, err := readBodyOpen(w, r, limit)
	if err == nil {
		// net/http then knows it need not drain what is left (its
		// io.CopyN of nothing, after the handler, costs an allocation).
		_ = r.Body.Close()
	}
	return b, err
}

func readBodyOpen(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if n := r.ContentLength; n > 0 && n <= limit {
		// net/http's body ends after the length the client said (a
		// server's Request.Body never reads past it), so the limit holds
		// without a MaxBytesReader.
		buf := make([]byte, 0, n+1)
		for {
			m, err := r.Body.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+m]
			if err == io.EOF {
				return buf, nil
			}
			if err != nil {
				return buf, err
			}
			if len(buf) == cap(buf) {
				// More than announced (a Body that is not net/http's): read
				// it all again, what was read first included, under the limit.
				read := io.MultiReader(bytes.NewReader(buf), r.Body)
				return io.ReadAll(http.MaxBytesReader(w, io.NopCloser(read), limit))
			}
		}
	}
	return io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
}

// admit asks Config.Admit about a write; done is never nil.
func (h *Handler) admit(ctx context.Context, old, cur *resource.Resource) ([]string, func(int64), *Error) {
	if h.cfg.Admit == nil {
		return nil, func(int64) {}, nil
	}
	warnings, done, err := h.cfg.Admit(ctx, old, cur)
	if done == nil {
		done = func(int64) {}
	}
	if err != nil {
		done(0)
		var ae *Error
		if errors.As(err, &ae) {
			return nil, done, ae
		}
		return nil, done, NewError(http.StatusInternalServerError, "admission: "+err.Error())
	}
	return warnings, done, nil
}

func (h *Handler) put(d *resource.Descriptor, w http.ResponseWriter, r *http.Request) (int, []string, *Error) {
	ctx := r.Context()
	key := keyOf(d, r)
	body, err := readBody(w, r, h.cfg.MaxBodyBytes)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return 0, nil, NewError(http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", mbe.Limit))
		}
		return 0, nil, NewError(http.StatusBadRequest, "read request body: "+err.Error())
	}
	res, err := resource.Decode(body)
	if err != nil {
		var ie *resource.InvalidError
		if errors.As(err, &ie) {
			return 0, nil, NewError(http.StatusBadRequest, "cannot decode the request body", ie.Violations...)
		}
		return 0, nil, NewError(http.StatusBadRequest, "cannot decode the request body: "+err.Error())
	}
	if apiErr := matchURL(d, key, res); apiErr != nil {
		return 0, nil, apiErr
	}
	spec, apiErr := h.checkWrite(res)
	if apiErr != nil {
		return 0, nil, apiErr
	}
	// The stored version is not read first: admission decides from its own
	// view of the store (see Config.Admit).
	warnings, done, apiErr := h.admit(ctx, nil, res)
	if apiErr != nil {
		return 0, nil, apiErr
	}
	dry := isDryRun(r)
	// What PutBatch takes for a batch of one, in one allocation.
	one := &struct {
		preparer
		rs    [1]*resource.Resource
		specs [1][]byte
	}{preparer: preparer{h: h, now: time.Now().UTC()}, rs: [1]*resource.Resource{res}}
	opts := one.options(dry)
	if spec != nil {
		one.specs[0] = spec
		opts.SpecJSON = one.specs[:]
	}
	results, err := h.cfg.Store.PutBatch(ctx, one.rs[:], opts)
	done(results0Revision(results))
	if err != nil {
		return 0, nil, h.writeError(err, key)
	}
	status := http.StatusOK
	if results[0].Created {
		status = http.StatusCreated
	}
	if dry {
		w.Header().Set(DryRunHeader, "true")
		return status, warnings, nil
	}
	// The audit line of every write.
	msg := "resource updated"
	if results[0].Created {
		msg = "resource created"
	}
	h.audit.Audit(msg, string(key.Type), key.Mesh, key.Name, results[0].Revision)
	return status, warnings, nil
}

func results0Revision(rs []store.BatchResult) int64 {
	if len(rs) == 0 {
		return 0
	}
	return rs[0].Revision
}

// checkWrite prepares a decoded resource for storing, as every write path
// does: validated (with its defaults filled in, see resource.Validate),
// labels set, Mutate applied. The spec is stored as applied, without the
// defaults.
// Nothing here reads the store. It returns the spec's JSON when the size
// check encoded it (resource.MarshalSpec; nil otherwise), for the store
// to write instead of encoding it again (store.BatchOptions.SpecJSON):
// nothing after changes a spec (Validate only reads it, labels touch the
// envelope, admission and Prepare only read it), so the bytes stay the
// spec's; a Mutate hook may change anything, so with one the store encodes
// the spec again.
func (h *Handler) checkWrite(res *resource.Resource) ([]byte, *Error) {
	spec, apiErr := h.checkSize(res)
	if apiErr != nil {
		return nil, apiErr
	}
	if err := resource.Validate(res); err != nil {
		var ie *resource.InvalidError
		if errors.As(err, &ie) {
			return nil, NewError(http.StatusBadRequest, describe(res.Key())+" is invalid", ie.Violations...)
		}
		return nil, NewError(http.StatusBadRequest, err.Error())
	}
	h.setLabels(res)
	if h.cfg.Mutate != nil {
		h.cfg.Mutate(res)
		// Mutate may change anything.
		spec = nil
	}
	return spec, nil
}

// batchOptions are the store-side checks of a write: the mesh exists, a
// read-only resource is not overwritten, and the creation time of an
// existing resource is kept. They run inside the store's transaction, so a
// write needs no read before it.
func (h *Handler) batchOptions(now time.Time, dry bool) store.BatchOptions {
	p := &preparer{h: h, now: now}
	return p.options(dry)
}

// preparer is the Prepare of one request's writes (see batchOptions); now
// is the time they are stamped with, never earlier than when it was taken.
type preparer struct {
	h   *Handler
	now time.Time
}

func (p *preparer) options(dry bool) store.BatchOptions {
	return store.BatchOptions{RequireMesh: true, DryRun: dry, Prepare: p.prepare}
}

func (p *preparer) prepare(r, existing *resource.Resource) error {
	// Taken here, once the store state is known: an update is never
	// stamped earlier than the creation it follows.
	if t := time.Now().UTC(); t.After(p.now) {
		p.now = t
	}
	r.CreationTime, r.ModificationTime = p.now, p.now
	if existing == nil {
		return nil
	}
	if p.h.cfg.ReadOnly != nil && p.h.cfg.ReadOnly(existing) {
		return p.h.readOnlyError(existing)
	}
	// A corrupt value being overwritten has no creation time to keep.
	if !existing.CreationTime.IsZero() {
		r.CreationTime = existing.CreationTime
	}
	return nil
}

// writeError translates a PutBatch failure about key into an API error.
func (h *Handler) writeError(err error, key resource.Key) *Error {
	if errors.Is(err, store.ErrNoMesh) {
		return NewError(http.StatusBadRequest, fmt.Sprintf("mesh %q does not exist: create it first", key.Mesh),
			resource.Violation{Field: "mesh", Message: fmt.Sprintf("mesh %q does not exist", key.Mesh)})
	}
	return StoreError(err, describe(key))
}

// matchURL checks the body names the resource the URL names. An empty body
// name or mesh is taken from the URL.
func matchURL(d *resource.Descriptor, key resource.Key, res *resource.Resource) *Error {
	mismatch := func(field, got, want string) *Error {
		msg := fmt.Sprintf("%s %q in the body does not match %q in the URL", field, got, want)
		return NewError(http.StatusBadRequest, msg, resource.Violation{Field: field, Message: msg})
	}
	if res.Type != d.Type {
		return mismatch("type", string(res.Type), string(d.Type))
	}
	if res.Name == "" {
		res.Name = key.Name
	}
	if res.Name != key.Name {
		return mismatch("name", res.Name, key.Name)
	}
	if d.Scope == resource.ScopeGlobal {
		if res.Mesh != "" {
			msg := fmt.Sprintf("%s is not mesh-scoped: remove mesh %q", d.Type, res.Mesh)
			return NewError(http.StatusBadRequest, msg, resource.Violation{Field: "mesh", Message: msg})
		}
		return nil
	}
	if res.Mesh == "" {
		res.Mesh = key.Mesh
	}
	if res.Mesh != key.Mesh {
		return mismatch("mesh", res.Mesh, key.Mesh)
	}
	return nil
}

// setLabels sets the labels Kuma 2.7 sets on a write: kuma.io/origin: zone
// on a zone; nothing on global (the labels stay as the user wrote them).
func (h *Handler) setLabels(res *resource.Resource) {
	if h.cfg.Mode != ModeZone {
		return
	}
	if res.Labels == nil {
		res.Labels = map[string]string{}
	}
	res.Labels[resource.LabelOrigin] = resource.OriginZone
}

func (h *Handler) readOnlyError(existing *resource.Resource) *Error {
	where := "this " + h.cfg.Mode + " control plane"
	if h.cfg.Mode == ModeZone && h.cfg.Zone != "" {
		where = fmt.Sprintf("zone %q", h.cfg.Zone)
	}
	detail := fmt.Sprintf("%s is read-only on %s", describe(existing.Key()), where)
	if o := existing.Labels[resource.LabelOrigin]; o != "" && o != h.cfg.Mode {
		detail += fmt.Sprintf(": it is synced from %s; change it there", o)
	}
	return NewError(http.StatusMethodNotAllowed, detail)
}

func (h *Handler) deleteHandler(d *resource.Descriptor) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		key := keyOf(d, r)
		existing, _, err := h.cfg.Store.Get(ctx, key)
		// A corrupt value (see store.ErrCorrupt) can be deleted: nothing reads
		// it, so there is nothing to admit, and the delete still expects its
		// revision.
		var corrupt *store.CorruptError
		if errors.As(err, &corrupt) {
			existing, err = &resource.Resource{Meta: resource.Meta{Type: key.Type, Mesh: key.Mesh, Name: key.Name, Version: corrupt.Revision}}, nil
		}
		if err != nil {
			WriteError(w, StoreError(err, describe(key)))
			return
		}
		if h.cfg.ReadOnly != nil && h.cfg.ReadOnly(existing) {
			WriteError(w, h.readOnlyError(existing))
			return
		}
		if d.Type == resource.TypeMesh {
			if apiErr := h.checkMeshEmpty(r, key.Name); apiErr != nil {
				WriteError(w, apiErr)
				return
			}
		}
		var warnings []string
		done := func(int64) {}
		if corrupt == nil {
			var apiErr *Error
			warnings, done, apiErr = h.admit(ctx, existing, nil)
			if apiErr != nil {
				WriteError(w, apiErr)
				return
			}
		}
		if isDryRun(r) {
			done(0)
			w.Header().Set(DryRunHeader, "true")
			writeWriteResult(w, http.StatusOK, warnings)
			return
		}
		rev, err := h.cfg.Store.Delete(ctx, key, existing.Version)
		if err != nil {
			done(0)
			WriteError(w, StoreError(err, describe(key)))
			return
		}
		done(rev)
		h.audit.Audit("resource deleted", string(key.Type), key.Mesh, key.Name, rev)
		writeWriteResult(w, http.StatusOK, warnings)
	})
}

// checkMeshEmpty refuses to delete a mesh that still holds resources, naming
// up to a few of each type.
func (h *Handler) checkMeshEmpty(r *http.Request, mesh string) *Error {
	const show = 5
	var causes []resource.Violation
	total := 0
	for _, d := range resource.Types() {
		if d.Scope != resource.ScopeMesh {
			continue
		}
		page, err := h.cfg.Store.List(r.Context(), d.Type, store.ListOptions{Mesh: mesh, Limit: show})
		if err != nil {
			return StoreError(err, fmt.Sprintf("Mesh %q", mesh))
		}
		total += page.Total
		for _, it := range page.Items {
			causes = append(causes, resource.Violation{Field: d.Plural, Message: fmt.Sprintf("%s %q is in mesh %q", d.Type, it.Name, mesh)})
		}
		if page.Total > len(page.Items) {
			causes = append(causes, resource.Violation{Field: d.Plural, Message: fmt.Sprintf("and %d more %s", page.Total-len(page.Items), d.Plural)})
		}
	}
	if total == 0 {
		return nil
	}
	return NewError(http.StatusBadRequest,
		fmt.Sprintf("mesh %q still has %d resources: delete them first (meshes are not deleted in cascade)", mesh, total), causes...)
}

// checkSize refuses a resource larger than MaxResourceBytes. It returns
// the spec's JSON it encoded to measure (nil when it measured nothing).
func (h *Handler) checkSize(r *resource.Resource) ([]byte, *Error) {
	if h.cfg.MaxResourceBytes <= 0 {
		return nil, nil
	}
	// What json.Marshal(r) would give, without its second pass over the
	// bytes, and keeping the spec's part.
	spec, err := resource.MarshalSpec(r)
	if err != nil {
		return nil, nil
	}
	b, err := resource.MarshalJSONWithSpec(r, spec)
	if err != nil || len(b) <= h.cfg.MaxResourceBytes {
		if r.Spec == nil {
			// MarshalSpec encoded the zero spec; the store writes none.
			spec = nil
		}
		return spec, nil
	}
	msg := fmt.Sprintf("the resource is %d bytes; the largest one that can be synced to zones is %d bytes", len(b), h.cfg.MaxResourceBytes)
	return nil, NewError(http.StatusRequestEntityTooLarge, msg, resource.Violation{Field: "spec", Message: msg})
}
