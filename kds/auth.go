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
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/meshtrace/meshtrace/store"
)

// Keys of the small values KDS keeps in a store (store.GetValue/PutValue).
const (
	// valueSigningKeyPrefix + key id holds an HMAC key zone tokens are
	// signed with; every global replica reads them from the shared store.
	// Key ids are serial numbers: "1", then one more per rotation.
	valueSigningKeyPrefix = "kds/token-signing-keys/"
	// valueCurrentKeyID names the key new tokens are signed with.
	valueCurrentKeyID = "kds/token-signing-key-current"
	// valueRetiredKeyPrefix + key id holds the time (RFC 3339) from which
	// tokens signed with that key are refused.
	valueRetiredKeyPrefix = "kds/token-signing-keys-retired/"
	// valueRevokedPrefix + token id marks that token revoked (one key per
	// id, so concurrent revocations never overwrite each other).
	valueRevokedPrefix = "kds/revoked-tokens/"
	// valueStoreID identifies the global store's revision history.
	valueStoreID = "kds/store-id"
	// valueCursor is the zone's sync cursor (in the zone's store).
	valueCursor = "kds/zone-cursor"
	// valueReleasePrefix + zone holds the id of the operator's latest release
	// of that zone's held snapshot deletes.
	valueReleasePrefix = "kds/release-deletes/"
	// valueUploadCursorPrefix + zone: how far global applied the zone's
	// uploads ({storeId, revision} of the zone's store).
	valueUploadCursorPrefix = "kds/upload-cursor/"
	// valueZoneStoreID identifies a zone's own store (in the zone's store).
	valueZoneStoreID = "kds/zone-store-id"
)

// ReleaseDeletes records an operator's release of the snapshot deletes zone
// holds (the zone refused them because global looked like it lost its
// data). Every replica cuts the zone's live stream at its next check; the
// zone reconnects, gets a snapshot and applies its deletes. It returns the
// release id.
func ReleaseDeletes(ctx context.Context, st store.Store, zone string) (string, error) {
	if err := ValidateZoneName(zone); err != nil {
		return "", err
	}
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	id := time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b)
	if _, err := st.PutValue(ctx, valueReleasePrefix+zone, []byte(id)); err != nil {
		return "", fmt.Errorf("kds: store release: %w", err)
	}
	return id, nil
}

// releaseID reads the zone's latest release id ("" when none).
func releaseID(ctx context.Context, st store.Store, zone string) (string, error) {
	b, err := st.GetValue(ctx, valueReleasePrefix+zone)
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("kds: read release: %w", err)
	}
	return string(b), nil
}

const tokenPrefix = "mtz1"

// keyRefresh bounds how often a verifier looks for a signing key it does not
// know yet, so forged key ids cannot hammer the store.
const keyRefresh = time.Second

// DefaultTokenValidity is how long a zone token is valid when the issuer
// does not say: 10 years, as Kuma's API when validFor is empty (kumactl
// generate zone-token requires --valid-for).
const DefaultTokenValidity = 10 * 365 * 24 * time.Hour

// DefaultKeyGracePeriod is how long tokens signed with a rotated-out key stay
// valid when the rotation does not say.
const DefaultKeyGracePeriod = 24 * time.Hour

