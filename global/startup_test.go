package global

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// While bootstrapping, the API answers reads and holds writes until ready.
func TestWritesAfterHoldsWritesUntilReady(t *testing.T) {
	ready := make(chan struct{})
	served := make(chan string, 4)
	h := writesAfter(ready, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { served <- r.Method }))
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/meshes")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if m := <-served; m != http.MethodGet {
		t.Fatalf("served %s", m)
	}
	put := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPut, srv.URL+"/meshes/x", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		put <- err
	}()
	// A read sent after the write is served while the write waits.
	resp, err = http.Get(srv.URL + "/zones")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if m := <-served; m != http.MethodGet {
		t.Fatalf("served %s before the read, while not ready", m)
	}
	close(ready)
	if err := <-put; err != nil {
		t.Fatal(err)
	}
	if m := <-served; m != http.MethodPut {
		t.Fatalf("served %s", m)
	}
}
