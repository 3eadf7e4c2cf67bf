package oauth

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gorm.io/gorm"

	"github.com/rampart-go/rampart/auth-service/internal/keys"
)

// Label values of rampart_auth_tokens_issued_total{grant}: a closed set, so
// the token-exchange URN becomes a short name and nothing a client sends
// can mint a new series.
var grantLabels = map[string]string{
	GrantCode:              "authorization_code",
	GrantRefresh:           "refresh_token",
	GrantClientCredentials: "client_credentials",
	GrantTokenExchange:     "token_exchange",
}

// Bounds of the active-families gauge. A scrape runs at most one COUNT
// every familiesCacheTTL (Prometheus, a second Prometheus and a curl from an
// operator share it), the query gives up after familiesQueryTimeout, and it
// stops counting at familiesCountCap rows, so its cost is bounded however
// large the table grows; the gauge then reads the cap.
const (
	familiesCacheTTL     = 5 * time.Second
	familiesQueryTimeout = 2 * time.Second
	familiesCountCap     = 1_000_000
)

// metrics are the authorization server's own series, next to the HTTP and
// security-event ones every service has (docs/operations.md, Auth metrics).
type metrics struct {
	issued *prometheus.CounterVec
}

// newMetrics registers on reg: rampart_auth_tokens_issued_total{grant},
// rampart_auth_signing_key_age_seconds{alg} and
// rampart_auth_refresh_families_active. The two gauges are computed when
// scraped. It returns the registry's error when a name is already taken.
func newMetrics(reg prometheus.Registerer, km *keys.Manager, db *gorm.DB, now func() time.Time, log *slog.Logger) (*metrics, error) {
	m := &metrics{
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rampart_auth_tokens_issued_total",
			Help: "Successful token-endpoint responses, by grant type.",
		}, []string{"grant"}),
	}
	// Every grant starts at 0, so a rate() sees the first issuance and a
	// dashboard shows every grant before it is used.
	for _, g := range grantLabels {
		m.issued.WithLabelValues(g)
	}
	cs := []prometheus.Collector{m.issued, &familiesCollector{
		db: db, now: now, log: log,
		desc: prometheus.NewDesc("rampart_auth_refresh_families_active",
			"Token families that can still be refreshed: not revoked, not past their maximum lifetime, holding an unused unexpired refresh token (recounted at most every 5 s).",
			nil, nil),
	}}
	if km != nil {
		for _, alg := range []keys.Alg{keys.ES256, keys.RS256} {
			cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name:        "rampart_auth_signing_key_age_seconds",
				Help:        "Age of the current signing key of each algorithm; it drops to 0 at every rotation.",
				ConstLabels: prometheus.Labels{"alg": string(alg)},
			}, func() float64 {
				_, created := km.Current(alg)
				if created.IsZero() {
					return 0
				}
				return now().Sub(created).Seconds()
			}))
		}
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("auth metrics: %w", err)
		}
	}
	return m, nil
}

// tokenIssued counts one successful token response of grant. A nil
// receiver (a server built without a registry) counts nothing.
func (m *metrics) tokenIssued(grant string) {
	if m == nil {
		return
	}
	if g, ok := grantLabels[grant]; ok {
		m.issued.WithLabelValues(g).Inc()
	}
}

// familiesCollector counts active refresh-token families when scraped,
// reusing the last count for familiesCacheTTL.
type familiesCollector struct {
	db   *gorm.DB
	now  func() time.Time
	log  *slog.Logger
	desc *prometheus.Desc

	mu    sync.Mutex // held through the query: concurrent scrapes share one
	at    time.Time
	value float64
}

// Describe implements prometheus.Collector.
func (c *familiesCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector. When the count fails it reports
// the last good one (0 before the first) and logs why, rather than failing
// the whole scrape and hiding every other series.
func (c *familiesCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if c.at.IsZero() || now.Sub(c.at) >= familiesCacheTTL || now.Before(c.at) {
		// Collect has no request context: the deadline is ours.
		ctx, cancel := context.WithTimeout(context.Background(), familiesQueryTimeout)
		n, err := countActiveFamilies(ctx, c.db, now.UTC())
		cancel()
		if err != nil {
			c.log.Warn("count active refresh families", slog.Any("error", err))
		} else {
			c.value = float64(n)
		}
		// A failure is cached too: a database in trouble is asked again in
		// 5 s, not at every scrape.
		c.at = now
	}
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, c.value)
}

// countActiveFamilies counts, up to familiesCountCap, the families that are
// neither revoked nor past their maximum lifetime and hold a refresh token
// that is unused and unexpired. The partial index token_families_active
// (migration 0004) holds only unrevoked families, the inner LIMIT bounds
// the scan, and the EXISTS is one lookup on refresh_tokens_family per
// family.
func countActiveFamilies(ctx context.Context, db *gorm.DB, now time.Time) (int64, error) {
	var n int64
	err := db.WithContext(ctx).Raw(`SELECT COUNT(*) FROM (
		SELECT 1 FROM token_families f
		WHERE f.revoked_at IS NULL AND f.expires_at > ?
		  AND EXISTS (SELECT 1 FROM refresh_tokens r
		              WHERE r.family_id = f.id AND r.used_at IS NULL AND r.expires_at > ?)
		LIMIT ?) active`, now, now, familiesCountCap).Scan(&n).Error
	return n, err
}
