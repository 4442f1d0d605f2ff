package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"
)

// DefaultAddress is the global CP's REST API on a developer machine.
const DefaultAddress = "http://127.0.0.1:5681"

// Settings is what `meshtracectl config` stores.
type Settings struct {
	Address string `json:"address"`
	Token   string `json:"token,omitempty"`
}

// App is one invocation of meshtracectl.
type App struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// ConfigPath overrides where settings are kept (default
	// $MESHTRACECTL_CONFIG or ~/.meshtracectl.yaml).
	ConfigPath string
}

const usage = `meshtracectl: manage MeshTrace policies on a meshtrace control plane

Usage:
  meshtracectl [--address URL] [--token T] <command> [flags]

Commands:
  config set --address URL [--token T]   remember the control plane address (http:// assumed without a scheme) and token
  config view                            show the settings in use
  apply -f FILE|- [--dry-run]            create or update resources (Universal or Kubernetes YAML/JSON, several documents per file)
  get meshes|meshtraces|dataplanes|zones|zone-insights [NAME] [-m MESH] [-o table|yaml|json] [--effective]
  delete meshtrace|mesh|dataplane|zone NAME [-m MESH] [--dry-run]
  inspect dataplane NAME [-m MESH]       merged tracing conf, contributing policies, effective collector
  inspect meshtrace NAME [-m MESH]       proxies the policy applies to, per zone
  residency [ZONE] [-o table|yaml|json]  per zone: residency mode, allowed collectors, proxies by collector, violations
  residency set ZONE [--allow PATTERN]... [--mode Enforce|Audit|Off] [--clear] [--dry-run]
                                         declare where a zone's proxies may send spans (PATTERN: host, *.domain, IP, CIDR, optional :port)
  generate zone-token --zone ZONE [--valid-for 24h]   issue a token a zone CP connects to global with (admin token needed)
  zone release-deletes ZONE              let a zone apply the snapshot deletes it holds (get zones shows them as held)

Environment: MESHTRACECTL_ADDRESS, MESHTRACECTL_TOKEN, MESHTRACECTL_CONFIG.
`

// Run executes args (without the program name) and returns the exit code.
func (a *App) Run(ctx context.Context, args []string) int {
	if err := a.run(ctx, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(a.Stderr, "Error: %v\n", err)
		return 1
	}
	return 0
}

func (a *App) run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("meshtracectl", flag.ContinueOnError)
	fs.SetOutput(a.Stderr)
	fs.Usage = func() { fmt.Fprint(a.Stderr, usage) }
	address := fs.String("address", "", "control plane REST API address (default from config, else "+DefaultAddress+")")
	token := fs.String("token", "", "bearer token for writes")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return errors.New("no command given")
	}
	settings, err := a.loadSettings()
	if err != nil {
		return err
	}
	if v := os.Getenv("MESHTRACECTL_ADDRESS"); v != "" {
		settings.Address = v
	}
	if v := os.Getenv("MESHTRACECTL_TOKEN"); v != "" {
		settings.Token = v
	}
	if *address != "" {
		settings.Address = *address
	}
	if *token != "" {
		settings.Token = *token
	}
	if settings.Address == "" {
		settings.Address = DefaultAddress
	}
	if settings.Address, err = NormalizeAddress(settings.Address); err != nil {
		return fmt.Errorf("--address: %w", err)
	}
	c := &Client{Address: settings.Address, Token: settings.Token}
	cmd, cargs := rest[0], rest[1:]
	switch cmd {
	case "config":
		return a.config(cargs, settings)
	case "apply":
		return a.apply(ctx, c, cargs)
	case "get":
		return a.get(ctx, c, cargs)
	case "delete":
		return a.delete(ctx, c, cargs)
	case "generate":
		return a.generate(ctx, c, cargs)
	case "inspect":
		return a.inspect(ctx, c, cargs)
	case "residency":
		return a.residency(ctx, c, cargs)
	case "zone":
		return a.zone(ctx, c, cargs)
	case "help", "-h", "--help":
		fmt.Fprint(a.Stdout, usage)
		return nil
	}
	return fmt.Errorf("unknown command %q (try: config, apply, get, delete, inspect, residency, generate, zone)", cmd)
}

func (a *App) settingsPath() string {
	if a.ConfigPath != "" {
		return a.ConfigPath
	}
	if v := os.Getenv("MESHTRACECTL_CONFIG"); v != "" {
		return v
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ".meshtracectl.yaml"
	}
	return filepath.Join(home, ".meshtracectl.yaml")
}

func (a *App) loadSettings() (Settings, error) {
	var s Settings
	data, err := os.ReadFile(a.settingsPath())
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("read settings: %w", err)
	}
	if err := yaml.UnmarshalStrict(data, &s); err != nil {
		return s, fmt.Errorf("settings file %s: %w", a.settingsPath(), err)
	}
	return s, nil
}

func (a *App) config(args []string, current Settings) error {
	if len(args) == 0 {
		return errors.New("config: want `set` or `view`")
	}
	switch args[0] {
	case "view":
		out, _ := yaml.Marshal(current)
		fmt.Fprintf(a.Stdout, "# %s\n%s", a.settingsPath(), out)
		return nil
	case "set":
		fs := flag.NewFlagSet("config set", flag.ContinueOnError)
		fs.SetOutput(a.Stderr)
		address := fs.String("address", "", "control plane REST API address")
		token := fs.String("token", "", "bearer token")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		s, err := a.loadSettings()
		if err != nil {
			return err
		}
		tokenGiven := false
		fs.Visit(func(f *flag.Flag) { tokenGiven = tokenGiven || f.Name == "token" })
		if *address != "" {
			addr, err := NormalizeAddress(*address)
			if err != nil {
				return fmt.Errorf("--address: %w", err)
			}
			s.Address = addr
		}
		if tokenGiven {
			// An empty --token is almost always a failed $(cat FILE):
			// saving it would silently drop the token.
			if strings.TrimSpace(*token) == "" {
				return errors.New("--token is empty (did reading the token file fail?); nothing saved")
			}
			s.Token = strings.TrimSpace(*token)
		}
		out, _ := yaml.Marshal(s)
		if err := os.WriteFile(a.settingsPath(), out, 0o600); err != nil {
			return fmt.Errorf("write settings: %w", err)
		}
		fmt.Fprintf(a.Stdout, "settings saved to %s\n", a.settingsPath())
		return nil
	}
	return fmt.Errorf("config: unknown subcommand %q", args[0])
}

// NormalizeAddress accepts a control plane address with or without a scheme
// (127.0.0.1:5681 means http://127.0.0.1:5681) and checks it is an http(s)
// URL with a host.
func NormalizeAddress(addr string) (string, error) {
	addr = strings.TrimSpace(addr)
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil {
		return "", fmt.Errorf("must be a URL such as %s: %w", DefaultAddress, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("scheme %q: want http or https, e.g. %s", u.Scheme, DefaultAddress)
	}
	if u.Host == "" {
		return "", fmt.Errorf("%q has no host, e.g. %s", addr, DefaultAddress)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// interleaved lets flags follow positional arguments (`get meshtraces -o yaml`).
func interleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func printJSONorYAML(w io.Writer, v any, format string) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if format == "json" {
		_, err = fmt.Fprintln(w, string(b))
		return err
	}
	y, err := yaml.JSONToYAML(b)
	if err != nil {
		return err
	}
	_, err = w.Write(y)
	return err
}

func trimKind(s string) string { return strings.ToLower(strings.TrimSpace(s)) }
