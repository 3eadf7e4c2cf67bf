package proxy

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rampart-go/rampart/shared/breaker"
)

// Outcomes of one upstream exchange, the bounded "outcome" label.
const (
	outcome2xx = iota
	outcome3xx
	outcome4xx
	outcome5xx
	outcomeError
	outcomeOpen
	outcomes
)

var outcomeNames = [outcomes]string{"2xx", "3xx", "4xx", "5xx", "error", "circuit_open"}

func outcomeOf(resp *http.Response, err error) int {
	if err != nil || resp == nil {
		return outcomeError
	}
	switch {
	case resp.StatusCode >= 500:
		return outcome5xx
	case resp.StatusCode >= 400:
		return outcome4xx
	case resp.StatusCode >= 300:
		return outcome3xx
	}
	return outcome2xx
}

// Metrics are the per-upstream RED metrics and the breaker state.
type Metrics struct {
	duration *prometheus.HistogramVec
	retries  *prometheus.CounterVec
	state    *prometheus.GaugeVec
	changes  *prometheus.CounterVec
	// children are resolved once per upstream so the hot path does no
	// label lookups.
	obs     map[string]*[outcomes]prometheus.Observer
	retried map[string]prometheus.Counter
}

// NewMetrics registers the upstream metrics for the named upstreams.
func NewMetrics(reg prometheus.Registerer, upstreams []string) (*Metrics, error) {
	m := &Metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rampart_gateway_upstream_request_duration_seconds",
			Help:    "Upstream exchanges (one per attempt) to response headers, by upstream and outcome (2xx..5xx, error, circuit_open).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 15},
		}, []string{"upstream", "outcome"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rampart_gateway_upstream_retries_total",
			Help: "Idempotent requests sent again because the upstream connection could not be opened.",
		}, []string{"upstream"}),
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rampart_gateway_circuit_state",
			Help: "Circuit breaker state per upstream: 0 closed, 1 half-open, 2 open.",
		}, []string{"upstream"}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rampart_gateway_circuit_transitions_total",
			Help: "Circuit breaker state changes, by upstream and new state.",
		}, []string{"upstream", "state"}),
		obs:     map[string]*[outcomes]prometheus.Observer{},
		retried: map[string]prometheus.Counter{},
	}
	for _, c := range []prometheus.Collector{m.duration, m.retries, m.state, m.changes} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, u := range upstreams {
		var o [outcomes]prometheus.Observer
		for i, name := range outcomeNames {
			o[i] = m.duration.WithLabelValues(u, name)
		}
		m.obs[u] = &o
		m.retried[u] = m.retries.WithLabelValues(u)
		m.state.WithLabelValues(u).Set(0)
	}
	return m, nil
}

// OnChange returns a breaker.Options.OnChange that keeps the state gauge.
func (m *Metrics) OnChange(upstream string) func(from, to breaker.State) {
	return func(_, to breaker.State) {
		m.state.WithLabelValues(upstream).Set(float64(to))
		m.changes.WithLabelValues(upstream, to.String()).Inc()
	}
}

func (m *Metrics) observe(upstream string, outcome int, d time.Duration) {
	if m == nil {
		return
	}
	if o, ok := m.obs[upstream]; ok {
		o[outcome].Observe(d.Seconds())
	}
}

func (m *Metrics) retry(upstream string) {
	if m == nil {
		return
	}
	if c, ok := m.retried[upstream]; ok {
		c.Inc()
	}
}
