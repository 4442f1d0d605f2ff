package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"

	"github.com/meshtrace/meshtrace/resource"
)

// Bulk apply sizes: documents per POST /_apply while writing (a progress
// line follows each), and per request while validating.
const (
	bulkWriteBatch    = 250
	bulkValidateBatch = 1000
	// bulkProgressFrom is the document count from which apply prints progress.
	bulkProgressFrom = 300
)

// bulkOneRequestMax is the most documents sent in one POST /_apply: the
// server then validates them all before writing any, and reports progress
// per transaction. Larger files are validated in a dry run first, then
// written in batches. A variable for tests.
var bulkOneRequestMax = 2000

// Headers of bulk progress (restapi.ProgressHeader and AppliedHeader).
const (
	progressHeader = "X-Meshtrace-Progress"
	appliedHeader  = "X-Meshtrace-Applied"
)

// errNoBulk means the server has no POST /_apply (e.g. a Kuma control plane).
var errNoBulk = errors.New("no bulk apply endpoint")

// bulkItem and bulkResponse mirror restapi's BulkItem and BulkResponse.
type bulkItem struct {
	Index    int       `json:"index"`
	Status   string    `json:"status"`
	Revision int64     `json:"revision"`
	Error    *APIError `json:"error"`
	Warnings []string  `json:"warnings"`
}

type bulkResponse struct {
	Created int        `json:"created"`
	Updated int        `json:"updated"`
	Items   []bulkItem `json:"items"`
}

// applyBulk applies several documents through POST /_apply: every document
// is validated by the server (a dry run) before any is written; then they
// are written in batches, each in transactions of at most 128 operations
// that land whole or not at all. It reports per document and, for large
// files, prints a progress line per batch.
func (a *App) applyBulk(ctx context.Context, c *Client, docs []resource.Document, dryRun bool) error {
	total := len(docs)
	if total <= bulkOneRequestMax {
		var progress func(done, of int)
		if total >= bulkProgressFrom && !dryRun {
			progress = func(done, of int) {
				fmt.Fprintf(a.Stderr, "applied %d/%d documents (%d%%)\n", done, of, done*100/max(of, 1))
			}
		}
		resp, err := postBulk(ctx, c, docs, dryRun, progress)
		if errors.Is(err, errNoBulk) {
			return err
		}
		applied := a.reportBulk(docs, resp, dryRun)
		switch {
		case err == nil:
			return nil
		case resp == nil:
			return fmt.Errorf("apply: %w", err)
		case applied == 0:
			return fmt.Errorf("apply: %d of %d documents failed; nothing was applied", failedItems(resp), total)
		}
		return fmt.Errorf("apply: %d of %d documents failed; %d were applied (each transaction of up to 128 landed whole or not at all)", failedItems(resp), total, applied)
	}
	// 1. Validate everything. One request is enough when the writes go in
	// one batch: the server validates a whole request before writing.
	if dryRun || total > bulkWriteBatch {
		for from := 0; from < total; from += bulkValidateBatch {
			part := docs[from:min(from+bulkValidateBatch, total)]
			resp, err := postBulk(ctx, c, part, true, nil)
			if errors.Is(err, errNoBulk) {
				return err
			}
			if err != nil {
				if resp == nil {
					return fmt.Errorf("apply: %w; nothing was applied", err)
				}
				a.reportBulk(part, resp, false)
				return fmt.Errorf("apply: %d of %d documents failed validation; nothing was applied", failedItems(resp), total)
			}
			if dryRun {
				a.reportBulk(part, resp, true)
			}
		}
		if dryRun {
			return nil
		}
		if total >= bulkProgressFrom {
			fmt.Fprintf(a.Stderr, "validated %d documents\n", total)
		}
	}
	// 2. Write.
	done := 0
	for from := 0; from < total; from += bulkWriteBatch {
		part := docs[from:min(from+bulkWriteBatch, total)]
		resp, err := postBulk(ctx, c, part, false, nil)
		if errors.Is(err, errNoBulk) && from == 0 {
			return err
		}
		done += a.reportBulk(part, resp, false)
		if err != nil {
			if resp != nil {
				err = fmt.Errorf("%d of %d documents failed", failedItems(resp), total)
			}
			if done == 0 {
				return fmt.Errorf("apply: %w; nothing was applied", err)
			}
			return fmt.Errorf("apply: %w; %d of %d documents were applied (each transaction of up to 128 landed whole or not at all)", err, done, total)
		}
		if total >= bulkProgressFrom {
			fmt.Fprintf(a.Stderr, "applied %d/%d documents (%d%%)\n", done, total, done*100/total)
		}
	}
	return nil
}

// postBulk sends one POST /_apply. With an error it still returns the
// per-item results when the server sent them. progress, when set, asks the
// server for a progress report after each transaction (informational 102
// answers) and gets them.
func postBulk(ctx context.Context, c *Client, docs []resource.Document, dryRun bool, progress func(done, of int)) (*bulkResponse, error) {
	items := make([]*resource.Resource, len(docs))
	for i, d := range docs {
		items[i] = d.Resource
	}
	q := url.Values{}
	if dryRun {
		q.Set("dry-run", "true")
	}
	var hdr http.Header
	if progress != nil {
		hdr = http.Header{progressHeader: {"true"}}
		ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
			Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
				var done, of int
				if _, err := fmt.Sscanf(h.Get(appliedHeader), "%d/%d", &done, &of); err == nil {
					progress(done, of)
				}
				return nil
			},
		})
	}
	_, data, err := c.raw(ctx, http.MethodPost, "/_apply", q, map[string]any{"items": items}, hdr)
	resp := &bulkResponse{}
	if len(data) > 0 && json.Unmarshal(data, resp) == nil && len(resp.Items) == len(docs) {
		return resp, err
	}
	var apiErr *APIError
	if errors.As(err, &apiErr) && (apiErr.Status == http.StatusNotFound || apiErr.Status == http.StatusMethodNotAllowed) {
		return nil, errNoBulk
	}
	if err == nil {
		err = fmt.Errorf("POST /_apply: the answer does not list the %d documents", len(docs))
	}
	return nil, err
}

// reportBulk prints one line per document and returns how many were applied.
func (a *App) reportBulk(docs []resource.Document, resp *bulkResponse, dryRun bool) int {
	if resp == nil {
		return 0
	}
	applied := 0
	for i, it := range resp.Items {
		doc := docs[i]
		label := docLabel(doc.Resource)
		switch it.Status {
		case "created", "updated":
			verb := map[string]string{"created": "created", "updated": "configured"}[it.Status]
			if dryRun {
				verb = "valid (dry run, would be " + it.Status + ")"
			} else {
				applied++
			}
			fmt.Fprintf(a.Stdout, "%s %s\n", label, verb)
			a.printWarnings(writeResult{Warnings: it.Warnings})
		case "skipped":
			// Said once, in the error: nothing else was applied.
		default:
			msg := it.Status
			if it.Error != nil {
				msg = it.Error.At(doc.FieldLine).Error()
			}
			if it.Status == "aborted" {
				msg = "not applied: another document of its transaction failed"
			}
			fmt.Fprintf(a.Stderr, "document %d (line %d) %s: %s\n", doc.Index, doc.Line, label, msg)
		}
	}
	return applied
}

func failedItems(resp *bulkResponse) int {
	n := 0
	for _, it := range resp.Items {
		if it.Error != nil {
			n++
		}
	}
	return n
}
