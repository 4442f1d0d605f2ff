package kds

import (
	"maps"
	"time"

	"github.com/meshtrace/meshtrace/resource"
)

// RecordRevisions makes the clients created until restore is called record
// the global revision of every copy they apply (GlobalRevisions).
func RecordRevisions() (restore func()) {
	was := recordRevisions.Swap(true)
	return func() { recordRevisions.Store(was) }
}

// GlobalRevisions maps each copy this client applied (and still holds) to
// the global revision it was sent at; nil unless RecordRevisions was on when
// the client was created.
func (c *Client) GlobalRevisions() map[resource.Key]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.revisions)
}

// SetIdleUploadCursorEvery changes how often global keeps an idle zone's
// upload cursor (idleUploadCursorEvery) until restore is called.
func SetIdleUploadCursorEvery(d time.Duration) (restore func()) {
	was := idleUploadCursorEvery.Swap(int64(d))
	return func() { idleUploadCursorEvery.Store(was) }
}
