package store_test

import (
	"testing"

	"github.com/meshtrace/meshtrace/store"
	"github.com/meshtrace/meshtrace/store/storetest"
)

func TestMemoryConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s := store.NewMemory()
		t.Cleanup(func() { s.Close() })
		return s
	})
}
