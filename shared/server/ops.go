package server

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check is one readiness dependency (database, NATS, JWKS, an upstream).
type Check struct {
	Name string
	// Fn returns nil when the dependency is usable. It is called with a
	// short deadline.
	Fn func(ctx context.Context) error
}

// OpsHandler serves the ops listener: /metrics from reg (with exemplars, in
// OpenMetrics when the scraper asks for it), /healthz (the process is alive)
// and /readyz (every check passes; the body says which failed, never why in
// detail, since the ops port may be reachable by more people than the logs).
// checks is called per request, so checks added after start count.
func OpsHandler(reg *prometheus.Registry, checks func() []Check) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		Registry:          reg,
	}))
	health := HealthHandler(checks)
	mux.Handle("GET /healthz", health)
	mux.Handle("GET /readyz", health)
	return mux
}

// HealthHandler serves /healthz and /readyz only: the gateway also answers
// them on its public listener, where /metrics must not be.
func HealthHandler(checks func() []Check) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeStatus(w, http.StatusOK, map[string]any{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		failed := RunChecks(r.Context(), checks())
		if len(failed) > 0 {
			writeStatus(w, http.StatusServiceUnavailable, map[string]any{"status": "unavailable", "failed": failed})
			return
		}
		writeStatus(w, http.StatusOK, map[string]any{"status": "ready"})
	})
	return mux
}

// RunChecks runs every check concurrently with a 2-second deadline and
// returns the names of those that failed.
func RunChecks(ctx context.Context, checks []Check) []string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var (
		mu     sync.Mutex
		failed = []string{}
		wg     sync.WaitGroup
	)
	for _, ch := range checks {
		wg.Go(func() {
			if err := ch.Fn(ctx); err != nil {
				mu.Lock()
				failed = append(failed, ch.Name)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	sort.Strings(failed)
	return failed
}

func writeStatus(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}
