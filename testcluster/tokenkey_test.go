package testcluster

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meshtrace/meshtrace/kds"
)

// Zone tokens over the API carry the validity asked for, and the signing key
// rotates over the API (admin token required).
func TestTokenValidityAndKeyRotationOverTheAPI(t *testing.T) {
	c := Start(t, Options{})
	post := func(path, token, body string) (int, string) {
		req, _ := http.NewRequest("POST", c.API.Address+path, strings.NewReader(body))
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
	code, tok := post("/tokens/zone", c.API.Token, `{"zone":"east","validFor":"1h"}`)
	claims, err := kds.ParseZoneToken(tok)
	if code != http.StatusOK || err != nil || claims.ExpiresAt.Sub(claims.IssuedAt) != time.Hour || claims.KeyID != "1" {
		t.Fatalf("token valid for 1h: %d %+v %v", code, claims, err)
	}
	code, tok = post("/tokens/zone", c.API.Token, `{"zone":"east"}`)
	if claims, _ = kds.ParseZoneToken(tok); code != http.StatusOK || claims.ExpiresAt.Sub(claims.IssuedAt) != kds.DefaultTokenValidity {
		t.Fatalf("default validity: %d %+v", code, claims)
	}
	for _, bad := range []string{`{"zone":"east","validFor":"soon"}`, `{"zone":"east","validFor":"0s"}`, `{"zone":"east","validFor":"-1h"}`} {
		if code, body := post("/tokens/zone", c.API.Token, bad); code != http.StatusBadRequest || !strings.Contains(body, "validFor") {
			t.Errorf("%s: %d %s", bad, code, body)
		}
	}
	if code, _ := post("/tokens/zone/signing-key/rotate", "", `{}`); code != http.StatusUnauthorized {
		t.Fatalf("rotation without the admin token: %d", code)
	}
	if code, body := post("/tokens/zone/signing-key/rotate", c.API.Token, `{"gracePeriod":"later"}`); code != http.StatusBadRequest {
		t.Fatalf("bad grace period: %d %s", code, body)
	}
	code, body := post("/tokens/zone/signing-key/rotate", c.API.Token, `{"gracePeriod":"2h"}`)
	var rot kds.KeyRotation
	if code != http.StatusOK || json.Unmarshal([]byte(body), &rot) != nil || rot.KeyID != "2" || rot.PreviousKeyID != "1" ||
		time.Until(rot.PreviousRetires) < time.Hour {
		t.Fatalf("rotation: %d %s", code, body)
	}
	if _, tok = post("/tokens/zone", c.API.Token, `{"zone":"east"}`); func() string { c, _ := kds.ParseZoneToken(tok); return c.KeyID }() != "2" {
		t.Fatalf("token after rotation: %s", tok)
	}
}
