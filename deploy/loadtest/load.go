package loadtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"
)

// step is one kind of iteration in the realistic mix and its weight.
type step struct {
	name   string
	weight float64
	run    func(m *mix, ctx context.Context) error
}

// mix is the realistic traffic of load, spike and soak: mostly reads,
// some orders, a few refreshes and fresh logins.
type mix struct {
	e        *Env
	sessions []*Session
	anon     []*Client
	catalog  []CatalogItem
	mu       sync.Mutex
	orders   map[*Session][]string // ids each user created, for reads
	// nextLogin is the next user to sign in again (round robin).
	nextLogin int
	steps     []step
	total     float64
}

// Mix weights (per 100 iterations): a shop is browsed far more than it
// is bought from, and people stay signed in (refresh) far more often
// than they sign in.
func newMix(e *Env, sessions []*Session, anon []*Client, cat []CatalogItem) *mix {
	m := &mix{e: e, sessions: sessions, anon: anon, catalog: cat, orders: map[*Session][]string{}}
	m.steps = []step{
		{"browse", 35, (*mix).browse},
		{"list_orders", 22, (*mix).listOrders},
		{"read_order", 18, (*mix).readOrder},
		{"create_order", 12, (*mix).createOrder},
		{"profile", 10, (*mix).profile},
		{"refresh", 2.5, (*mix).refresh},
		{"login", 0.5, (*mix).login},
	}
	for _, s := range m.steps {
		m.total += s.weight
	}
	return m
}

// iterate runs one weighted-random step.
func (m *mix) iterate(ctx context.Context) {
	r := rand.Float64() * m.total //nolint:gosec // G404: workload choice
	for _, s := range m.steps {
		if r < s.weight {
			if err := s.run(m, ctx); err != nil && ctx.Err() == nil {
				m.e.Rec.Check("iteration "+s.name+" completes", false)
			}
			return
		}
		r -= s.weight
	}
}

func (m *mix) session() *Session {
	m.mu.Lock()
	defer m.mu.Unlock()
	return pick(m.sessions)
}

func (m *mix) browse(ctx context.Context) error {
	_, resp, err := catalog(ctx, pick(m.anon))
	if err != nil {
		return err
	}
	m.e.Rec.Check("catalog is 200", resp.OK)
	return nil
}

func (m *mix) listOrders(ctx context.Context) error {
	_, resp, err := listOrders(ctx, m.session(), 20)
	if err != nil {
		return err
	}
	m.e.Rec.Check("orders list is 200", resp.OK)
	return nil
}

func (m *mix) readOrder(ctx context.Context) error {
	s := m.session()
	m.mu.Lock()
	ids := m.orders[s]
	m.mu.Unlock()
	if len(ids) == 0 {
		return m.createOrderFor(ctx, s)
	}
	o, resp, err := getOrder(ctx, s, "orders_get", pick(ids), http.StatusOK)
	if err != nil {
		return err
	}
	m.e.Rec.Check("own order is readable", resp.OK && o.UserID == s.Subject)
	return nil
}

func (m *mix) createOrder(ctx context.Context) error { return m.createOrderFor(ctx, m.session()) }

func (m *mix) createOrderFor(ctx context.Context, s *Session) error {
	items := []OrderItem{{SKU: pick(m.catalog).SKU, Quantity: 1 + rand.IntN(3)}} //nolint:gosec // G404: workload
	o, resp, err := createOrder(ctx, s, randomB64(16), items)
	if err != nil {
		return err
	}
	if m.e.Rec.Check("order is created", resp.OK && o.ID != "") {
		m.mu.Lock()
		if ids := m.orders[s]; len(ids) < 50 {
			m.orders[s] = append(ids, o.ID)
		}
		m.mu.Unlock()
	}
	return nil
}

func (m *mix) profile(ctx context.Context) error {
	resp, err := m.session().Do(ctx, Request{Tag: "users_me", Method: http.MethodGet, Path: "/api/v1/users/me"})
	if err != nil {
		return err
	}
	m.e.Rec.Check("profile is 200", resp.OK)
	return nil
}

func (m *mix) refresh(ctx context.Context) error {
	return m.e.Rec.checkErr("refresh succeeds", m.session().Refresh(ctx))
}

// login signs one of the users in again, from its own address, and
// replaces its session: the old one just stops being used, as when a
// browser tab is closed.
func (m *mix) login(ctx context.Context) error {
	// Users sign in again in turn, not at random: a user picked several
	// times within a minute would sign in more often than anyone does and
	// meet the gateway's per-address /login limit (10/min), which is the
	// generator's doing, not the system's.
	m.mu.Lock()
	i := m.nextLogin % len(m.sessions)
	m.nextLogin++
	old := m.sessions[i]
	m.mu.Unlock()
	s, err := Login(ctx, old.c, old.Email, old.password, UserScopes)
	if err := m.e.Rec.checkErr("login succeeds", err); err != nil {
		return err
	}
	s.password = old.password
	m.mu.Lock()
	m.sessions[i] = s
	m.orders[s] = m.orders[old]
	delete(m.orders, old)
	m.mu.Unlock()
	return nil
}

