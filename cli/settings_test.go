package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runApp(t *testing.T, conf string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	app := &App{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, ConfigPath: conf}
	code := app.Run(context.Background(), args)
	return code, out.String(), errb.String()
}

func TestNormalizeAddress(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{in: "127.0.0.1:5681", want: "http://127.0.0.1:5681"},
		{in: "http://127.0.0.1:5681/", want: "http://127.0.0.1:5681"},
		{in: "https://cp.example.com", want: "https://cp.example.com"},
		{in: " localhost:5681 ", want: "http://localhost:5681"},
		{in: "[::1]:5681", want: "http://[::1]:5681"},
		{in: "ftp://x:21", err: `scheme "ftp"`},
		{in: "http://", err: "has no host"},
		{in: "http://a b", err: "must be a URL"},
	} {
		got, err := NormalizeAddress(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %q %v, want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestAddressWithoutSchemeReachesTheServer(t *testing.T) {
	g := startGlobal(t)
	conf := filepath.Join(t.TempDir(), "c.yaml")
	code, out, errOut := runApp(t, conf, "--address", g.APIAddr(), "get", "meshes")
	if code != 0 || !strings.Contains(out, "default") {
		t.Fatalf("get meshes with --address %s: %d %q %q", g.APIAddr(), code, out, errOut)
	}
	code, _, errOut = runApp(t, conf, "config", "set", "--address", g.APIAddr(), "--token", "t0k")
	if code != 0 {
		t.Fatalf("config set: %d %s", code, errOut)
	}
	b, _ := os.ReadFile(conf)
	if !strings.Contains(string(b), "address: http://"+g.APIAddr()) {
		t.Fatalf("saved settings: %s", b)
	}
}

func TestConfigSetRefusesAnEmptyToken(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "c.yaml")
	if code, _, errOut := runApp(t, conf, "config", "set", "--address", "http://127.0.0.1:5681", "--token", "good"); code != 0 {
		t.Fatalf("config set: %s", errOut)
	}
	before, _ := os.ReadFile(conf)
	for _, tok := range []string{"", "  \n"} {
		code, _, errOut := runApp(t, conf, "config", "set", "--address", "http://10.0.0.1:5681", "--token", tok)
		if code == 0 || !strings.Contains(errOut, "--token is empty") {
			t.Fatalf("token %q: code %d, stderr %q", tok, code, errOut)
		}
	}
	after, _ := os.ReadFile(conf)
	if !bytes.Equal(before, after) {
		t.Fatalf("a refused config set changed the settings:\n%s\n->\n%s", before, after)
	}
	// No --token at all keeps the saved one.
	if code, _, errOut := runApp(t, conf, "config", "set", "--address", "10.0.0.1:5681"); code != 0 {
		t.Fatalf("config set without token: %s", errOut)
	}
	b, _ := os.ReadFile(conf)
	if !strings.Contains(string(b), "token: good") || !strings.Contains(string(b), "http://10.0.0.1:5681") {
		t.Fatalf("settings: %s", b)
	}
}

func TestGetEffective(t *testing.T) {
	g := startGlobal(t)
	conf := filepath.Join(t.TempDir(), "c.yaml")
	base := []string{"--address", g.APIAddr(), "--token", g.AdminToken()}
	doc := "type: MeshTrace\nname: bare\nmesh: default\nspec:\n  default:\n    backends:\n    - zipkin:\n        url: http://zipkin:9411\n"
	var out, errb bytes.Buffer
	app := &App{Stdin: strings.NewReader(doc), Stdout: &out, Stderr: &errb, ConfigPath: conf}
	if code := app.Run(context.Background(), append(base, "apply", "-f", "-")); code != 0 {
		t.Fatalf("apply: %s", errb.String())
	}
	_, applied, _ := runApp(t, conf, append(base, "get", "meshtrace", "bare", "-o", "yaml")...)
	_, effective, _ := runApp(t, conf, append(base, "get", "meshtrace", "bare", "-o", "yaml", "--effective")...)
	_, list, _ := runApp(t, conf, append(base, "get", "meshtraces", "-o", "json", "--effective")...)
	if strings.Contains(applied, "targetRef") || strings.Contains(applied, "apiVersion") {
		t.Errorf("get shows defaults that were not applied:\n%s", applied)
	}
	for _, out := range []string{effective, list} {
		if !strings.Contains(out, "Mesh") || !strings.Contains(out, "httpJson") || !strings.Contains(out, "Zipkin") {
			t.Errorf("--effective lacks the defaults:\n%s", out)
		}
	}
}
