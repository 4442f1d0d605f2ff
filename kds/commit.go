package kds

import (
	"context"
	"errors"
	"fmt"

	"github.com/meshtrace/meshtrace/resource"
	"github.com/meshtrace/meshtrace/store"
)

// commitOps writes a received batch's ops to st in one transaction; when that
// fails it retries them one by one, so a single bad resource is rejected
// alone. done(i) is called for every op written, rejected(i, err) for every op
// the store refuses for good (permanent); any other error stops the commit and
// is returned, and the stream is cut. Deleting what is already gone succeeds.
//
// with, when set, is a value op (the sync cursor) that lands in the same
// transaction as the last of ops, saving the store a second commit and fsync
// per batch; it reports whether it did. It is not written when the
// transaction fails: after the one-by-one retry the caller writes it alone.
// It goes into ops' spare room when there is some (the caller leaves room
// for it: a batch's ops are not copied to add one), else into a copy.
func commitOps(ctx context.Context, st store.Store, ops []store.Op, with *store.Op, done func(i int), rejected func(i int, err error)) (withWritten bool, err error) {
	if len(ops) == 0 {
		return false, nil
	}
	all := ops
	if with != nil {
		all = append(ops, *with)
	}
	if _, err := st.Txn(ctx, all); err == nil {
		for i := range ops {
			done(i)
		}
		return with != nil, nil
	}
	for i, op := range ops {
		var err error
		if op.Delete {
			_, err = st.Delete(ctx, op.Key, store.AnyVersion)
			if errors.Is(err, store.ErrNotFound) {
				err = nil
			}
		} else {
			_, err = st.Put(ctx, op.Resource, store.AnyVersion)
		}
		switch {
		case err == nil:
			done(i)
		case permanent(err):
			rejected(i, err)
		default:
			return false, fmt.Errorf("kds: write %s: %w", op.Key, err)
		}
	}
	return false, nil
}

// permanent reports store errors that retrying the same write cannot fix.
func permanent(err error) bool {
	var inv *resource.InvalidError
	return errors.Is(err, store.ErrTooLarge) || errors.As(err, &inv)
}
