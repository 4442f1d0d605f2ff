package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/meshtrace/meshtrace/global"
	"github.com/meshtrace/meshtrace/kds"
)

// globalToken manages zone tokens through a running global (its REST API,
// with the admin token): `global token zone --name west [--valid-for 24h]`
// issues one, `global token rotate-key [--grace-period 24h]` rotates the
// signing key.
func globalToken(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "zone" && args[0] != "rotate-key") {
		return errors.New("token: want `global token zone --name ZONE` or `global token rotate-key`")
	}
	fs := flag.NewFlagSet("global token "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "the global's YAML configuration file (for its API address and admin token)")
	api := fs.String("api", "", "global REST API address (default api.address from the config)")
	name := fs.String("name", "", "zone name")
	validFor := fs.Duration("valid-for", kds.DefaultTokenValidity, "how long the zone token is valid")
	grace := fs.Duration("grace-period", kds.DefaultKeyGracePeriod, "how long tokens of the previous key stay valid (0 retires it now)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if args[0] == "zone" && *name == "" {
		return errors.New("token: --name is required")
	}
	cfg, err := global.LoadConfig(*path)
	if err != nil {
		return err
	}
	addr := cfg.API.Address
	if *api != "" {
		addr = *api
	}
	token := cfg.API.AdminToken
	if token == "" {
		b, err := os.ReadFile(filepath.Join(cfg.DataDir, global.AdminTokenFile))
		if err != nil {
			return fmt.Errorf("token: admin token: %w (set api.adminToken or run where the global's dataDir is)", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	if args[0] == "rotate-key" {
		body, err := post(ctx, addr+"/tokens/zone/signing-key/rotate", token, fmt.Sprintf(`{"gracePeriod":%q}`, grace.String()))
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, body)
		return nil
	}
	body, err := post(ctx, addr+"/tokens/zone", token, fmt.Sprintf(`{"zone":%q,"validFor":%q}`, *name, validFor.String()))
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, body)
	if claims, err := kds.ParseZoneToken(body); err == nil {
		fmt.Fprintf(stderr, "token id %s, key %s, expires %s (revoke with: curl -X DELETE -H 'Authorization: Bearer <admin token>' %s/tokens/zone/%s)\n",
			claims.ID, claims.KeyID, claims.ExpiresAt.Format(time.RFC3339), addr, claims.ID)
	}
	return nil
}

// post sends a JSON body to global with the admin token and returns the
// answer's body.
func post(ctx context.Context, url, token, body string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("token: global answered %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return strings.TrimSpace(string(b)), nil
}
