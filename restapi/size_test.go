package restapi

import (
	"net/http"
	"strings"
	"testing"
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
