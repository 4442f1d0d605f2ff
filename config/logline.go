package config

import (
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// auditLogger is the hclog logger LogConfig.Logger returns (and every
// Named, ResetNamed or With child of it): hclog's own, which also formats
// the audit line of a change to a resource itself (Audit). The API logs
// one per resource written; through hclog, each boxes its four values into
// interfaces and formats the time with time.Format's layout parser.
type auditLogger struct {
	hclog.Logger
	w *lineWriter
	// name is the logger's hclog name, written before the message.
	name string
	// fast: lines are text (not JSON) and carry no implied (With) fields,
	// so Audit can write them without hclog.
	fast bool
	now  func() time.Time // hclog's TimeFn
}

// wrapLogger returns l, a logger from the hclog.New that writes to w with
// the given options, as an auditLogger.
func wrapLogger(l hclog.Logger, w *lineWriter, json bool, now func() time.Time) hclog.Logger {
	return &auditLogger{Logger: l, w: w, name: l.Name(), fast: !json && len(l.ImpliedArgs()) == 0, now: now}
}

// linePool holds the buffers Audit formats lines in.
var linePool = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// Audit logs at Info what
//
//	Info(msg, "type", typ, "mesh", mesh, "name", name, "rev", rev)
//
// logs, byte for byte. It formats the line itself when the logger writes
// text and the values need no quoting (hclog quotes a value with a rune
// outside '-' to '~', and writes one with a newline on lines of its own);
// otherwise it hands the fields to hclog.
func (l *auditLogger) Audit(msg, typ, mesh, name string, rev int64) {
	if !l.IsInfo() {
		return
	}
	if !l.fast || needsQuoting(typ) || needsQuoting(mesh) || needsQuoting(name) {
		l.Info(msg, "type", typ, "mesh", mesh, "name", name, "rev", rev)
		return
	}
	t := l.now()
	bp := linePool.Get().(*[]byte)
	b, ok := appendTimestamp((*bp)[:0], t)
	if !ok {
		linePool.Put(bp)
		l.Info(msg, "type", typ, "mesh", mesh, "name", name, "rev", rev)
		return
	}
	// hclog: time, level, name and message, ':' before the fields, then
	// " key=value" each; an empty string is written "".
	b = append(b, " [INFO]  "...)
	if l.name != "" {
		b = append(b, l.name...)
		if msg != "" {
			b = append(b, ": "...)
			b = append(b, msg...)
		}
	} else {
		b = append(b, msg...)
	}
	b = append(b, ':')
	b = appendField(b, "type", typ)
	b = appendField(b, "mesh", mesh)
	b = appendField(b, "name", name)
	b = append(b, " rev="...)
	b = strconv.AppendInt(b, rev, 10)
	b = append(b, '\n')
	// As hclog does: the line is handed over under the lock, in one Write.
	l.w.Lock()
	_, _ = l.w.Write(b)
	l.w.Unlock()
	if cap(b) <= maxLine {
		*bp = b
		linePool.Put(bp)
	}
}

// maxLine is the largest line buffer kept for the next lines.
const maxLine = 4 << 10

// appendField appends " key=value" as hclog writes a string value that
// needs no quoting.
func appendField(b []byte, key, val string) []byte {
	b = append(b, ' ')
	b = append(b, key...)
	b = append(b, '=')
	if val == "" {
		return append(b, `""`...)
	}
	return append(b, val...)
}

// needsQuoting is hclog's: a value with a rune outside '-' to '~' is
// quoted (and one with a newline written on lines of its own). The empty
// string is not: it is written "".
func needsQuoting(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x2D || c > 0x7E {
			return true
		}
	}
	return false
}

// appendTimestamp appends t as hclog.TimeFormat
// ("2006-01-02T15:04:05.000Z0700") formats it, without parsing the layout;
// false for a year outside 0-9999, which time.Format writes otherwise.
func appendTimestamp(b []byte, t time.Time) ([]byte, bool) {
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return b, false
	}
	hour, minute, sec := t.Clock()
	b = appendDigits(b, year, 4)
	b = append(b, '-')
	b = appendDigits(b, int(month), 2)
	b = append(b, '-')
	b = appendDigits(b, day, 2)
	b = append(b, 'T')
	b = appendDigits(b, hour, 2)
	b = append(b, ':')
	b = appendDigits(b, minute, 2)
	b = append(b, ':')
	b = appendDigits(b, sec, 2)
	b = append(b, '.')
	b = appendDigits(b, t.Nanosecond()/1e6, 3)
	// Z0700: Z for UTC, else the sign and the offset's whole hours and
	// minutes (its seconds dropped, truncating toward zero as time does).
	_, offset := t.Zone()
	if offset == 0 {
		return append(b, 'Z'), true
	}
	zone := offset / 60
	if zone < 0 {
		b = append(b, '-')
		zone = -zone
	} else {
		b = append(b, '+')
	}
	b = appendDigits(b, zone/60, 2)
	return appendDigits(b, zone%60, 2), true
}

// appendDigits appends the non-negative n in decimal, zero-padded to width.
func appendDigits(b []byte, n, width int) []byte {
	var d [20]byte
	i := len(d)
	for n >= 10 || width > 1 {
		i--
		d[i] = byte('0' + n%10)
		n /= 10
		width--
	}
	i--
	d[i] = byte('0' + n)
	return append(b, d[i:]...)
}
