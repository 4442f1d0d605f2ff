package testcluster

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/cli"
	"github.com/meshtrace/meshtrace/overview"
	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// checkKumactlRoutes asks global and zone west the four routes kumactl 2.7's
// inspect commands use, once proxies of east and west (frontend and backend
// in each) are connected and trace-west is applied: the answers must carry
// the live data (online proxies, their zone CP, ACKs), not empty tables.
func checkKumactlRoutes(t *testing.T, c *Cluster) {
	t.Helper()
	ctx := context.Background()
	online := func(api *cli.Client, path string, want int) error {
		var list overview.List[overview.DataplaneOverview]
		if _, err := api.Do(ctx, "GET", path, nil, nil, &list); err != nil {
			return err
		}
		if list.Total != want || len(list.Items) != want {
			return fmt.Errorf("%s: %d items, want %d", path, len(list.Items), want)
		}
		for _, it := range list.Items {
			zone := it.Labels[resource.LabelZone]
			if it.DataplaneInsight == nil || len(it.DataplaneInsight.Subscriptions) != 1 {
				return fmt.Errorf("%s: %s has no insight", path, it.Name)
			}
			s := it.DataplaneInsight.Subscriptions[0]
			if s.ConnectTime == nil || s.DisconnectTime != nil || s.ControlPlaneInstanceID != zone ||
				s.Status.Total.ResponsesAcknowledged == 0 || s.AckedVersion == "" {
				return fmt.Errorf("%s: %s insight %+v", path, it.Name, s)
			}
		}
		return nil
	}
	// global learns the proxies' connections from the zones' reports
	Eventually(t, 15*time.Second, func() error { return online(c.API, "/meshes/default/dataplanes+insights", 4) })
	if err := online(c.Zones["west"].API, "/meshes/default/dataplanes+insights", 2); err != nil {
		t.Fatal(err)
	}

	var zones overview.List[overview.ZoneOverview]
	if _, err := c.API.Do(ctx, "GET", "/zones+insights", nil, nil, &zones); err != nil {
		t.Fatal(err)
	}
	if zones.Total != 2 {
		t.Fatalf("zones+insights: %+v", zones)
	}
	for _, z := range zones.Items {
		if z.ZoneInsight == nil || len(z.ZoneInsight.Subscriptions) != 1 || z.ZoneInsight.Subscriptions[0].DisconnectTime != nil ||
			z.ZoneInsight.Subscriptions[0].Status.Total.ResponsesSent == 0 {
			t.Fatalf("zones+insights: zone %s: %+v", z.Name, z.ZoneInsight)
		}
	}

	policies, err := c.Global.Store().List(ctx, resource.TypeMeshTrace, store.ListOptions{Mesh: "default"})
	if err != nil {
		t.Fatal(err)
	}
	var meshes overview.List[overview.MeshInsight]
	if _, err := c.API.Do(ctx, "GET", "/mesh-insights", nil, nil, &meshes); err != nil {
		t.Fatal(err)
	}
	if meshes.Total != 1 || meshes.Items[0].Name != "default" || meshes.Items[0].Dataplanes.Total != 4 ||
		meshes.Items[0].Dataplanes.Online != 4 || meshes.Items[0].Policies["MeshTrace"].Total != uint32(policies.Total) ||
		meshes.Items[0].Services.Total != 2 {
		t.Fatalf("mesh-insights: %+v", meshes)
	}

	for name, api := range map[string]*cli.Client{"global": c.API, "zone west": c.Zones["west"].API} {
		var affected struct {
			Total int                           `json:"total"`
			Items []overview.PolicyInspectEntry `json:"items"`
		}
		if _, err := api.Do(ctx, "GET", "/meshes/default/meshtraces/trace-west/dataplanes", nil, nil, &affected); err != nil {
			t.Fatal(err)
		}
		if affected.Total != 2 || len(affected.Items) != 2 {
			t.Fatalf("%s: trace-west affects %+v", name, affected)
		}
		for _, it := range affected.Items {
			if !strings.Contains(it.Dataplane.Name, "west") || it.Kind != overview.KindSidecarDataplane {
				t.Fatalf("%s: trace-west affects %+v", name, it)
			}
		}
	}
}
