// Package userclient is order-service's client of user-service's internal
// route: the synchronous call that confirms a customer exists and takes
// their shipping address when an order is placed.
//
// It is the worked example of calling another service safely (OWASP API10):
//
//   - the caller is authenticated twice: by its mTLS certificate, and by a
//     token for audience user-service obtained from auth-service with
//     RFC 8693 token exchange, where order-service authenticates with that
//     same certificate (tls_client_auth) and the token comes back bound to
//     it (cnf.x5t#S256). The token says "order-service acting for this
//     user", so user-service applies the user's own rights;
//   - tokens are cached per user token until shortly before they expire;
//   - every call has a deadline, and a circuit breaker stops calling a
//     service that keeps failing, so a user-service outage costs callers a
//     fast 503 instead of a pile of stuck requests;
//   - the answer is decoded strictly and only the fields we need are kept.
package userclient

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rampart-go/rampart/shared/breaker"
)

// Errors of Customer, which the handler maps to statuses.
var (
	// ErrUnavailable: user- or auth-service could not be reached, timed
	// out, failed, or the breaker is open. Nothing was decided; retry later.
	ErrUnavailable = errors.New("user service unavailable")
	// ErrNoCustomer: user-service has no profile for the user (not created
	// yet, or erased).
	ErrNoCustomer = errors.New("no customer profile")
	// ErrRefused: auth-service would not exchange the user's token (revoked
	// or expired since the gateway checked it).
	ErrRefused = errors.New("user token refused by the authorization server")
)

// Customer is what an order needs from a profile.
type Customer struct {
	ID      string `json:"id"`
	Address string `json:"address"`
}

// Options configure New.
type Options struct {
	// Users calls user-service and Auth calls auth-service, both over mTLS
	// with this service's certificate (service.Runtime.Client).
	Users, Auth *http.Client
	// UserURL is user-service's base URL; TokenURL is auth-service's token
	// endpoint on its mesh listener.
	UserURL, TokenURL *url.URL
	// ClientID is this service's OAuth client id (its service name).
	ClientID string
	// Timeout bounds each call, exchange and lookup alike (default 2s).
	Timeout time.Duration
	// Breaker configures the circuit breaker guarding both calls (its
	// OnChange is the client's state gauge).
	Breaker breaker.Options
	// Registerer receives the client's metrics (nil: none).
	Registerer prometheus.Registerer
	// Now is the clock of the token cache (tests).
	Now func() time.Time
}

// Client is safe for concurrent use.
type Client struct {
	o       Options
	metrics *metrics
	breaker *breaker.Breaker

	mu      sync.Mutex
	cache   map[[32]byte]cached
	inserts int // since the last sweep of expired entries
}

type cached struct {
	token string
	until time.Time
}

// maxCached bounds the token cache: at most this many users' tokens are
// kept, so a flood of distinct tokens cannot grow it without limit.
const maxCached = 10000

// sweepEvery is how many inserts pass between sweeps of expired entries:
// each sweep walks the map once, so the cost per insert stays constant.
const sweepEvery = 1024

// New returns a Client.
func New(o Options) (*Client, error) {
	if o.Users == nil || o.Auth == nil || o.UserURL == nil || o.TokenURL == nil || o.ClientID == "" {
		return nil, errors.New("userclient: Users, Auth, UserURL, TokenURL and ClientID are required")
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, err
	}
	bo := o.Breaker
	bo.OnChange = m.onChange
	return &Client{o: o, metrics: m, breaker: breaker.New(bo), cache: map[[32]byte]cached{}}, nil
}

// Customer looks up userID's profile, acting for the user whose access
// token is subjectToken. RetryAfter(err) says when to retry an
// ErrUnavailable.
func (c *Client) Customer(ctx context.Context, subjectToken, userID string) (Customer, error) {
	ok, wait := c.breaker.Allow()
	if !ok {
		c.metrics.calls.WithLabelValues("circuit_open").Inc()
		return Customer{}, &unavailable{err: errors.New("circuit open"), retryAfter: wait}
	}
	cust, err := c.customer(ctx, subjectToken, userID)
	switch {
	case err == nil, errors.Is(err, ErrNoCustomer), errors.Is(err, ErrRefused):
		c.breaker.Done(true) // the services answered
	case ctx.Err() != nil:
		c.breaker.Abandon() // our caller gave up: says nothing about them
	case throttled(err):
		// A 429 is a healthy service pacing us. Counting it as a failure
		// would let one user who spends auth-service's exchange budget
		// (many distinct tokens) open the circuit for every customer.
		c.breaker.Abandon()
	default:
		c.breaker.Done(false)
	}
	c.metrics.calls.WithLabelValues(outcome(err)).Inc()
	return cust, err
}

