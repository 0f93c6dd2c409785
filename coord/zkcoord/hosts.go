package zkcoord

import "sync"

// hostList hands the ZooKeeper client its servers in turn and asks it to
// pause (retryStart) only after every server failed once since the last
// session. The client's stock provider pauses a second before trying the
// server it just lost, so with one server every reconnect took a second
// longer than needed. Names are resolved at dial time, so a server that
// moves is found again.
type hostList struct {
	mu      sync.Mutex
	servers []string
	next    int
	tried   int // servers tried since the last session
}

func (h *hostList) Init(servers []string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.servers = servers
	return nil
}

func (h *hostList) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.servers)
}

func (h *hostList) Next() (server string, retryStart bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	server = h.servers[h.next]
	h.next = (h.next + 1) % len(h.servers)
	h.tried++
	if h.tried > len(h.servers) {
		h.tried = 1
		retryStart = true
	}
	return server, retryStart
}

func (h *hostList) Connected() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.tried = 0
}
