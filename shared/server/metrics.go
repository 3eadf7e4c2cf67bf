package server

import (
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
)

// Metrics are the HTTP server metrics of one service, named after the
// OpenTelemetry HTTP semantic conventions as Prometheus exports them. Labels
// are bounded: the route template (never the raw path), the method (unknown
// methods fold into _OTHER) and the status code.
type Metrics struct {
	duration *prometheus.HistogramVec
	inflight prometheus.Gauge

	// series caches one entry per label set, so a request costs no label
	// hashing, no status formatting and no allocation. Copy on write: the
	// label sets are few and bounded, and reads take no lock.
	series atomic.Pointer[map[seriesKey]*series]
	mu     sync.Mutex // serialises writers of series
}

type seriesKey struct {
	route, method string
	status        int
}

// series is one histogram child and, per bucket, when it last took an
// exemplar. Prometheus keeps only the latest exemplar of a bucket, so one
// per bucket per exemplarEvery keeps every bucket's link to a trace while
// sparing the per-request exemplar (a label map and a trace-id string).
type series struct {
	obs  prometheus.Observer
	last [len(durationBuckets) + 1]atomic.Int64
}

// exemplarEvery is the least time between two exemplars of one bucket:
// far below any scrape interval.
const exemplarEvery = int64(time.Second)

// DurationBuckets suit a service whose p99 target is tens of milliseconds.
var durationBuckets = [...]float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// NewMetrics registers the HTTP server metrics on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "http_server_request_duration_seconds",
			Help:    "Duration of HTTP server requests, by route template, method and status.",
			Buckets: durationBuckets[:],
		}, []string{"http_route", "http_request_method", "http_response_status_code"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "http_server_active_requests",
			Help: "HTTP requests being served now.",
		}),
	}
	for _, c := range []prometheus.Collector{m.duration, m.inflight} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Observe records one request. Exported for the gateway, whose proxy does not
// run through a gin route per request.
func (m *Metrics) Observe(ctx trace.SpanContext, route, method string, status int, d time.Duration) {
	s := m.seriesOf(route, Method(method), status)
	v := d.Seconds()
	if ctx.IsSampled() {
		if eo, ok := s.obs.(prometheus.ExemplarObserver); ok {
			last := &s.last[sort.SearchFloat64s(durationBuckets[:], v)]
			now := time.Now().UnixNano()
			if prev := last.Load(); now-prev >= exemplarEvery && last.CompareAndSwap(prev, now) {
				eo.ObserveWithExemplar(v, prometheus.Labels{"trace_id": ctx.TraceID().String()})
				return
			}
		}
	}
	s.obs.Observe(v)
}

func (m *Metrics) seriesOf(route, method string, status int) *series {
	k := seriesKey{route, method, status}
	if cur := m.series.Load(); cur != nil {
		if s, ok := (*cur)[k]; ok {
			return s
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := m.series.Load()
	if cur != nil {
		if s, ok := (*cur)[k]; ok {
			return s
		}
	}
	next := make(map[seriesKey]*series, 1)
	if cur != nil {
		for ck, cs := range *cur {
			next[ck] = cs
		}
	}
	s := &series{obs: m.duration.WithLabelValues(route, method, strconv.Itoa(status))}
	next[k] = s
	m.series.Store(&next)
	return s
}

func (m *Metrics) middleware() gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		m.inflight.Inc()
		defer m.inflight.Dec()
		c.Next()
		route := c.FullPath()
		if route == "" {
			route = "unmatched"
		}
		m.Observe(trace.SpanContextFromContext(c.Request.Context()), route, c.Request.Method, c.Writer.Status(), time.Since(start))
	}
}

// Method bounds the method label: anything outside the registered methods
// becomes _OTHER, as the semantic conventions ask.
func Method(m string) string {
	switch m {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE":
		return m
	}
	return "_OTHER"
}
