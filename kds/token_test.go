package kds_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshtrace/meshtrace/kds"
)

// refused says whether a raw stream with tok is turned away as unauthenticated.
func refused(t *testing.T, e *env, addr, tok string) bool {
	t.Helper()
	stream, stop := e.rawStream(t, addr, tok)
	defer stop()
	_ = stream.Send(hello(0))
	for {
		_, err := stream.Recv()
		if err != nil {
			return status.Code(err) == codes.Unauthenticated
		}
		// A message means the stream was accepted.
		return false
	}
}

// Tokens carry their key id and expiry; an expired token is refused, and a
// live stream on it is cut once it expires.
func TestTokenExpiry(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	gs := newMemory(t)
	g := e.startGlobal(gs, "")
	tok, err := kds.IssueZoneTokenFor(ctx, gs, "east", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	claims, err := kds.ParseZoneToken(tok)
	if err != nil || claims.KeyID != "1" || claims.ExpiresAt.Sub(claims.IssuedAt) != 2*time.Second {
		t.Fatalf("claims %+v %v: want kid 1 and a 2s validity", claims, err)
	}
	if _, err := kds.IssueZoneTokenFor(ctx, gs, "east", 0); err == nil {
		t.Fatal("issued a token valid for 0s")
	}
	z := e.startZone("east", newMemory(t), tok, []string{g.addr})
	waitFor(t, "east to connect", 5*time.Second, z.client.Connected)
	waitFor(t, "the stream on the expired token to be cut", 5*time.Second, func() bool { return !z.client.Connected() })
	if !time.Now().After(claims.ExpiresAt) {
		t.Fatal("stream cut before the token expired")
	}
	if !refused(t, e, g.addr, tok) {
		t.Fatal("expired token accepted")
	}

	// A token without an expiry (or key id) is not a token.
	payload, _ := json.Marshal(map[string]any{"zone": "east", "id": "x", "kid": "1", "issuedAt": time.Now()})
	parts := strings.Split(tok, ".")
	noExp := parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + parts[2]
	if _, err := kds.ParseZoneToken(noExp); err == nil {
		t.Fatal("token without expiresAt parsed")
	}
}

// Rotating the signing key: new tokens use the new key; tokens of the old key
// keep working for the grace period, then are refused and their live
// streams cut; streams on new tokens stay.
func TestSigningKeyRotation(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	gs := newMemory(t)
	g := e.startGlobal(gs, "")
	oldTok := token(t, gs, "east")
	// Probes use another zone: a second stream of east would replace east's.
	probeTok := token(t, gs, "south")
	old := e.startZone("east", newMemory(t), oldTok, []string{g.addr})
	waitFor(t, "east to connect", 5*time.Second, old.client.Connected)

	rot, err := kds.RotateSigningKey(ctx, gs, 1500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if rot.KeyID != "2" || rot.PreviousKeyID != "1" {
		t.Fatalf("rotation %+v", rot)
	}
	newTok := token(t, gs, "west")
	if c, _ := kds.ParseZoneToken(newTok); c.KeyID != "2" {
		t.Fatalf("token after rotation signed with key %q", c.KeyID)
	}
	fresh := e.startZone("west", newMemory(t), newTok, []string{g.addr})
	waitFor(t, "west (new key) to connect", 5*time.Second, fresh.client.Connected)
	// Within the grace period the old key still opens new streams.
	if refused(t, e, g.addr, token(t, gs, "north")) {
		t.Fatal("token of the current key refused")
	}
	if time.Now().Before(rot.PreviousRetires) && refused(t, e, g.addr, probeTok) {
		t.Fatal("old key refused during its grace period")
	}
	waitFor(t, "the old key's stream to be cut", 5*time.Second, func() bool { return !old.client.Connected() })
	if time.Now().Before(rot.PreviousRetires) {
		t.Fatal("stream cut before the grace period ended")
	}
	if !refused(t, e, g.addr, probeTok) {
		t.Fatal("old key accepted after its grace period")
	}
	if !fresh.client.Connected() {
		t.Fatal("stream on the new key was cut")
	}

	// Grace 0 retires at once; a second rotation keeps counting.
	rot, err = kds.RotateSigningKey(ctx, gs, 0)
	if err != nil || rot.KeyID != "3" {
		t.Fatalf("second rotation %+v %v", rot, err)
	}
	waitFor(t, "key 2's stream to be cut", 5*time.Second, func() bool { return !fresh.client.Connected() })
	if _, err := kds.RotateSigningKey(ctx, gs, -time.Second); err == nil {
		t.Fatal("negative grace accepted")
	}
}

// Key ids that were never issued are refused without a store read each.
func TestUnknownKeyID(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	gs := newMemory(t)
	g := e.startGlobal(gs, "")
	tok := token(t, gs, "east")
	parts := strings.Split(tok, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var claims map[string]any
	_ = json.Unmarshal(payload, &claims)
	claims["kid"] = "7"
	payload, _ = json.Marshal(claims)
	forged := parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + parts[2]
	if !refused(t, e, g.addr, forged) {
		t.Fatal("token with an unknown key id accepted")
	}
	_ = ctx
}
