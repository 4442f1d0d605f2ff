package restapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/meshtrace/meshtrace/parallel"
	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// Bulk apply limits.
const (
	// DefaultMaxBulkBodyBytes caps the body of POST /_apply.
	DefaultMaxBulkBodyBytes = 32 << 20
	// MaxBulkItems caps the resources of one POST /_apply.
	MaxBulkItems = 10000
)

// Statuses of one item of a bulk apply.
const (
	BulkCreated = "created" // written as new (or would be, in a dry run)
	BulkUpdated = "updated" // written over an existing resource (or would be)
	BulkInvalid = "invalid" // refused before anything was written
	BulkFailed  = "failed"  // refused by the store while its transaction was written
	BulkAborted = "aborted" // not written: another item of its transaction failed
	BulkSkipped = "skipped" // not attempted: another item was invalid, or an earlier transaction failed
)

// Progress of a bulk apply: a client sending ProgressHeader: true gets, after
// every transaction written, an informational response (102 Processing)
// whose AppliedHeader says "written/total". Proxies may drop them; the final
// answer is the same either way.
const (
	ProgressHeader = "X-Meshtrace-Progress"
	AppliedHeader  = "X-Meshtrace-Applied"
)

// BulkRequest is the body of POST /_apply: resources in Universal (or
// Kubernetes) form, the same "items" shape a list answers.
type BulkRequest struct {
	Items []json.RawMessage `json:"items"`
}

// BulkItem is the outcome of one item.
type BulkItem struct {
	Index  int           `json:"index"`
	Type   resource.Type `json:"type,omitempty"`
	Mesh   string        `json:"mesh,omitempty"`
	Name   string        `json:"name,omitempty"`
	Status string        `json:"status"`
	// Revision is the store revision the item was written at.
	Revision int64  `json:"revision,omitempty"`
	Error    *Error `json:"error,omitempty"`
	// Warnings are what admission noted without refusing.
	Warnings []string `json:"warnings,omitempty"`
}

// BulkResponse answers POST /_apply. On failure it also carries the
// std-errors fields (type, status, title, detail, causes) of the first
// failure, so clients that only know the error shape still show it.
type BulkResponse struct {
	*Error
	DryRun   bool       `json:"dryRun,omitempty"`
	Revision int64      `json:"revision,omitempty"`
	Created  int        `json:"created"`
	Updated  int        `json:"updated"`
	Items    []BulkItem `json:"items"`
}

// bulkHandler is POST /_apply: every item is decoded and validated, then
// checked against the store (mesh exists, not read-only, size) in read-only
// transactions, and only when all pass written in transactions of at most
// store.MaxTxnOps operations: each transaction lands whole or not at all, and
// the first failing one stops the apply. ?dry-run=true stops after the checks.
func (h *Handler) bulkHandler(w http.ResponseWriter, r *http.Request) {
	resp, status := h.bulk(w, r)
	WriteJSON(w, status, resp)
}

