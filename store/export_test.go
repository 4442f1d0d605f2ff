package store

// SharedWatches returns the number of running shared watch hubs (each one etcd watch).
func (s *EtcdStore) SharedWatches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.shared)
}
