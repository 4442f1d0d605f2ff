package testcluster

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/cli"
	"github.com/meshtrace/meshtrace/inspect"
)

// TestInspectOnGlobalIsForwardedToTheZone: global answers a proxy's xDS and
// rules with what its zone serves, over the zone's KDS stream.
func TestInspectOnGlobalIsForwardedToTheZone(t *testing.T) {
	c := Start(t, Options{Zones: []string{"east", "west"}})
	c.Zones["west"].RegisterProxy(t, "backend-west", "backend")
	if err := c.Apply(seed(t, "trace-west.universal.yaml")); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var dump json.RawMessage
	Eventually(t, 10*time.Second, func() error {
		_, err := c.API.Do(ctx, "GET", "/meshes/default/dataplanes/backend-west/xds", nil, nil, &dump)
		if err == nil && !strings.Contains(string(dump), "west.zipkincollector") {
			return errors.New("xds from global lacks west's collector")
		}
		return err
	})
	var rules inspect.DataplaneRules
	if _, err := c.API.Do(ctx, "GET", "/meshes/default/dataplanes/backend-west/_rules", nil, nil, &rules); err != nil {
		t.Fatal(err)
	}
	if rules.Zone != "west" || rules.Name != "west.backend-west" || rules.Collector != "http://west.zipkincollector:9411/api/v2/spans" {
		t.Fatalf("rules %+v", rules)
	}
	if _, err := c.API.Do(ctx, "GET", "/meshes/default/dataplanes/nope/xds", nil, nil, nil); !isStatus(err, http.StatusNotFound) {
		t.Fatalf("unknown dataplane: %v", err)
	}

	// The zone goes away: xDS cannot be forwarded (503 naming the zone), the
	// rules are still computed on global from the same policies.
	c.StopZone("west")
	Eventually(t, 10*time.Second, func() error {
		_, err := c.API.Do(ctx, "GET", "/meshes/default/dataplanes/backend-west/xds", nil, nil, nil)
		if !isStatus(err, http.StatusServiceUnavailable) || !strings.Contains(err.Error(), `zone "west"`) {
			return errors.New("want 503 naming zone west, got " + errString(err))
		}
		return nil
	})
	rules = inspect.DataplaneRules{}
	if _, err := c.API.Do(ctx, "GET", "/meshes/default/dataplanes/backend-west/_rules", nil, nil, &rules); err != nil || rules.Collector != "http://west.zipkincollector:9411/api/v2/spans" {
		t.Fatalf("rules with the zone away: %+v %v", rules, err)
	}
}

func isStatus(err error, code int) bool {
	var e *cli.APIError
	return errors.As(err, &e) && e.Status == code
}

func errString(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}