func (h *Handler) bulk(w http.ResponseWriter, r *http.Request) (*BulkResponse, int) {
	dry := isDryRun(r)
	resp := &BulkResponse{DryRun: dry, Items: []BulkItem{}}
	fail := func(e *Error) (*BulkResponse, int) {
		resp.Error = e
		return resp, e.Status
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBulkBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fail(NewError(http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes: split the apply", mbe.Limit)))
		}
		return fail(NewError(http.StatusBadRequest, "read request body: "+err.Error()))
	}
	var req BulkRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return fail(NewError(http.StatusBadRequest, `body must be JSON like {"items": [resource, ...]}: `+err.Error()))
	}
	if len(req.Items) > MaxBulkItems {
		return fail(NewError(http.StatusRequestEntityTooLarge, fmt.Sprintf("%d items: at most %d per request", len(req.Items), MaxBulkItems)))
	}

	// 1. Decode and validate every item (on every core: items are
	// independent); nothing is read or written yet.
	type decoded struct {
		res  *resource.Resource
		spec []byte // see checkWrite
		err  *Error
	}
	items := make([]decoded, len(req.Items))
	parallel.For(len(req.Items), parallelFrom, func(i int) {
		items[i].res, items[i].spec, items[i].err = h.decodeBulkItem(req.Items[i])
	})
	resp.Items = make([]BulkItem, len(req.Items))
	rs := make([]*resource.Resource, 0, len(req.Items))
	specs := make([][]byte, 0, len(req.Items))
	seen := make(map[resource.Key]int, len(req.Items))
	var firstBad *Error
	for i := range req.Items {
		it := &resp.Items[i]
		it.Index, it.Status = i, BulkSkipped
		res, apiErr := items[i].res, items[i].err
		if res != nil {
			it.Type, it.Mesh, it.Name = res.Type, res.Mesh, res.Name
			if j, dup := seen[res.Key()]; dup && apiErr == nil {
				apiErr = NewError(http.StatusBadRequest, fmt.Sprintf("%s is also item %d: apply each resource once", describe(res.Key()), j))
			}
			seen[res.Key()] = i
		}
		if apiErr != nil {
			it.Status, it.Error = BulkInvalid, apiErr
			if firstBad == nil {
				firstBad = apiErr
			}
			continue
		}
		rs = append(rs, res)
		specs = append(specs, items[i].spec)
	}
	if firstBad == nil && h.cfg.Admit != nil {
		var done func(int64)
		done, firstBad = h.admitBulk(r.Context(), rs, resp.Items)
		defer func() { done(resp.Revision) }()
	}
	if firstBad != nil {
		return fail(bulkFailure(resp, firstBad, "no item was applied"))
	}

	// 2. Check against the store (read-only), 3. write.
	opts := h.batchOptions(time.Now().UTC(), true)
	opts.SpecJSON = specs
	results, err := h.cfg.Store.PutBatch(r.Context(), rs, opts)
	if err == nil && !dry {
		opts.DryRun = false
		if v, _ := strconv.ParseBool(r.Header.Get(ProgressHeader)); v {
			opts.Progress = func(n int) {
				w.Header().Set(AppliedHeader, fmt.Sprintf("%d/%d", n, len(rs)))
				w.WriteHeader(http.StatusProcessing)
				w.Header().Del(AppliedHeader)
			}
		}
		results, err = h.cfg.Store.PutBatch(r.Context(), rs, opts)
	}
	if results == nil {
		return fail(StoreError(err, "bulk apply"))
	}
	var first *Error
	for i, res := range results {
		it := &resp.Items[i]
		it.Revision = res.Revision
		switch {
		case res.Err == nil && res.Created:
			it.Status = BulkCreated
			resp.Created++
		case res.Err == nil:
			it.Status = BulkUpdated
			resp.Updated++
		case errors.Is(res.Err, store.ErrNotAttempted):
			it.Status = BulkSkipped
		case errors.Is(res.Err, store.ErrAborted):
			it.Status = BulkAborted
		default:
			it.Status = BulkFailed
			if opts.DryRun {
				it.Status = BulkInvalid
			}
			it.Error = h.writeError(res.Err, rs[i].Key())
			if first == nil {
				first = it.Error
			}
		}
		resp.Revision = max(resp.Revision, res.Revision)
	}
	if err != nil {
		if first == nil {
			first = StoreError(err, "bulk apply")
		}
		if opts.DryRun {
			// Nothing was written: every item that passed is skipped.
			for i := range resp.Items {
				if resp.Items[i].Error == nil {
					resp.Items[i].Status = BulkSkipped
				}
			}
			resp.Created, resp.Updated = 0, 0
			return fail(bulkFailure(resp, first, "no item was applied"))
		}
		return fail(bulkFailure(resp, first, fmt.Sprintf("%d items were applied before the failure", resp.Created+resp.Updated)))
	}
	if dry {
		w.Header().Set(DryRunHeader, "true")
	} else {
		h.log.Info("bulk apply", "created", resp.Created, "updated", resp.Updated, "rev", resp.Revision)
	}
	return resp, http.StatusOK
}

// parallelFrom is the number of bulk items from which they are decoded on
// every core.
const parallelFrom = 32