func (c *Client) customer(ctx context.Context, subjectToken, userID string) (Customer, error) {
	key := sha256.Sum256([]byte(subjectToken))
	for attempt := 0; ; attempt++ {
		tok, err := c.token(ctx, key, subjectToken)
		if err != nil {
			return Customer{}, err
		}
		cust, status, err := c.lookup(ctx, tok, userID)
		if status == http.StatusUnauthorized && attempt == 0 {
			// The cached token was revoked or expired early: exchange
			// again, once.
			c.forget(key)
			continue
		}
		return cust, err
	}
}

// token returns a cached exchanged token or exchanges subjectToken.
func (c *Client) token(ctx context.Context, key [32]byte, subjectToken string) (string, error) {
	now := c.o.Now()
	c.mu.Lock()
	if e, ok := c.cache[key]; ok && now.Before(e.until) {
		c.mu.Unlock()
		c.metrics.cache.WithLabelValues("hit").Inc()
		return e.token, nil
	}
	c.mu.Unlock()
	c.metrics.cache.WithLabelValues("miss").Inc()

	tok, ttl, err := c.exchange(ctx, subjectToken)
	if err != nil {
		return "", err
	}
	// Refresh a little before expiry: a token that expires in flight
	// would cost a retry, and clocks differ slightly.
	margin := min(30*time.Second, ttl/5)
	c.mu.Lock()
	defer c.mu.Unlock()
	// Sweep expired entries every sweepEvery inserts as well as when
	// full: a Go map keeps its size, so the cache should hold the tokens
	// still in use (users' tokens rotate on every refresh), not up to
	// maxCached dead ones (the 10-minute soak in docs/PERFORMANCE.md).
	c.inserts++
	if len(c.cache) >= maxCached || c.inserts >= sweepEvery {
		c.evict(now)
		c.inserts = 0
	}
	c.cache[key] = cached{token: tok, until: now.Add(ttl - margin)}
	return tok, nil
}

// evict drops expired entries, and if that frees nothing, everything:
// the cache is an optimisation, and a burst of exchanges is the price of
// a full one. Called with mu held.
func (c *Client) evict(now time.Time) {
	for k, e := range c.cache {
		if !now.Before(e.until) {
			delete(c.cache, k)
		}
	}
	if len(c.cache) >= maxCached {
		clear(c.cache)
	}
}

func (c *Client) forget(key [32]byte) {
	c.mu.Lock()
	delete(c.cache, key)
	c.mu.Unlock()
}

// maxBody bounds what we read from either service.
const maxBody = 64 << 10

// exchange performs the RFC 8693 token exchange at auth-service.
func (c *Client) exchange(ctx context.Context, subjectToken string) (string, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, c.o.Timeout)
	defer cancel()
	form := url.Values{
		"grant_type":         {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token":      {subjectToken},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
		"audience":           {"user-service"},
		"scope":              {"users:read"},
		"client_id":          {c.o.ClientID},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.o.TokenURL.String(), strings.NewReader(form.Encode()))
	if err != nil {
		return "", 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := c.o.Auth.Do(req)
	if err != nil {
		return "", 0, &unavailable{err: fmt.Errorf("token exchange: %w", err)}
	}
	defer resp.Body.Close()
	defer drain(resp.Body) // runs first: the connection is reused
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return "", 0, &unavailable{err: fmt.Errorf("token exchange: %w", err)}
	}
	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusBadRequest && oauthError(body) == "invalid_grant":
		return "", 0, ErrRefused
	case resp.StatusCode == http.StatusTooManyRequests:
		return "", 0, throttledBy("token exchange", resp)
	default:
		return "", 0, &unavailable{err: fmt.Errorf("token exchange: status %d (%s)", resp.StatusCode, oauthError(body))}
	}
	var out struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &out); err != nil || out.AccessToken == "" ||
		!strings.EqualFold(out.TokenType, "Bearer") || out.ExpiresIn <= 0 {
		return "", 0, &unavailable{err: errors.New("token exchange: malformed response")}
	}
	return out.AccessToken, time.Duration(out.ExpiresIn) * time.Second, nil
}

