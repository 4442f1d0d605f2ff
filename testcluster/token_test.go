package testcluster

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/kds"
)

// TestZoneTokensOverTheAPI: tokens are issued and revoked through global's
// REST API (admin token required), and a revoked zone is cut off.
func TestZoneTokensOverTheAPI(t *testing.T) {
	c := Start(t, Options{Zones: []string{"west"}})
	post := func(token, body string) (int, string) {
		req, _ := http.NewRequest("POST", c.API.Address+"/tokens/zone", strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := post("", `{"zone":"east"}`); code != http.StatusUnauthorized {
		t.Fatalf("token without admin auth: %d", code)
	}
	if code, body := post(c.API.Token, `{"zone":"East_1"}`); code != http.StatusBadRequest {
		t.Fatalf("bad zone name: %d %s", code, body)
	}
	code, token := post(c.API.Token, `{"zone":"east"}`)
	claims, err := kds.ParseZoneToken(token)
	if code != http.StatusOK || err != nil || claims.Zone != "east" {
		t.Fatalf("issued token: %d %q %v %+v", code, token, err, claims)
	}

	west := c.Zones["west"]
	Eventually(t, 10*time.Second, func() error {
		if !west.KDSClient().Connected() {
			return errors.New("west not connected")
		}
		return nil
	})
	westClaims, err := kds.ParseZoneToken(c.tokens["west"])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.API.Do(context.Background(), "DELETE", "/tokens/zone/"+westClaims.ID, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	// Cut at the next revocation check (every 10 s): the zone exits with the
	// reason instead of retrying.
	select {
	case err := <-west.Refused():
		if !strings.Contains(err.Error(), "revoked") {
			t.Fatalf("west exited with %v, want a revoked token", err)
		}
	case <-time.After(25 * time.Second):
		t.Fatal("west was not cut off")
	}
	if west.KDSClient().Connected() {
		t.Fatal("revoked zone still connected")
	}
}
