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

	"github.com/meshtrace/meshtrace/global"
	"github.com/meshtrace/meshtrace/kds"
)

// globalToken asks a running global (its REST API, with the admin token) to
// issue a zone token: `meshtrace-cp global token zone --name west`.
func globalToken(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "zone" {
		return errors.New("token: want `global token zone --name ZONE`")
	}
	fs := flag.NewFlagSet("global token zone", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "the global's YAML configuration file (for its API address and admin token)")
	name := fs.String("name", "", "zone name")
	api := fs.String("api", "", "global REST API address (default api.address from the config)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *name == "" {
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
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, addr+"/tokens/zone", strings.NewReader(fmt.Sprintf(`{"zone":%q}`, *name)))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("token: global answered %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	token = strings.TrimSpace(string(body))
	fmt.Fprintln(stdout, token)
	if claims, err := kds.ParseZoneToken(token); err == nil {
		fmt.Fprintf(stderr, "token id %s (revoke with: curl -X DELETE -H 'Authorization: Bearer <admin token>' %s/tokens/zone/%s)\n", claims.ID, addr, claims.ID)
	}
	return nil
}
