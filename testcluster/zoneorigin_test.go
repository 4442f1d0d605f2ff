package testcluster

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/kds"
	"github.com/meshtrace/meshtrace/resource"
)

// A MeshTrace created on a zone's API is listed on global under Kuma 2.7's
// hashed name, labelled with its zone, and is read-only there (405).
func TestZoneOriginatedPolicyOnGlobal(t *testing.T) {
	c := Start(t, Options{Zones: []string{"west"}})
	ctx := context.Background()
	west := c.Zones["west"]
	body := map[string]any{
		"type": "MeshTrace", "mesh": "default", "name": "west-local",
		"spec": map[string]any{"default": map[string]any{"backends": []any{map[string]any{"zipkin": map[string]any{"url": "http://west.collector:9411/api/v2/spans"}}}}},
	}
	if _, err := west.API.Do(ctx, http.MethodPut, "/meshes/default/meshtraces/west-local", nil, body, nil); err != nil {
		t.Fatal(err)
	}
	name := kds.HashedName("default", "west-local", "west", "")
	var got resource.Resource
	Eventually(t, 10*time.Second, func() error {
		_, err := c.API.Do(ctx, http.MethodGet, "/meshes/default/meshtraces/"+name, nil, nil, &got)
		return err
	})
	if got.Labels[resource.LabelOrigin] != resource.OriginZone || got.Labels[resource.LabelZone] != "west" {
		t.Fatalf("labels on global: %v", got.Labels)
	}
	var page struct {
		Items []resource.Resource `json:"items"`
	}
	if _, err := c.API.Do(ctx, http.MethodGet, "/meshes/default/meshtraces", nil, nil, &page); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, it := range page.Items {
		found = found || it.Name == name
	}
	if !found {
		t.Fatalf("%s not listed on global", name)
	}
	body["name"] = name
	code, err := c.API.Do(ctx, http.MethodPut, "/meshes/default/meshtraces/"+name, nil, body, nil)
	if code != http.StatusMethodNotAllowed || err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("PUT on global: %d %v, want 405 read-only", code, err)
	}
	code, err = c.API.Do(ctx, http.MethodDelete, "/meshes/default/meshtraces/"+name, nil, nil, nil)
	if code != http.StatusMethodNotAllowed {
		t.Fatalf("DELETE on global: %d %v, want 405", code, err)
	}
}
