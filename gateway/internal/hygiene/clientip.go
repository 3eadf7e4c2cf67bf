package hygiene

import (
	"net/http"
	"net/netip"
	"strings"
)

// ClientIP resolves the address a request comes from. The TCP peer is the
// answer unless it is inside one of the trusted proxy prefixes; then
// X-Forwarded-For is read from the right, skipping addresses that are
// themselves trusted proxies, and the first untrusted address is the
// client. A left-most or first-seen rule would let any client name its own
// address and so pick its own rate-limit bucket. With no trusted prefixes
// (the default) X-Forwarded-For is never read.
type ClientIP struct {
	Trusted []netip.Prefix
}

// Resolve returns the client address of r, as text, and whether the peer
// was a trusted proxy.
func (c ClientIP) Resolve(r *http.Request) (ip string, viaProxy bool) {
	peer := peerHost(r.RemoteAddr)
	if len(c.Trusted) == 0 {
		return peer, false
	}
	addr, err := netip.ParseAddr(peer)
	if err != nil || !c.trusted(addr) {
		return peer, false
	}
	client := addr
	values := r.Header.Values("X-Forwarded-For")
	for i := len(values) - 1; i >= 0; i-- {
		v := values[i]
		for v != "" {
			var item string
			if j := strings.LastIndexByte(v, ','); j >= 0 {
				item, v = v[j+1:], v[:j]
			} else {
				item, v = v, ""
			}
			a, err := netip.ParseAddr(strings.TrimSpace(item))
			if err != nil {
				// A malformed hop: stop at the last address we could trust.
				return client.Unmap().String(), true
			}
			client = a
			if !c.trusted(a) {
				return a.Unmap().String(), true
			}
		}
	}
	return client.Unmap().String(), true
}

// Trusts reports whether the request's TCP peer is a trusted proxy.
func (c ClientIP) Trusts(r *http.Request) bool {
	if len(c.Trusted) == 0 {
		return false
	}
	addr, err := netip.ParseAddr(peerHost(r.RemoteAddr))
	return err == nil && c.trusted(addr)
}

func (c ClientIP) trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range c.Trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// peerHost strips the port from a RemoteAddr without allocating.
func peerHost(remote string) string {
	if i := strings.LastIndexByte(remote, ':'); i > 0 && !strings.HasSuffix(remote, "]") {
		remote = remote[:i]
	}
	return strings.TrimSuffix(strings.TrimPrefix(remote, "["), "]")
}