// checkErr records a check that err is nil and returns err.
func (r *Recorder) checkErr(name string, err error) error {
	r.Check(name, err == nil)
	return err
}

// prepareMix signs in the users, opens the anonymous browsers and reads
// the catalogue.
func prepareMix(ctx context.Context, e *Env, o Options) (*mix, error) {
	e.logf("setup: registering and signing in %d users (each from its own 127.1.x.y address)", o.Users)
	sessions, err := signInUsers(ctx, e, o.Users, "load")
	if err != nil {
		return nil, err
	}
	anon := make([]*Client, 0, max(o.Users/2, 1))
	for range cap(anon) {
		c, err := e.userClient()
		if err != nil {
			return nil, err
		}
		anon = append(anon, c)
	}
	cat, resp, err := catalog(ctx, anon[0])
	if err != nil {
		return nil, err
	}
	if !resp.OK || len(cat) == 0 {
		return nil, fmt.Errorf("catalogue: status %d, %d items", resp.StatusCode, len(cat))
	}
	return newMix(e, sessions, anon, cat), nil
}

// runMix drives the mix on schedule a, then resets nothing: setup
// requests are part of the figures under their own tags.
func runMix(ctx context.Context, e *Env, o Options, a Arrival) error {
	m, err := prepareMix(ctx, e, o)
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	if err := a.Validate(); err != nil {
		return err
	}
	e.logf("run: %s, peak %.0f iterations/s, at most %d in flight", a.Duration(), o.Rate, a.MaxInFlight)
	started, dropped := a.Run(ctx, m.iterate)
	e.Rec.Dropped(dropped)
	e.logf("done: %d iterations started, %d dropped", started, dropped)
	if started == 0 {
		return errors.New("no iteration started")
	}
	return nil
}

// mixThresholds are the budgets of every route tag the mix uses.
func mixThresholds(p95, p99 time.Duration, errRate float64) []Threshold {
	ths := []Threshold{
		NoUnexpected401(),
		ChecksPass(),
		ErrorRateBelow("", errRate),
		P95Below("", p95),
	}
	for _, tag := range []string{"catalog", "orders_list", "orders_get", "orders_create", "users_me", "token_refresh"} {
		ths = append(ths, P95Below(tag, p95), P99Below(tag, p99), ErrorRateBelow(tag, errRate))
	}
	return ths
}

func loadScenario() Scenario {
	return Scenario{
		Name:     "load",
		About:    "ramping arrival rate of the realistic mix: browse, log in, create orders, list and read own orders, refresh",
		Defaults: Options{Rate: 2000, Duration: 60 * time.Second, Users: 200, MaxInFlight: 400},
		Run: func(ctx context.Context, e *Env, o Options) error {
			ramp := max(o.Duration/6, time.Second)
			return runMix(ctx, e, o, Arrival{StartRate: o.Rate / 20, MaxInFlight: o.MaxInFlight, Stages: []Stage{
				{Duration: ramp, Target: o.Rate}, {Duration: o.Duration - ramp, Target: o.Rate},
			}})
		},
		Thresholds: func(Options) []Threshold {
			return append(mixThresholds(50*time.Millisecond, 150*time.Millisecond, 0), DroppedBelow(0.01))
		},
	}
}

func spikeScenario() Scenario {
	return Scenario{
		Name:     "spike",
		About:    "a quiet baseline, a sudden 5x spike, and back: the system must shed nothing and recover",
		Defaults: Options{Rate: 1500, Duration: 60 * time.Second, Users: 200, MaxInFlight: 1000},
		Run: func(ctx context.Context, e *Env, o Options) error {
			d := o.Duration
			base := o.Rate / 5
			return runMix(ctx, e, o, Arrival{StartRate: base, MaxInFlight: o.MaxInFlight, Stages: []Stage{
				{Duration: d / 4, Target: base}, {Duration: 2 * time.Second, Target: o.Rate},
				{Duration: d/4 - 2*time.Second, Target: o.Rate}, {Duration: 2 * time.Second, Target: base},
				{Duration: d/2 - 2*time.Second, Target: base},
			}})
		},
		Thresholds: func(Options) []Threshold {
			// A spike may be slow, it may not fail.
			return append(mixThresholds(250*time.Millisecond, time.Second, 0), DroppedBelow(0.05))
		},
	}
}

func soakScenario() Scenario {
	return Scenario{
		Name:     "soak",
		About:    "the realistic mix at a steady moderate rate for a long time (-duration): leaks, token expiry and refresh, growth",
		Defaults: Options{Rate: 500, Duration: 10 * time.Minute, Users: 100, MaxInFlight: 400},
		Run: func(ctx context.Context, e *Env, o Options) error {
			return runMix(ctx, e, o, Arrival{StartRate: o.Rate, MaxInFlight: o.MaxInFlight, Stages: []Stage{{Duration: o.Duration, Target: o.Rate}}})
		},
		Thresholds: func(Options) []Threshold {
			return append(mixThresholds(50*time.Millisecond, 200*time.Millisecond, 0), DroppedBelow(0.001))
		},
	}
}
