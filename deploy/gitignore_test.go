package deploy

import (
	"os/exec"
	"strings"
	"testing"
)

// Every file the READMEs' commands create is ignored by git: state of global
// and zones, tokens, keys and certificates, binaries and image contexts.
func TestGitignoreCoversWhatTheReadmeCreates(t *testing.T) {
	git, err := exec.LookPath("git")
	if err != nil {
		t.Skip("no git")
	}
	created := []string{
		"bin/meshtrace-cp", "bin/meshtracectl", "bin/image-root/data", // make build, make image
		"data/admin-token", "data/kds-tls/ca.crt", "data/etcd/member/snap/db", // bin/meshtrace-cp global
		"west.token", "east.token", // meshtrace-cp global token zone / meshtracectl generate zone-token
		"data-west/etcd/member/wal/0.wal", "data-east/cursor", // a zone's dataDir
		"kds.crt", "kds.key", "kds-ca.crt", // deploy/README.md
	}
	cmd := exec.Command(git, append([]string{"check-ignore", "--no-index", "-v", "-n"}, created...)...)
	cmd.Dir = ".."
	out, _ := cmd.Output() // exit 1 when some path is not ignored; the output says which
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.HasPrefix(line, "::") {
			t.Errorf("not ignored by .gitignore: %s", strings.TrimSpace(strings.TrimPrefix(line, "::")))
		}
	}
	if !strings.Contains(string(out), "admin-token") {
		t.Fatalf("git check-ignore said nothing useful: %q", out)
	}
}
