package app

import "runtime/debug"

// DefaultGCPercent is the gateway's GOGC when neither GOGC nor GOMEMLIMIT
// is set. A proxy's live heap is small (the token cache, the limiter's
// keys, connection buffers) while it allocates per request, so at Go's
// default of 100 it collects very often for little gain; at 400 the heap
// may grow to five times the live heap between collections. Measured with
// `make bench-gateway` (docs/PERFORMANCE.md, the gateway-gogc100 row).
// Whoever sets GOGC or GOMEMLIMIT keeps the runtime's behaviour exactly.
const DefaultGCPercent = 400

// TuneGC applies DefaultGCPercent unless the environment (lookup, i.e.
// os.LookupEnv in main) sets GOGC or GOMEMLIMIT. It returns the GOGC now in
// effect, -1 meaning "left to the environment".
func TuneGC(lookup func(string) (string, bool)) int {
	if _, ok := lookup("GOGC"); ok {
		return -1
	}
	if _, ok := lookup("GOMEMLIMIT"); ok {
		return -1
	}
	debug.SetGCPercent(DefaultGCPercent)
	return DefaultGCPercent
}
