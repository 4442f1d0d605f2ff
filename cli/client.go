// Package cli implements meshtracectl: apply, get, delete and inspect against
// a meshtrace (or Kuma-compatible) control plane's REST API.
package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client talks to the REST API.
type Client struct {
	Address string
	Token   string
	HTTP    *http.Client
}

// APIError is the server's std-errors body.
type APIError struct {
	Status int    `json:"status"`
	Title  string `json:"title"`
	Detail string `json:"detail"`
	Causes []struct {
		Field   string `json:"field"`
		Message string `json:"message"`
	} `json:"causes"`
	// lineOf, when set, gives the input line of a cause's field.
	lineOf func(field string) int
}

// At makes the error name, for each cause, the line of its field in the
// document that was sent (resource.Document.FieldLine).
func (e *APIError) At(lineOf func(field string) int) *APIError {
	e.lineOf = lineOf
	return e
}

func (e *APIError) Error() string {
	var b strings.Builder
	title := e.Title
	if title == "" {
		title = http.StatusText(e.Status)
	}
	fmt.Fprintf(&b, "%s (%d)", title, e.Status)
	if e.Detail != "" && e.Detail != e.Title {
		fmt.Fprintf(&b, ": %s", e.Detail)
	}
	for _, c := range e.Causes {
		line := 0
		if e.lineOf != nil {
			line = e.lineOf(c.Field)
		}
		switch {
		case c.Field != "" && line > 0:
			fmt.Fprintf(&b, "\n  * line %d: %s: %s", line, c.Field, c.Message)
		case c.Field != "":
			fmt.Fprintf(&b, "\n  * %s: %s", c.Field, c.Message)
		default:
			fmt.Fprintf(&b, "\n  * %s", c.Message)
		}
	}
	return b.String()
}

// Do sends a request and decodes a JSON answer into out (when non-nil). It
// returns the HTTP status; non-2xx answers become an *APIError.
func (c *Client) Do(ctx context.Context, method, path string, query url.Values, body any, out any) (int, error) {
	code, data, err := c.Raw(ctx, method, path, query, body)
	if err != nil {
		return code, err
	}
	if out != nil && len(bytes.TrimSpace(data)) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return code, fmt.Errorf("decode response of %s %s: %w", method, path, err)
		}
	}
	return code, nil
}

// Raw is Do without decoding: it returns the status and the body as sent
// (also with an error, when the server answered).
func (c *Client) Raw(ctx context.Context, method, path string, query url.Values, body any) (int, []byte, error) {
	return c.raw(ctx, method, path, query, body, nil)
}

// raw is Raw with extra request headers.
func (c *Client) raw(ctx context.Context, method, path string, query url.Values, body any, hdr http.Header) (int, []byte, error) {
	u := strings.TrimRight(c.Address, "/") + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rdr io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, fmt.Errorf("encode request: %w", err)
		}
		rdr = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rdr)
	if err != nil {
		return 0, nil, fmt.Errorf("build request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, u, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("read response: %w", err)
	}
	if resp.StatusCode >= 300 {
		apiErr := &APIError{Status: resp.StatusCode}
		if json.Unmarshal(data, apiErr) != nil || (apiErr.Title == "" && apiErr.Detail == "") {
			apiErr.Detail = strings.TrimSpace(string(data))
		}
		apiErr.Status = resp.StatusCode
		return resp.StatusCode, data, apiErr
	}
	return resp.StatusCode, data, nil
}
