package restapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// A resource larger than MaxResourceBytes (on global: what one KDS message
// can carry) is refused with 413 naming both sizes, and nothing is stored;
// one just under it is accepted.
func TestResourceLargerThanSyncCapIsRefused(t *testing.T) {
	s := newTestServer(t, nil, func(c *Config) { c.MaxResourceBytes = 2048 })
	tags := func(n int) string {
		return "spec:\n  default:\n    backends:\n    - zipkin:\n        url: http://zipkin:9411/api/v2/spans\n    tags:\n    - name: big\n      literal: " + strings.Repeat("x", n) + "\n"
	}
	for _, tc := range []struct {
		name   string
		size   int
		status int
	}{
		{"small", 100, http.StatusCreated},
		{"over the cap", 4000, http.StatusRequestEntityTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := "type: MeshTrace\nmesh: default\nname: " + strings.ReplaceAll(tc.name, " ", "-") + "\n" + tags(tc.size)
			r := s.do(t, http.MethodPut, "/meshes/default/meshtraces/"+strings.ReplaceAll(tc.name, " ", "-"), body, "ok")
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.status == http.StatusRequestEntityTooLarge {
				r.apiError(t)
				if !strings.Contains(string(r.body), "synced to zones is 2048 bytes") {
					t.Fatalf("body %s", r.body)
				}
				if g := s.do(t, http.MethodGet, "/meshes/default/meshtraces/over-the-cap", "", ""); g.status != http.StatusNotFound {
					t.Fatalf("refused resource stored: %d", g.status)
				}
			}
		})
	}
}

// specCheckingStore checks, in every PutBatch, that the spec JSON the API
// hands the store (store.BatchOptions.SpecJSON) is the spec as it is
// stored: encoded again after Prepare ran, it gives the same bytes.
type specCheckingStore struct {
	store.Store
	t      *testing.T
	handed int
}

func (s *specCheckingStore) PutBatch(ctx context.Context, rs []*resource.Resource, opts store.BatchOptions) ([]store.BatchResult, error) {
	s.t.Helper()
	for i, spec := range opts.SpecJSON {
		if spec == nil {
			continue
		}
		s.handed++
		prepare, r := opts.Prepare, rs[i]
		opts.Prepare = func(got, existing *resource.Resource) error {
			err := prepare(got, existing)
			if got == r {
				want, _ := resource.MarshalSpec(r)
				if !bytes.Equal(spec, want) {
					s.t.Errorf("%s: spec handed to the store %s, stored %s", r.Key(), spec, want)
				}
			}
			return err
		}
	}
	return s.Store.PutBatch(ctx, rs, opts)
}

// With a size cap, the spec encoded to measure a resource is handed to the
// store, and it is the spec the store writes: for a policy and a Mesh (whose
// spec is inline), by PUT and by bulk apply, with labels and defaults.
func TestSizeCheckHandsTheStoreItsSpec(t *testing.T) {
	st := &specCheckingStore{Store: store.NewMemory(), t: t}
	s := newTestServer(t, st, func(c *Config) { c.MaxResourceBytes = 1 << 20 })
	for _, tc := range []struct{ path, body string }{
		{"/meshes/default/meshtraces/t1", meshTrace("default", "t1", "labels:\n  a: b\n")},
		{"/meshes/default/meshtraces/t2", "type: MeshTrace\nmesh: default\nname: t2\nspec:\n  targetRef:\n    kind: MeshService\n    name: svc\n  default:\n    sampling:\n      overall: 10\n    tags:\n    - name: x\n      literal: <&>\n    backends:\n    - zipkin:\n        url: http://z:9411/api/v2/spans?a=1&b=2\n"},
		{"/meshes/m2", "type: Mesh\nname: m2\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n"},
	} {
		if r := s.do(t, http.MethodPut, tc.path, tc.body, "ok"); r.status != http.StatusCreated {
			t.Fatalf("PUT %s: %d %s", tc.path, r.status, r.body)
		}
	}
	bulk := `{"items":[{"type":"MeshTrace","mesh":"default","name":"b1","spec":{"default":{"sampling":{"overall":5},"backends":[{"zipkin":{"url":"http://z:9411"}}]}}},{"type":"Mesh","name":"m3"}]}`
	if r := s.do(t, http.MethodPost, "/_apply", bulk, "ok"); r.status != http.StatusOK {
		t.Fatalf("bulk: %d %s", r.status, r.body)
	}
	// 3 PUTs, then the bulk apply's check and write (2 items each).
	if st.handed != 7 {
		t.Fatalf("%d specs handed to the store, want 7", st.handed)
	}
}

// readBody reads what the client sent, up to the limit, whatever length
// it announced; above the limit it fails with the limit in the error.
func TestReadBody(t *testing.T) {
	const limit = 8
	for _, tc := range []struct {
		name    string
		body    string
		length  int64 // Request.ContentLength; -1 unknown
		want    string
		tooLong bool
	}{
		{name: "announced", body: "abc", length: 3, want: "abc"},
		{name: "unknown length", body: "abc", length: -1, want: "abc"},
		{name: "empty", body: "", length: 0, want: ""},
		{name: "at the limit", body: "12345678", length: 8, want: "12345678"},
		{name: "at the limit, unknown length", body: "12345678", length: -1, want: "12345678"},
		{name: "over the limit, unknown length", body: "123456789", length: -1, tooLong: true},
		{name: "over the limit, announced", body: "123456789", length: 9, tooLong: true},
		{name: "more than announced", body: "abcdef", length: 3, want: "abcdef"},
		{name: "more than announced, at the limit", body: "12345678", length: 8 - 1, want: "12345678"},
		{name: "more than announced, over the limit", body: "123456789", length: 8, tooLong: true},
		{name: "less than announced", body: "ab", length: 5, want: "ab"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPut, "/x", nil)
			body := &closeRecorder{Reader: strings.NewReader(tc.body)}
			r.Body, r.ContentLength = body, tc.length
			got, err := readBody(httptest.NewRecorder(), r, limit)
			if tc.tooLong {
				var mbe *http.MaxBytesError
				if !errors.As(err, &mbe) || mbe.Limit != limit {
					t.Fatalf("error %v, want a MaxBytesError with limit %d", err, limit)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
			if !body.closed {
				t.Fatal("the body read whole is not closed")
			}
		})
	}
}

type closeRecorder struct {
	io.Reader
	closed bool
}

func (c *closeRecorder) Close() error { c.closed = true; return nil }
