package listen

import (
	"fmt"
	"syscall"
)

// ReservedFDs is the part of the open-file limit kept for everything but the
// listeners' connections: embedded etcd's files and sockets, the store
// client, outgoing connections, logs.
const ReservedFDs = 256

// Cap is one listener's connection cap, by the config key that sets it.
type Cap struct {
	Key string
	Max *int
}

// FitFDLimit makes the caps fit under the process's open-file limit with
// ReservedFDs to spare, scaling them down in proportion when they do not, so
// that no flood of connections can starve etcd of file descriptors. It
// returns a note for the log when it changed something, and an error when
// the limit is too low to serve at all.
func FitFDLimit(caps ...Cap) (string, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return "", nil // unknown: keep the configured caps
	}
	return fit(int64(lim.Cur), caps)
}

func fit(limit int64, caps []Cap) (string, error) {
	budget := limit - ReservedFDs
	if budget < int64(8*len(caps)) {
		return "", fmt.Errorf("the open-file limit (ulimit -n) is %d: at least %d is needed (%d kept for etcd and the process, 8 per listener)",
			limit, ReservedFDs+8*len(caps), ReservedFDs)
	}
	var sum int64
	for _, c := range caps {
		sum += int64(*c.Max)
	}
	if sum <= budget {
		return "", nil
	}
	note := fmt.Sprintf("open-file limit %d is below the listeners' connection caps (%d) plus %d reserved; lowered:", limit, sum, ReservedFDs)
	for _, c := range caps {
		n := max(int(int64(*c.Max)*budget/sum), 1)
		note += fmt.Sprintf(" %s %d->%d", c.Key, *c.Max, n)
		*c.Max = n
	}
	return note, nil
}
