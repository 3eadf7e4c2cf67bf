package hygiene

import (
	"net/http"
	"net/textproto"
	"strings"
)

// Header refusals (see CheckHeaders).
const (
	HeaderOK = iota
	HeaderTooMany
	HeaderTooLarge
	HeaderUpgrade
)

// HeaderLimits bound what one request's header section may hold.
type HeaderLimits struct {
	// MaxCount is the most header fields (values, not names) a request
	// may carry.
	MaxCount int
	// MaxBytes bounds the summed size of names and values (plus ": " and
	// CRLF each), the request line excluded.
	MaxBytes int
}

// CheckHeaders applies the limits and refuses protocol switches: an
// Upgrade (websocket, h2c) or HTTP2-Settings field, or "upgrade" named in
// Connection. The gateway proxies plain request/response exchanges only;
// a switched protocol would pass every later byte unchecked.
//
// net/http has already refused what it cannot parse (invalid names,
// control bytes in values, a second Host) and heads over the server's
// MaxHeaderBytes, which is set above MaxBytes so that ordinary oversize
// requests reach this check and are answered and counted here.
func CheckHeaders(h http.Header, l HeaderLimits) int {
	count, size := 0, 0
	for k, vs := range h {
		count += len(vs)
		for _, v := range vs {
			size += len(k) + len(v) + 4
		}
	}
	if l.MaxCount > 0 && count > l.MaxCount {
		return HeaderTooMany
	}
	if l.MaxBytes > 0 && size > l.MaxBytes {
		return HeaderTooLarge
	}
	if len(h["Upgrade"]) > 0 || len(h["Http2-Settings"]) > 0 {
		return HeaderUpgrade
	}
	for _, v := range h["Connection"] {
		if containsToken(v, "upgrade") {
			return HeaderUpgrade
		}
	}
	return HeaderOK
}

// containsToken reports whether the comma-separated list v has token t
// (case-insensitively).
func containsToken(v, t string) bool {
	for v != "" {
		var item string
		item, v, _ = strings.Cut(v, ",")
		if strings.EqualFold(textproto.TrimString(item), t) {
			return true
		}
	}
	return false
}
