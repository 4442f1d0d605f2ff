package zone

import (
	"context"
	"encoding/json"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

var readmeDataplane = regexp.MustCompile(`(?s)curl -sS -X PUT http://127\.0\.0\.1:5682(/meshes/default/dataplanes/[a-z0-9-]+) \\\n\s+-H 'Content-Type: application/json' -d '(\{.*?\n\})'`)

// The README's Dataplane example registers as written on a zone API.
func TestReadmeDataplaneExample(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := readmeDataplane.FindSubmatch(readme)
	if m == nil {
		t.Fatal("README has no Dataplane PUT example for the zone API")
	}
	path, body := string(m[1]), m[2]
	var raw map[string]any
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatalf("README Dataplane body is not JSON: %v\n%s", err, body)
	}

	z, stop := startZone(t, t.TempDir())
	defer stop()
	mesh, _ := resource.New(resource.TypeMesh, "", resource.DefaultMesh)
	mesh.CreationTime, mesh.ModificationTime = time.Now(), time.Now()
	if _, err := z.Store().Put(context.Background(), mesh, store.MustNotExist); err != nil {
		t.Fatal(err)
	}
	if code := call(t, "PUT", "http://"+z.APIAddr()+path, json.RawMessage(body), nil); code != 201 {
		t.Fatalf("PUT %s with the README body: %d", path, code)
	}
	var dp struct {
		Networking resource.DataplaneNetworking `json:"networking"`
	}
	if code := call(t, "GET", "http://"+z.APIAddr()+path, nil, &dp); code != 200 || len(dp.Networking.Inbound) != 1 ||
		dp.Networking.Inbound[0].Tags[resource.TagZone] != "west" {
		t.Fatalf("GET %s: %d %+v", path, code, dp)
	}
}
