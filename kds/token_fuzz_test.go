package kds

import (
	"context"
	"testing"

	"github.com/meshtrace/meshtrace/store"
)

// FuzzVerifyZoneToken feeds arbitrary bearer tokens, the outside input of the
// KDS handshake, to parsing and verification: no panic, and nothing but the
// token global issued verifies.
func FuzzVerifyZoneToken(f *testing.F) {
	st := store.NewMemory()
	ctx := context.Background()
	good, err := IssueZoneToken(ctx, st, "west")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add("")
	f.Add("mtz1..")
	f.Add(good[:len(good)-2])
	f.Add(good + "x")
	v := &verifier{st: st}
	f.Fuzz(func(t *testing.T, token string) {
		_, _ = ParseZoneToken(token)
		claims, err := v.verify(ctx, token)
		if err == nil && token != good {
			t.Fatalf("forged token %q verified as %+v", token, claims)
		}
		if token == good && (err != nil || claims.Zone != "west") {
			t.Fatalf("issued token: %+v %v", claims, err)
		}
	})
}
