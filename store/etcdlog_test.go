package store

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// etcd's fatal errors say FATAL, even while the store is closing (when
// ordinary errors are demoted to debug).
func TestEtcdFatalLoggedAsFatal(t *testing.T) {
	for _, closing := range []bool{false, true} {
		var out bytes.Buffer
		c := new(atomic.Bool)
		c.Store(closing)
		lg := newEtcdZapLogger(hclog.New(&hclog.LoggerOptions{Output: &out, Level: hclog.Info}), c).
			WithOptions(zap.WithFatalHook(zapcore.WriteThenPanic))
		func() {
			defer func() { _ = recover() }()
			lg.Fatal("failed to purge snap db file", zap.String("error", "no space left on device"))
		}()
		got := out.String()
		if !strings.Contains(got, "FATAL") || !strings.Contains(got, "failed to purge snap db file") || !strings.Contains(got, "fatal=true") {
			t.Errorf("closing=%v: log %q does not mark the fatal error", closing, got)
		}
	}
}

// etcd's fatal error ends the process with status 1 and one plain line.
func TestEtcdFatalExits(t *testing.T) {
	if os.Getenv("MESHTRACE_TEST_ETCD_FATAL") != "" {
		newEtcdZapLogger(hclog.NewNullLogger(), new(atomic.Bool)).Fatal("failed to commit tx")
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestEtcdFatalExits$")
	cmd.Env = append(os.Environ(), "MESHTRACE_TEST_ETCD_FATAL=1")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "meshtrace-cp: fatal: embedded etcd: failed to commit tx") {
		t.Fatalf("exit %v, output %q", err, out)
	}
}

// The storage-version monitor's "missing term information" of a fresh start
// is debug; the same message with another cause, and other errors, stay errors.
func TestEtcdBenignStartErrorIsDebug(t *testing.T) {
	var out bytes.Buffer
	lg := newEtcdZapLogger(hclog.New(&hclog.LoggerOptions{Output: &out, Level: hclog.Info}), new(atomic.Bool))
	lg.Error("failed to update storage version", zap.String("cluster-version", "3.7.0"),
		zap.Error(errors.New("cannot detect storage schema version: missing term information")))
	if out.Len() != 0 {
		t.Fatalf("benign start-up message logged at info or above: %q", out.String())
	}
	lg.Error("failed to update storage version", zap.Error(errors.New("input/output error")))
	lg.Error("failed to purge snap db file", zap.Error(errors.New("missing term information")))
	if got := out.String(); strings.Count(got, "[ERROR]") != 2 {
		t.Fatalf("real errors not logged as errors: %q", got)
	}
}
