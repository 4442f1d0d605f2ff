package kds

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/meshtrace/meshtrace/store"
)

// Keys of the small values KDS keeps in a store (store.GetValue/PutValue).
const (
	// valueSigningKey holds the HMAC key zone tokens are signed with; every
	// global replica reads it from the shared store.
	valueSigningKey = "kds/token-signing-key"
	// valueRevokedPrefix + token id marks that token revoked (one key per
	// id, so concurrent revocations never overwrite each other).
	valueRevokedPrefix = "kds/revoked-tokens/"
	// valueStoreID identifies the global store's revision history.
	valueStoreID = "kds/store-id"
	// valueCursor is the zone's sync cursor (in the zone's store).
	valueCursor = "kds/zone-cursor"
)

const tokenPrefix = "mtz1"

// keyRefresh bounds how often a verifier re-reads the signing key.
const keyRefresh = 5 * time.Second

// Token errors.
var (
	ErrInvalidToken = errors.New("invalid zone token")
	ErrRevokedToken = errors.New("zone token revoked")
)

// zoneNameRe is a DNS label: zone names prefix the global names of uploaded
// resources as "<zone>.<name>", so they may not hold a dot.
var zoneNameRe = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// ValidateZoneName reports whether name can name a zone.
func ValidateZoneName(name string) error {
	if !zoneNameRe.MatchString(name) {
		return fmt.Errorf("zone name %q must be a DNS label: at most 63 lower case alphanumerics or '-', starting and ending with an alphanumeric", name)
	}
	return nil
}

// ZoneTokenClaims is the signed payload of a zone token.
type ZoneTokenClaims struct {
	Zone     string    `json:"zone"`
	ID       string    `json:"id"`
	IssuedAt time.Time `json:"issuedAt"`
}

// IssueZoneToken signs a token for zone with the signing key kept in st
// (created on first use). Give the token to the zone CP; revoke it with
// RevokeZoneToken and its id.
func IssueZoneToken(ctx context.Context, st store.Store, zone string) (string, error) {
	if err := ValidateZoneName(zone); err != nil {
		return "", err
	}
	key, err := signingKey(ctx, st, true)
	if err != nil {
		return "", err
	}
	id := make([]byte, 12)
	if _, err := rand.Read(id); err != nil {
		return "", err
	}
	claims := ZoneTokenClaims{Zone: zone, ID: hex.EncodeToString(id), IssuedAt: time.Now().UTC().Truncate(time.Second)}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	return tokenPrefix + "." + enc.EncodeToString(payload) + "." + enc.EncodeToString(sign(key, payload)), nil
}

// ParseZoneToken reads a token's claims without verifying its signature (to
// show or revoke it).
func ParseZoneToken(token string) (ZoneTokenClaims, error) {
	claims, _, _, err := splitToken(token)
	return claims, err
}

// RevokeZoneToken adds a token id to the revocation list in st. Servers refuse
// it at connect and cut live streams using it at their next check.
func RevokeZoneToken(ctx context.Context, st store.Store, id string) error {
	if id == "" || strings.ContainsAny(id, "/ ") {
		return fmt.Errorf("kds: bad token id %q", id)
	}
	if _, err := st.PutValue(ctx, valueRevokedPrefix+id, []byte(time.Now().UTC().Format(time.RFC3339))); err != nil {
		return fmt.Errorf("kds: store revocation: %w", err)
	}
	return nil
}

// isRevoked reports whether the token id was revoked.
func isRevoked(ctx context.Context, st store.Store, id string) (bool, error) {
	_, err := st.GetValue(ctx, valueRevokedPrefix+id)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, store.ErrNotFound):
		return false, nil
	}
	return false, fmt.Errorf("kds: read revocations: %w", err)
}

func sign(key, payload []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(payload)
	return m.Sum(nil)
}

func splitToken(token string) (ZoneTokenClaims, []byte, []byte, error) {
	var claims ZoneTokenClaims
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[0] != tokenPrefix {
		return claims, nil, nil, fmt.Errorf("%w: malformed", ErrInvalidToken)
	}
	enc := base64.RawURLEncoding
	payload, err := enc.DecodeString(parts[1])
	if err != nil {
		return claims, nil, nil, fmt.Errorf("%w: malformed payload", ErrInvalidToken)
	}
	sig, err := enc.DecodeString(parts[2])
	if err != nil {
		return claims, nil, nil, fmt.Errorf("%w: malformed signature", ErrInvalidToken)
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&claims); err != nil {
		return claims, nil, nil, fmt.Errorf("%w: malformed claims", ErrInvalidToken)
	}
	if ValidateZoneName(claims.Zone) != nil || claims.ID == "" {
		return claims, nil, nil, fmt.Errorf("%w: bad claims", ErrInvalidToken)
	}
	return claims, payload, sig, nil
}

// signingKey returns the key in st, creating it when create is set and none
// exists (put-if-absent, so racing replicas agree on one key).
func signingKey(ctx context.Context, st store.Store, create bool) ([]byte, error) {
	keyMu.Lock()
	defer keyMu.Unlock()
	key, err := st.GetValue(ctx, valueSigningKey)
	if err == nil {
		return key, nil
	}
	if !errors.Is(err, store.ErrNotFound) || !create {
		return nil, fmt.Errorf("kds: read signing key: %w", err)
	}
	key = make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	// Replicas creating the key at the same moment all get the first one.
	if key, err = st.CreateValue(ctx, valueSigningKey, key); err != nil {
		return nil, fmt.Errorf("kds: store signing key: %w", err)
	}
	return key, nil
}

// keyMu serializes key creation within a process.
var keyMu sync.Mutex

// verifier checks tokens against the store's key and revocation list.
type verifier struct {
	st store.Store

	mu     sync.Mutex
	key    []byte
	readAt time.Time
}

// verify returns the claims of a valid, unrevoked token.
func (v *verifier) verify(ctx context.Context, token string) (ZoneTokenClaims, error) {
	claims, payload, sig, err := splitToken(token)
	if err != nil {
		return claims, err
	}
	v.mu.Lock()
	key, readAt := v.key, v.readAt
	v.mu.Unlock()
	if key == nil || !hmac.Equal(sign(key, payload), sig) {
		// The key may be new to this replica: read it again, at most every
		// few seconds so forged tokens cannot hammer the store.
		if key == nil || time.Since(readAt) > keyRefresh {
			if key, err = signingKey(ctx, v.st, true); err != nil {
				return claims, err
			}
			v.mu.Lock()
			v.key, v.readAt = key, time.Now()
			v.mu.Unlock()
		}
		if !hmac.Equal(sign(key, payload), sig) {
			return claims, fmt.Errorf("%w: bad signature", ErrInvalidToken)
		}
	}
	revoked, err := isRevoked(ctx, v.st, claims.ID)
	if err != nil {
		return claims, err
	}
	if revoked {
		return claims, fmt.Errorf("%w: id %s", ErrRevokedToken, claims.ID)
	}
	return claims, nil
}
