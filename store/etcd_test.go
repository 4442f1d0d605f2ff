package store_test

import (
	"context"
	"testing"

	"github.com/meshtrace/meshtrace/store"
	"github.com/meshtrace/meshtrace/store/storetest"
)

// openEmbedded starts an embedded etcd in a temp dir; fsync is off to keep the
// suite fast (durability is tested by TestEmbeddedReopen with the default).
func openEmbedded(t testing.TB, dir string, noFsync bool) *store.EtcdStore {
	t.Helper()
	s, err := store.OpenEmbedded(context.Background(), store.EmbeddedConfig{Dir: dir, UnsafeNoFsync: noFsync})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestEtcdConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openEmbedded(t, t.TempDir(), true)
	})
}