func oauthError(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	return e.Error
}

// lookup calls GET /internal/v1/users/{id}. It returns the status so the
// caller can retry a 401 with a fresh token.
func (c *Client) lookup(ctx context.Context, token, userID string) (Customer, int, error) {
	ctx, cancel := context.WithTimeout(ctx, c.o.Timeout)
	defer cancel()
	u := c.o.UserURL.JoinPath("/internal/v1/users", url.PathEscape(userID))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return Customer{}, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	resp, err := c.o.Users.Do(req)
	if err != nil {
		return Customer{}, 0, &unavailable{err: fmt.Errorf("user lookup: %w", err)}
	}
	defer resp.Body.Close()
	defer drain(resp.Body)
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return Customer{}, resp.StatusCode, ErrNoCustomer
	case http.StatusTooManyRequests:
		return Customer{}, resp.StatusCode, throttledBy("user lookup", resp)
	default:
		// 401/403 mean our token or identity is wrong (configuration),
		// 5xx that user-service is failing: either way no answer now.
		return Customer{}, resp.StatusCode, &unavailable{err: fmt.Errorf("user lookup: status %d", resp.StatusCode)}
	}
	var cust Customer
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxBody)).Decode(&cust); err != nil || cust.ID != userID {
		return Customer{}, resp.StatusCode, &unavailable{err: errors.New("user lookup: malformed or mismatched profile")}
	}
	return cust, resp.StatusCode, nil
}

// drain reads what is left of a body, so the connection can be reused.
func drain(b io.Reader) { _, _ = io.Copy(io.Discard, io.LimitReader(b, maxBody)) }

// unavailable is ErrUnavailable with its cause and a retry hint.
type unavailable struct {
	err        error
	retryAfter time.Duration
	// throttled: the service answered 429. It is up, so the breaker does
	// not count it.
	throttled bool
}

// throttledBy is the ErrUnavailable for a 429 from a service, carrying
// its Retry-After (delta-seconds, capped at a minute) as the retry hint.
func throttledBy(call string, resp *http.Response) error {
	u := &unavailable{err: fmt.Errorf("%s: status 429 (rate limited)", call), throttled: true}
	if s, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After"))); err == nil && s > 0 {
		u.retryAfter = time.Duration(min(s, 60)) * time.Second
	}
	return u
}

func throttled(err error) bool {
	var u *unavailable
	return errors.As(err, &u) && u.throttled
}

func (u *unavailable) Error() string        { return "user service unavailable: " + u.err.Error() }
func (u *unavailable) Is(target error) bool { return target == ErrUnavailable }
func (u *unavailable) Unwrap() error        { return u.err }

// RetryAfter is how long a client should wait after err (an
// ErrUnavailable): the breaker's remaining open time, or a short default.
func RetryAfter(err error) time.Duration {
	var u *unavailable
	if errors.As(err, &u) && u.retryAfter > 0 {
		return u.retryAfter
	}
	return 2 * time.Second
}

func outcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrNoCustomer):
		return "not_found"
	case errors.Is(err, ErrRefused):
		return "refused"
	case throttled(err):
		return "throttled"
	}
	return "unavailable"
}

type metrics struct {
	calls *prometheus.CounterVec
	cache *prometheus.CounterVec
	state prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rampart_order_user_lookups_total",
			Help: "Customer lookups at user-service by outcome: ok, not_found, refused, throttled, unavailable, circuit_open.",
		}, []string{"outcome"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rampart_order_exchange_cache_total",
			Help: "Token-exchange cache lookups: hit or miss (a miss costs a call to auth-service).",
		}, []string{"result"}),
		state: prometheus.NewGauge(prometheus.GaugeOpts{
			Name:        "rampart_order_circuit_state",
			Help:        "Circuit breaker state towards user-service: 0 closed, 1 half-open, 2 open.",
			ConstLabels: prometheus.Labels{"upstream": "user-service"},
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.calls, m.cache, m.state} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("userclient metrics: %w", err)
			}
		}
	}
	// Every series exists from the start, so dashboards and rates see 0
	// rather than nothing before the first order.
	for _, o := range []string{"ok", "not_found", "refused", "unavailable", "circuit_open"} {
		m.calls.WithLabelValues(o)
	}
	m.cache.WithLabelValues("hit")
	m.cache.WithLabelValues("miss")
	return m, nil
}

func (m *metrics) onChange(_, to breaker.State) { m.state.Set(float64(to)) }
