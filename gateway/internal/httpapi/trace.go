package httpapi

import (
	"net/http"

	"github.com/rampart-go/rampart/gateway/internal/hygiene"
)

// traceHeaders are the W3C trace-context and baggage fields.
var traceHeaders = []string{"Traceparent", "Tracestate", "Baggage"}

// TraceGuard runs before the tracing middleware and drops the trace
// context an untrusted caller sent, unless trust is set: a caller who
// picks the trace id can splice its requests into someone else's trace,
// and one who sets the sampled flag can make every hop record and export
// spans at its command. Requests from trusted proxies keep theirs.
func TraceGuard(next http.Handler, proxies hygiene.ClientIP, trust bool) http.Handler {
	if trust {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !proxies.Trusts(r) {
			for _, k := range traceHeaders {
				delete(r.Header, k)
			}
		}
		next.ServeHTTP(w, r)
	})
}
