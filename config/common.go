package config

import (
	"fmt"
	"io"
	"net"
	"time"

	"github.com/hashicorp/go-hclog"
)

// LogConfig is the log section every control plane shares.
type LogConfig struct {
	Level string `json:"level" desc:"trace, debug, info, warn or error."`
	JSON  bool   `json:"json" desc:"Log JSON lines instead of text."`
}

// Validate names the level when it is not one hclog knows.
func (c LogConfig) Validate() error {
	if hclog.LevelFromString(c.Level) == hclog.NoLevel {
		return fmt.Errorf("log.level: %q is not one of trace, debug, info, warn, error", c.Level)
	}
	return nil
}

// Logger builds the named logger c describes, writing to out. Lines logged
// at the same moment share a write (see lineWriter). It and its children
// also have an Audit method writing the audit line of a change to a
// resource without hclog's boxing, reflection and fmt (see auditLogger).
func (c LogConfig) Logger(name string, out io.Writer) hclog.Logger {
	return c.logger(name, newLineWriter(out), time.Now)
}

func (c LogConfig) logger(name string, w *lineWriter, now func() time.Time) hclog.Logger {
	wrap := func(l hclog.Logger) hclog.Logger { return wrapLogger(l, w, c.JSON, now) }
	return wrap(hclog.New(&hclog.LoggerOptions{
		Name:          name,
		Level:         hclog.LevelFromString(c.Level),
		JSONFormat:    c.JSON,
		Output:        w,
		Mutex:         w,
		TimeFn:        now,
		SubloggerHook: wrap,
	}))
}

// IsLoopback reports whether a host:port only listens on the loopback
// interface (localhost, 127.0.0.0/8 or ::1); "", 0.0.0.0 and :: do not.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// DiagnosticsConfig is where a control plane serves /healthz, /readyz and /metrics.
type DiagnosticsConfig struct {
	Address        string `json:"address" desc:"host:port of /healthz, /readyz and Prometheus /metrics."`
	MaxConnections int    `json:"maxConnections" desc:"Cap on open connections to the diagnostics port; at the cap the oldest idle one is closed."`
}
