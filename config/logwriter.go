package config

import (
	"io"
	"sync"
)

// lineWriter is a logger's output and the lock hclog holds while it formats
// a line and hands it over (LoggerOptions.Mutex and Output together), so
// that lines logged at the same moment leave in one write instead of one
// each: global's API logs a line per resource written, and eight clients'
// writes are answered together when they share a transaction.
//
// Nothing waits in a buffer for later: the call that logged a line returns
// once a write holding it returned (its own, or one that another caller
// started after the line was queued), so a line is out before the code
// after the log call runs and nothing is lost when the process dies. Lines
// leave in the order they were logged.
//
// Write must be called with the lock held, as hclog does (it writes a whole
// line between Lock and Unlock); Unlock then writes what the holder queued.
type lineWriter struct {
	mu sync.Mutex // hclog's lock
	// queuedBy is the number of the line the lock's holder queued; 0 when
	// it queued none. Guarded by mu.
	queuedBy uint64

	out     io.Writer
	pmu     sync.Mutex
	cond    sync.Cond // on pmu: a write returned
	pending []byte    // lines queued and not yet being written
	spare   []byte    // the buffer of the last write, reused
	queued  uint64    // lines queued so far
	flushed uint64    // lines written so far (or whose write failed)
	writing bool      // a write is under way
}

// maxSpare is the largest buffer kept for the next lines.
const maxSpare = 64 << 10

func newLineWriter(out io.Writer) *lineWriter {
	w := &lineWriter{out: out}
	w.cond.L = &w.pmu
	return w
}

func (w *lineWriter) Lock() { w.mu.Lock() }

// Unlock releases the lock, then returns once the line its holder queued
// (if any) is written.
func (w *lineWriter) Unlock() {
	n := w.queuedBy
	w.queuedBy = 0
	w.mu.Unlock()
	if n > 0 {
		w.flush(n)
	}
}

// Write queues p; the lock must be held, and Unlock writes it.
func (w *lineWriter) Write(p []byte) (int, error) {
	w.pmu.Lock()
	w.pending = append(w.pending, p...)
	w.queued++
	w.queuedBy = w.queued
	w.pmu.Unlock()
	return len(p), nil
}

// flush returns once line n is written: it writes everything queued when
// no write is under way, else waits for the write under way, whose writer
// or a waiter then writes what queued meanwhile.
func (w *lineWriter) flush(n uint64) {
	w.pmu.Lock()
	defer w.pmu.Unlock()
	for w.flushed < n {
		if w.writing {
			w.cond.Wait()
			continue
		}
		buf, upTo := w.pending, w.queued
		w.pending, w.spare = w.spare[:0], nil
		w.writing = true
		w.pmu.Unlock()
		// A failed write loses its lines as hclog would (it ignores the error).
		_, _ = w.out.Write(buf)
		w.pmu.Lock()
		w.writing = false
		w.flushed = upTo
		if cap(buf) <= maxSpare {
			w.spare = buf
		}
		w.cond.Broadcast()
	}
}