// bulkFailure is the top-level error of a failed bulk apply: the status of
// the first failure and a count of the failed items.
func bulkFailure(resp *BulkResponse, first *Error, applied string) *Error {
	var causes []resource.Violation
	failed := 0
	for _, it := range resp.Items {
		if it.Error == nil {
			continue
		}
		failed++
		for _, c := range it.Error.Causes {
			causes = append(causes, resource.Violation{Field: fmt.Sprintf("items[%d].%s", it.Index, c.Field), Message: c.Message})
		}
		if len(it.Error.Causes) == 0 {
			causes = append(causes, resource.Violation{Field: fmt.Sprintf("items[%d]", it.Index), Message: it.Error.Detail})
		}
	}
	detail := fmt.Sprintf("%d of %d items failed (first: %s); %s", failed, len(resp.Items), first.Detail, applied)
	return NewError(first.Status, detail, causes...)
}

// decodeBulkItem decodes and checks one item as a PUT of it would.
func (h *Handler) decodeBulkItem(raw json.RawMessage) (*resource.Resource, []byte, *Error) {
	res, err := resource.Decode(raw)
	if err != nil {
		var ie *resource.InvalidError
		if errors.As(err, &ie) {
			return nil, nil, NewError(http.StatusBadRequest, "cannot decode the item", ie.Violations...)
		}
		return nil, nil, NewError(http.StatusBadRequest, "cannot decode the item: "+err.Error())
	}
	if !h.writable[res.Type] {
		return res, nil, NewError(http.StatusMethodNotAllowed, fmt.Sprintf("%s resources are read-only on this %s control plane", res.Type, h.cfg.Mode))
	}
	if res.Name == "" {
		return res, nil, NewError(http.StatusBadRequest, "name must be set", resource.Violation{Field: "name", Message: "must be defined"})
	}
	spec, apiErr := h.checkWrite(res)
	if apiErr != nil {
		return res, nil, apiErr
	}
	return res, spec, nil
}

// admitBulk asks admission about every item, one at a time against the
// stored state (not against the other items of the batch). The decision on
// the last item stays open (admission serializes writes) until the returned
// done is called with the revision the batch was written at.
func (h *Handler) admitBulk(ctx context.Context, rs []*resource.Resource, items []BulkItem) (func(int64), *Error) {
	if h.cfg.AdmitBatch != nil {
		return h.admitBatch(ctx, rs, items)
	}
	done := func(int64) {}
	var first *Error
	for i, res := range rs {
		warnings, d, apiErr := h.admit(ctx, nil, res)
		if apiErr != nil {
			items[i].Status, items[i].Error = BulkInvalid, apiErr
			if first == nil {
				first = apiErr
			}
			continue
		}
		items[i].Warnings = warnings
		if i < len(rs)-1 {
			d(0)
		} else {
			done = d
		}
	}
	if first != nil {
		done(0)
		return func(int64) {}, first
	}
	return done, nil
}

// admitBatch asks Config.AdmitBatch about the whole batch at once.
func (h *Handler) admitBatch(ctx context.Context, rs []*resource.Resource, items []BulkItem) (func(int64), *Error) {
	warnings, itemErrs, done, err := h.cfg.AdmitBatch(ctx, rs)
	if done == nil {
		done = func(int64) {}
	}
	asError := func(err error) *Error {
		var ae *Error
		if errors.As(err, &ae) {
			return ae
		}
		return NewError(http.StatusInternalServerError, "admission: "+err.Error())
	}
	if err != nil {
		done(0)
		return func(int64) {}, asError(err)
	}
	var first *Error
	for i := range rs {
		if i < len(warnings) {
			items[i].Warnings = warnings[i]
		}
		if i < len(itemErrs) && itemErrs[i] != nil {
			e := asError(itemErrs[i])
			items[i].Status, items[i].Error = BulkInvalid, e
			if first == nil {
				first = e
			}
		}
	}
	if first != nil {
		done(0)
		return func(int64) {}, first
	}
	return done, nil
}
