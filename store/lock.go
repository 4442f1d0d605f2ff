package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// LockFile is the name of the lock a process holds on a data dir it uses.
const LockFile = "meshtrace.lock"

// ErrDirLocked means another process holds the data dir.
var ErrDirLocked = errors.New("data dir is in use by another process")

// DirLock is an exclusive, process-wide lock on a directory.
type DirLock struct {
	f *os.File
}

// LockDir takes the lock on dir (created 0700 when missing) without waiting:
// when another process holds it, the error wraps ErrDirLocked and names
// that process's pid and the dir. The lock ends with Unlock or the process.
func LockDir(dir string) (*DirLock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data dir lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			who := "another process"
			if b, rerr := os.ReadFile(path); rerr == nil {
				if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
					who = "process " + strconv.Itoa(pid)
				}
			}
			abs, _ := filepath.Abs(dir)
			return nil, fmt.Errorf("%w: %s is locked by %s (another meshtrace-cp on the same data dir?)", ErrDirLocked, abs, who)
		}
		return nil, fmt.Errorf("data dir lock %s: %w", path, err)
	}
	// Best effort: the pid only makes the message above more useful.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &DirLock{f: f}, nil
}

// Unlock releases the lock.
func (l *DirLock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// MinFreeBytes is the free space the embedded etcd needs to start: a WAL
// segment (64 MiB, preallocated) plus room for the database to grow.
const MinFreeBytes = 96 << 20

// ErrDiskFull means the data dir's file system has too little free space.
var ErrDiskFull = errors.New("not enough free disk space")

// checkFreeSpace fails when dir's file system has less than min bytes free.
func checkFreeSpace(dir string, min uint64) error {
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		return nil // unknown: let etcd try
	}
	free := fs.Bavail * uint64(fs.Bsize)
	if free < min {
		abs, _ := filepath.Abs(dir)
		return fmt.Errorf("%w: %s has %d MiB free, embedded etcd needs at least %d MiB", ErrDiskFull, abs, free>>20, min>>20)
	}
	return nil
}
