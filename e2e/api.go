//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

var httpClient = &http.Client{Timeout: 10 * time.Second}

// API is a REST API of a control plane, reached through its mapped port. The
// address is looked up on every call because it changes when the container
// restarts.
type API struct {
	Node  *Node
	Port  string
	Token string
}

// Response is a decoded HTTP answer.
type Response struct {
	Status int
	Body   []byte
}

// Do sends one request; body is marshalled to JSON unless it is a string or
// []byte. It returns an error only when no HTTP answer came back. It never
// fails t itself, so it may run outside the test goroutine.
func (a API) Do(t testing.TB, method, path string, body any) (Response, error) {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return Response{}, fmt.Errorf("marshal: %w", err)
		}
		r = bytes.NewReader(j)
	}
	addr, err := a.Node.addr(a.Port)
	if err != nil {
		return Response{}, err
	}
	req, err := http.NewRequest(method, "http://"+addr+path, r)
	if err != nil {
		return Response{}, err
	}
	if r != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.Token != "" {
		req.Header.Set("Authorization", "Bearer "+a.Token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return Response{}, fmt.Errorf("%s %s on %s: %w", method, path, a.Node.Name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return Response{}, fmt.Errorf("%s %s on %s: read body: %w", method, path, a.Node.Name, err)
	}
	return Response{Status: resp.StatusCode, Body: b}, nil
}

// Must sends a request and fails the test unless the status is one of ok.
func (a API) Must(t testing.TB, method, path string, body any, ok ...int) Response {
	t.Helper()
	resp, err := a.Do(t, method, path, body)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range ok {
		if resp.Status == s {
			return resp
		}
	}
	t.Fatalf("%s %s on %s: status %d, want %v: %s", method, path, a.Node.Name, resp.Status, ok, resp.Body)
	return resp
}

// Policy is a stored MeshTrace as the REST API returns it.
type Policy struct {
	Type   string            `json:"type"`
	Mesh   string            `json:"mesh"`
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	Spec   json.RawMessage   `json:"spec"`
}

// DisplayName is the name the policy was created with on global: zones may
// store synced copies under another name, with the original in a label.
func (p Policy) DisplayName() string {
	if n := p.Labels["kuma.io/display-name"]; n != "" {
		return n
	}
	return p.Name
}

type page struct {
	Total int             `json:"total"`
	Items json.RawMessage `json:"items"`
	Next  *string         `json:"next"`
}

// List returns every item of a list endpoint, following "next" links.
func (a API) List(path string, t testing.TB) ([]json.RawMessage, error) {
	t.Helper()
	var out []json.RawMessage
	for path != "" {
		resp, err := a.Do(t, http.MethodGet, path, nil)
		if err != nil {
			return nil, err
		}
		if resp.Status != http.StatusOK {
			return nil, fmt.Errorf("GET %s on %s: %d: %s", path, a.Node.Name, resp.Status, resp.Body)
		}
		var p page
		if err := json.Unmarshal(resp.Body, &p); err != nil {
			return nil, fmt.Errorf("GET %s: %w", path, err)
		}
		var items []json.RawMessage
		if err := json.Unmarshal(p.Items, &items); err != nil {
			return nil, fmt.Errorf("GET %s items: %w", path, err)
		}
		out = append(out, items...)
		path = ""
		if p.Next != nil && *p.Next != "" {
			u, err := url.Parse(*p.Next)
			if err != nil {
				return nil, fmt.Errorf("next %q: %w", *p.Next, err)
			}
			path = u.RequestURI()
		}
	}
	return out, nil
}

// Policies returns GET /meshtraces keyed by mesh/display name, each spec
// re-encoded canonically so two copies compare equal when their content is.
func (a API) Policies(t testing.TB) (map[string]string, error) {
	t.Helper()
	items, err := a.List("/meshtraces?size=100", t)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, raw := range items {
		var p Policy
		if err := json.Unmarshal(raw, &p); err != nil {
			return nil, err
		}
		out[p.Mesh+"/"+p.DisplayName()] = canonical(p.Spec)
	}
	return out, nil
}

// canonical re-encodes JSON with sorted keys.
func canonical(raw json.RawMessage) string {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return string(raw)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// diffPolicies describes how two policy sets differ, "" when equal.
func diffPolicies(want, got map[string]string) string {
	if reflect.DeepEqual(want, got) {
		return ""
	}
	var keys []string
	seen := map[string]bool{}
	for k := range want {
		keys, seen[k] = append(keys, k), true
	}
	for k := range got {
		if !seen[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		w, wok := want[k]
		g, gok := got[k]
		switch {
		case !gok:
			fmt.Fprintf(&b, "\n  missing %s", k)
		case !wok:
			fmt.Fprintf(&b, "\n  extra %s", k)
		case w != g:
			fmt.Fprintf(&b, "\n  %s differs:\n    want %s\n    got  %s", k, w, g)
		}
	}
	return b.String()
}

// getJSON decodes GET url into v.
func getJSON(url string, v any) error {
	resp, err := httpClient.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d: %s", url, resp.StatusCode, b)
	}
	return json.Unmarshal(b, v)
}