// Token errors.
var (
	ErrInvalidToken = errors.New("invalid zone token")
	ErrRevokedToken = errors.New("zone token revoked")
	ErrExpiredToken = errors.New("zone token expired")
	ErrRetiredKey   = errors.New("zone token signed with a retired key")
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
	Zone      string    `json:"zone"`
	ID        string    `json:"id"`
	KeyID     string    `json:"kid"`
	IssuedAt  time.Time `json:"issuedAt"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// IssueZoneToken signs a token for zone valid for DefaultTokenValidity.
func IssueZoneToken(ctx context.Context, st store.Store, zone string) (string, error) {
	return IssueZoneTokenFor(ctx, st, zone, DefaultTokenValidity)
}

// IssueZoneTokenFor signs a token for zone, valid for validFor, with the
// current signing key kept in st (created on first use). Give the token to
// the zone CP; revoke it with RevokeZoneToken and its id.
func IssueZoneTokenFor(ctx context.Context, st store.Store, zone string, validFor time.Duration) (string, error) {
	if err := ValidateZoneName(zone); err != nil {
		return "", err
	}
	if validFor <= 0 {
		return "", fmt.Errorf("kds: token validity %s must be positive", validFor)
	}
	kid, key, err := currentKey(ctx, st, true)
	if err != nil {
		return "", err
	}
	id := make([]byte, 12)
	if _, err := rand.Read(id); err != nil {
		return "", err
	}
	now := time.Now().UTC().Truncate(time.Second)
	claims := ZoneTokenClaims{Zone: zone, ID: hex.EncodeToString(id), KeyID: kid, IssuedAt: now, ExpiresAt: now.Add(validFor)}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	return tokenPrefix + "." + enc.EncodeToString(payload) + "." + enc.EncodeToString(sign(key, payload)), nil
}

// KeyRotation is the outcome of RotateSigningKey.
type KeyRotation struct {
	KeyID           string    `json:"kid"`
	PreviousKeyID   string    `json:"previousKid"`
	PreviousRetires time.Time `json:"previousRetiresAt"`
}

// RotateSigningKey makes a new signing key current: tokens issued from now on
// use it, and tokens signed with the previous key stay valid for grace (0:
// refused at once; live streams on them are cut at the servers' next check).
// Keys rotated out earlier keep their own retirement time.
func RotateSigningKey(ctx context.Context, st store.Store, grace time.Duration) (KeyRotation, error) {
	if grace < 0 {
		return KeyRotation{}, fmt.Errorf("kds: grace period %s must not be negative", grace)
	}
	keyMu.Lock()
	defer keyMu.Unlock()
	prev, _, err := currentKeyLocked(ctx, st, true)
	if err != nil {
		return KeyRotation{}, err
	}
	n, err := strconv.Atoi(prev)
	if err != nil {
		return KeyRotation{}, fmt.Errorf("kds: current signing key id %q is not a serial number", prev)
	}
	next := strconv.Itoa(n + 1)
	if _, err := st.CreateValue(ctx, valueSigningKeyPrefix+next, newKey()); err != nil {
		return KeyRotation{}, fmt.Errorf("kds: store signing key: %w", err)
	}
	retires := time.Now().UTC().Add(grace)
	if _, err := st.PutValue(ctx, valueRetiredKeyPrefix+prev, []byte(retires.Format(time.RFC3339Nano))); err != nil {
		return KeyRotation{}, fmt.Errorf("kds: retire signing key: %w", err)
	}
	if _, err := st.PutValue(ctx, valueCurrentKeyID, []byte(next)); err != nil {
		return KeyRotation{}, fmt.Errorf("kds: store current signing key: %w", err)
	}
	return KeyRotation{KeyID: next, PreviousKeyID: prev, PreviousRetires: retires}, nil
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
	if ValidateZoneName(claims.Zone) != nil || claims.ID == "" || !validKeyID(claims.KeyID) || claims.ExpiresAt.IsZero() {
		return claims, nil, nil, fmt.Errorf("%w: bad claims (zone, id, kid and expiresAt are required)", ErrInvalidToken)
	}
	return claims, payload, sig, nil
}

// validKeyID accepts the serial numbers RotateSigningKey hands out.
func validKeyID(kid string) bool {
	n, err := strconv.Atoi(kid)
	return err == nil && n > 0 && strconv.Itoa(n) == kid
}

func newKey() []byte {
	key := make([]byte, 32)
	_, _ = rand.Read(key) // crypto/rand.Read never fails on supported platforms
	return key
}

// currentKey returns the id and key new tokens are signed with, creating key
// "1" when create is set and there is none (put-if-absent, so racing
// replicas agree on one key).
func currentKey(ctx context.Context, st store.Store, create bool) (string, []byte, error) {
	keyMu.Lock()
	defer keyMu.Unlock()
	return currentKeyLocked(ctx, st, create)
}

func currentKeyLocked(ctx context.Context, st store.Store, create bool) (string, []byte, error) {
	b, err := st.GetValue(ctx, valueCurrentKeyID)
	switch {
	case errors.Is(err, store.ErrNotFound) && create:
		if _, err := st.CreateValue(ctx, valueSigningKeyPrefix+"1", newKey()); err != nil {
			return "", nil, fmt.Errorf("kds: store signing key: %w", err)
		}
		if b, err = st.CreateValue(ctx, valueCurrentKeyID, []byte("1")); err != nil {
			return "", nil, fmt.Errorf("kds: store current signing key: %w", err)
		}
	case err != nil:
		return "", nil, fmt.Errorf("kds: read current signing key: %w", err)
	}
	kid := string(b)
	key, err := st.GetValue(ctx, valueSigningKeyPrefix+kid)
	if err != nil {
		return "", nil, fmt.Errorf("kds: read signing key %s: %w", kid, err)
	}
	return kid, key, nil
}

// keyMu serializes key creation and rotation within a process.
var keyMu sync.Mutex

// verifier checks tokens against the store's keys, their retirement and the
// revocation list.
type verifier struct {
	st store.Store

	mu        sync.Mutex
	keys      map[string][]byte // by key id; keys never change once created
	current   int               // the current key id, as last read
	currentAt time.Time
}

// verify returns the claims of a valid, unexpired, unrevoked token signed
// with a key that is not retired.
func (v *verifier) verify(ctx context.Context, token string) (ZoneTokenClaims, error) {
	claims, payload, sig, err := splitToken(token)
	if err != nil {
		return claims, err
	}
	key, err := v.key(ctx, claims.KeyID)
	if err != nil {
		return claims, err
	}
	if key == nil || !hmac.Equal(sign(key, payload), sig) {
		return claims, fmt.Errorf("%w: bad signature", ErrInvalidToken)
	}
	return claims, v.stillValid(ctx, claims)
}

// stillValid checks what can change after a token was accepted: expiry, its
// key's retirement and revocation. Servers call it for live streams.
func (v *verifier) stillValid(ctx context.Context, claims ZoneTokenClaims) error {
	now := time.Now()
	if !now.Before(claims.ExpiresAt) {
		return fmt.Errorf("%w: id %s expired at %s", ErrExpiredToken, claims.ID, claims.ExpiresAt.Format(time.RFC3339))
	}
	b, err := v.st.GetValue(ctx, valueRetiredKeyPrefix+claims.KeyID)
	switch {
	case err == nil:
		at, perr := time.Parse(time.RFC3339Nano, string(b))
		if perr != nil || !now.Before(at) {
			return fmt.Errorf("%w: id %s, key %s retired at %s", ErrRetiredKey, claims.ID, claims.KeyID, string(b))
		}
	case !errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("kds: read key retirement: %w", err)
	}
	revoked, err := isRevoked(ctx, v.st, claims.ID)
	if err != nil {
		return err
	}
	if revoked {
		return fmt.Errorf("%w: id %s", ErrRevokedToken, claims.ID)
	}
	return nil
}

// key returns the signing key kid, nil when there is none. Key ids are
// serials up to the current one: an id above the last current id seen makes
// the verifier read the current id again, at most every keyRefresh, so
// forged ids cost the store nothing more.
func (v *verifier) key(ctx context.Context, kid string) ([]byte, error) {
	n, _ := strconv.Atoi(kid)
	v.mu.Lock()
	key, ok := v.keys[kid]
	current, readAt := v.current, v.currentAt
	v.mu.Unlock()
	if ok {
		return key, nil
	}
	if n > current {
		if current > 0 && time.Since(readAt) < keyRefresh {
			return nil, nil
		}
		cur, _, err := currentKey(ctx, v.st, true)
		if err != nil {
			return nil, err
		}
		current, _ = strconv.Atoi(cur)
		v.mu.Lock()
		v.current, v.currentAt = current, time.Now()
		v.mu.Unlock()
		if n > current {
			return nil, nil
		}
	}
	key, err := v.st.GetValue(ctx, valueSigningKeyPrefix+kid)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("kds: read signing key: %w", err)
	}
	v.mu.Lock()
	if v.keys == nil {
		v.keys = map[string][]byte{}
	}
	v.keys[kid] = key
	v.mu.Unlock()
	return key, nil
}

// isAuthError reports whether err means the zone's token is not (or no
// longer) accepted.
func isAuthError(err error) bool {
	return errors.Is(err, ErrInvalidToken) || errors.Is(err, ErrRevokedToken) ||
		errors.Is(err, ErrExpiredToken) || errors.Is(err, ErrRetiredKey)
}
