package loadtest

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"sort"
	"sync"
	"time"
)

// Options parameterise a scenario run; zero fields take the scenario's
// defaults.
type Options struct {
	// Rate is the peak arrival rate of user iterations per second.
	Rate float64
	// Duration is the length of the main phase (soak: the whole soak).
	Duration time.Duration
	// Users is the number of simulated users signed in up front.
	Users int
	// MaxInFlight bounds concurrent iterations.
	MaxInFlight int
}

// Env is what a running scenario works with.
type Env struct {
	Target Target
	Rec    *Recorder
	Log    io.Writer
	// users and attackers are the loopback source addresses real users
	// (127.1.x.y) and attackers (127.2.x.y) connect from.
	users, attackers *Addresses
	mu               sync.Mutex
	counters         map[string]float64
}

// NewEnv returns an Env for one run against t.
func NewEnv(t Target, log io.Writer) *Env {
	if log == nil {
		log = io.Discard
	}
	return &Env{Target: t, Rec: NewRecorder(), Log: log, users: NewAddresses(1), attackers: NewAddresses(2), counters: map[string]float64{}}
}

func (e *Env) logf(format string, args ...any) { _, _ = fmt.Fprintf(e.Log, format+"\n", args...) }

// userClient returns a client with a fresh real-user source address.
func (e *Env) userClient() (*Client, error) {
	e.mu.Lock()
	a := e.users.Next()
	e.mu.Unlock()
	return e.Target.NewClient(e.Rec, a)
}

// attackerClient returns a client with a fresh attacker source address.
func (e *Env) attackerClient() (*Client, error) {
	e.mu.Lock()
	a := e.attackers.Next()
	e.mu.Unlock()
	return e.Target.NewClient(e.Rec, a)
}

// plainClient connects from 127.0.0.1 (admin tools, smoke).
func (e *Env) plainClient() (*Client, error) {
	return e.Target.NewClient(e.Rec, netip.AddrFrom4([4]byte{127, 0, 0, 1}))
}

// setCounter records a security-counter delta for the summary.
func (e *Env) setCounter(name string, v float64) {
	e.mu.Lock()
	e.counters[name] = v
	e.mu.Unlock()
}

// Scenario is one named workload with its pass/fail thresholds.
type Scenario struct {
	Name  string
	About string
	// Defaults fill the zero fields of the caller's Options.
	Defaults Options
	Run      func(ctx context.Context, e *Env, o Options) error
	// Thresholds decide the run; every one must hold.
	Thresholds func(o Options) []Threshold
}

// Scenarios are the scenarios by name.
func Scenarios() map[string]Scenario {
	return map[string]Scenario{
		"smoke": smokeScenario(), "load": loadScenario(), "spike": spikeScenario(),
		"soak": soakScenario(), "abuse": abuseScenario(),
	}
}

// ScenarioNames lists them sorted.
func ScenarioNames() []string {
	var n []string
	for k := range Scenarios() {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// Execute runs sc against e with o (defaults filled in), evaluates its
// thresholds and returns the summary. The error is the scenario's own
// (setup failed, ...); a breached threshold is Summary.Passed == false.
func Execute(ctx context.Context, sc Scenario, e *Env, o Options) (*Summary, error) {
	o = o.withDefaults(sc.Defaults)
	runErr := sc.Run(ctx, e, o)
	s := e.Rec.Summarize(sc.Name, e.Target.BaseURL)
	e.mu.Lock()
	for k, v := range e.counters {
		s.Counters[k] = v
	}
	e.mu.Unlock()
	s.Passed = runErr == nil
	for _, th := range sc.Thresholds(o) {
		got, ok := th.Eval(s)
		s.Thresholds = append(s.Thresholds, ThresholdResult{Name: th.Name, Got: got, OK: ok})
		if !ok {
			s.Passed = false
		}
	}
	return s, runErr
}

func (o Options) withDefaults(d Options) Options {
	if o.Rate <= 0 {
		o.Rate = d.Rate
	}
	if o.Duration <= 0 {
		o.Duration = d.Duration
	}
	if o.Users <= 0 {
		o.Users = d.Users
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = d.MaxInFlight
	}
	return o
}

// signInUsers registers n fresh users, each from its own source address,
// and signs them in; concurrency is bounded (argon2id is the cost).
func signInUsers(ctx context.Context, e *Env, n int, prefix string) ([]*Session, error) {
	out := make([]*Session, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			c, err := e.userClient()
			if err != nil {
				errs <- err
				return
			}
			email, password := fmt.Sprintf("%s-%s@load.rampart.test", prefix, randomB64(6)), randomB64(18)
			if _, err := register(ctx, c, email, password); err != nil {
				errs <- err
				return
			}
			s, err := Login(ctx, c, email, password, UserScopes)
			if err != nil {
				errs <- fmt.Errorf("sign in %s: %w", email, err)
				return
			}
			s.password = password
			out[i] = s
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	return out, nil
}

// pick returns a random element.
func pick[T any](xs []T) T { return xs[rand.IntN(len(xs))] } //nolint:gosec // G404: workload choice, not security
