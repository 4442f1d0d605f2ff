package store

import (
	"fmt"
	"os"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// hclogCore sends etcd's zap logs at error level and above to hclog, so the
// embedded server logs like the rest of meshtrace. Once the store is closing,
// the listener errors etcd reports on shutdown are demoted to debug. Fatal
// and panic entries are always logged, marked FATAL and fatal=true.
type hclogCore struct {
	log     hclog.Logger
	closing *atomic.Bool
	fields  []zapcore.Field
}

func newEtcdZapLogger(log hclog.Logger, closing *atomic.Bool) *zap.Logger {
	return zap.New(&hclogCore{log: log, closing: closing}, zap.WithFatalHook(exitOnFatal{}))
}

// exitOnFatal ends the process after etcd's fatal error was logged, with one
// plain line an operator sees whatever the log format, and status 1.
type exitOnFatal struct{}

func (exitOnFatal) OnWrite(ce *zapcore.CheckedEntry, _ []zapcore.Field) {
	fmt.Fprintf(os.Stderr, "meshtrace-cp: fatal: embedded etcd: %s\n", ce.Message)
	os.Exit(1)
}

func (c *hclogCore) Enabled(l zapcore.Level) bool { return l >= zapcore.ErrorLevel }

func (c *hclogCore) With(fs []zapcore.Field) zapcore.Core {
	return &hclogCore{log: c.log, closing: c.closing, fields: append(append([]zapcore.Field(nil), c.fields...), fs...)}
}

func (c *hclogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *hclogCore) Write(e zapcore.Entry, fs []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range append(c.fields, fs...) {
		f.AddTo(enc)
	}
	args := make([]any, 0, 2*len(enc.Fields))
	for k, v := range enc.Fields {
		args = append(args, k, v)
	}
	switch {
	case e.Level >= zapcore.DPanicLevel:
		// etcd gives up (zap then exits or panics): say so plainly, whatever
		// the closing state. hclog has no fatal level: the message carries it.
		c.log.Error("FATAL: embedded etcd stopped the process: "+e.Message, append(args, "fatal", true)...)
	case c.closing.Load(), benignAtStart(e.Message, enc.Fields):
		c.log.Debug(e.Message, args...)
	default:
		c.log.Error(e.Message, args...)
	}
	return nil
}

func (c *hclogCore) Sync() error { return nil }

// benignAtStart tells the errors a freshly started embedded etcd reports
// while nothing is wrong: its storage-version monitor runs before the first
// raft term is in the backend ("missing term information") and retries on
// its next tick. Logged at error level they only alarm whoever starts us.
func benignAtStart(msg string, fields map[string]any) bool {
	if msg != "failed to update storage version" {
		return false
	}
	err, _ := fields["error"].(string)
	return strings.Contains(err, "missing term information")
}
