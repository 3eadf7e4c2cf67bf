package loadtest

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rampart-go/rampart/deploy/stack"
)

// TestSmokeAgainstTheInProcessStack is CI's smoke run: the whole of
// Rampart in-process (as the e2e tests start it, with the gateway's
// default rate limits), smoke.go against it, and every check must pass.
func TestSmokeAgainstTheInProcessStack(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: skipped with -short")
	}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := stack.Start(ctx, stack.Options{Dir: t.TempDir(), Ephemeral: true, LogWriter: io.Discard})
	if err != nil {
		cancel()
		t.Fatalf("start stack: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		s.Wait()
	})
	var log strings.Builder
	env := NewEnv(FromEndpoints(s.Endpoints, s.Credentials), &log)
	runCtx, stop := context.WithTimeout(ctx, 2*time.Minute)
	defer stop()
	sum, err := Execute(runCtx, Scenarios()["smoke"], env, Options{})
	if _, md, werr := WriteResults(t.TempDir(), sum); werr != nil {
		t.Errorf("write results: %v", werr)
	} else {
		t.Logf("summary: %s", md)
	}
	if err != nil {
		t.Errorf("smoke: %v", err)
	}
	if !sum.Passed {
		t.Errorf("smoke failed:\n%s\n%s", log.String(), sum.Markdown())
	}
}

// TestEveryScenarioIsWellFormed is the cheap check that each scenario can
// run: a description, a runner, thresholds, and defaults that make a
// valid schedule.
func TestEveryScenarioIsWellFormed(t *testing.T) {
	t.Parallel()
	for name, sc := range Scenarios() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			d := sc.Defaults
			if sc.Name != name || sc.About == "" || sc.Run == nil || sc.Thresholds == nil {
				t.Fatalf("scenario %q is incomplete", name)
			}
			if d.Rate <= 0 || d.Duration <= 0 || d.Users <= 0 || d.MaxInFlight <= 0 {
				t.Errorf("defaults %+v", d)
			}
			ths := sc.Thresholds(d)
			if len(ths) == 0 {
				t.Fatal("no thresholds")
			}
			for _, th := range ths {
				if th.Name == "" || th.Eval == nil {
					t.Errorf("threshold %+v", th)
				}
				// An empty run must never pass a threshold by accident.
				if _, ok := th.Eval(NewRecorder().Summarize(name, "")); ok && !strings.Contains(th.Name, "dropped") && !strings.Contains(th.Name, "401") {
					t.Errorf("threshold %q passes a run with no requests", th.Name)
				}
			}
		})
	}
}

// TestArrivalRateFollowsTheSchedule: an open-model executor starts the
// scheduled number of iterations whatever they cost, and drops (and
// counts) those it has no worker for.
func TestArrivalRateFollowsTheSchedule(t *testing.T) {
	t.Parallel()
	a := Arrival{StartRate: 0, MaxInFlight: 50, Stages: []Stage{{Duration: time.Second, Target: 400}, {Duration: time.Second, Target: 400}}}
	if got := a.Expected(); got != 600 {
		t.Fatalf("Expected() = %v, want 600", got)
	}
	if r := a.RateAt(500 * time.Millisecond); r != 200 {
		t.Fatalf("RateAt(0.5s) = %v, want 200", r)
	}
	var n atomic.Int64
	started, dropped := a.Run(context.Background(), func(context.Context) { n.Add(1) })
	if started != n.Load() || started+dropped < 540 || started+dropped > 610 {
		t.Errorf("started %d (ran %d), dropped %d; want about 600 arrivals", started, n.Load(), dropped)
	}

	slow := Arrival{StartRate: 200, MaxInFlight: 2, Stages: []Stage{{Duration: 500 * time.Millisecond, Target: 200}}}
	started, dropped = slow.Run(context.Background(), func(context.Context) { time.Sleep(100 * time.Millisecond) })
	if dropped < 50 || started > 20 {
		t.Errorf("with 2 slow workers: started %d, dropped %d; want most arrivals dropped", started, dropped)
	}
}

// TestEachUserHasItsOwnSourceAddress: the premise of per-address rate
// limits under load — a client bound to 127.1.x.y is seen as that address.
func TestEachUserHasItsOwnSourceAddress(t *testing.T) {
	t.Parallel()
	seen := make(chan string, 2)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		seen <- host
		w.Header().Set("X-Request-Id", "rid")
		if r.Header.Get("Traceparent") == "" {
			w.WriteHeader(http.StatusBadRequest)
		}
	}))
	defer srv.Close()
	addrs := NewAddresses(1)
	rec := NewRecorder()
	for _, want := range []string{"127.1.0.1", "127.1.0.2"} {
		c := &Client{base: srv.URL, rec: rec, hc: srv.Client()}
		src := addrs.Next()
		tr := srv.Client().Transport.(*http.Transport).Clone()
		tr.DialContext = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}).DialContext
		c.hc = &http.Client{Transport: tr}
		resp, err := c.Do(context.Background(), Request{Tag: "probe", Method: http.MethodGet, Path: "/"})
		if err != nil {
			t.Fatal(err)
		}
		if !resp.OK {
			t.Errorf("status %d: no traceparent sent?", resp.StatusCode)
		}
		if got := <-seen; got != want || src != netip.MustParseAddr(want) {
			t.Errorf("server saw %s (source %s), want %s", got, src, want)
		}
	}
	if s := rec.Summarize("t", ""); s.Tags["probe"].Requests != 2 || s.Errors != 0 {
		t.Errorf("summary %+v", s.Tags["probe"])
	}
}

// TestTraceparentIsW3C: version 00, 32 + 16 lower-case hex, sampled.
func TestTraceparentIsW3C(t *testing.T) {
	t.Parallel()
	id, tp := traceparent()
	parts := strings.Split(tp, "-")
	if len(parts) != 4 || parts[0] != "00" || parts[1] != id || len(id) != 32 || len(parts[2]) != 16 || parts[3] != "01" {
		t.Errorf("traceparent %q", tp)
	}
	if _, tp2 := traceparent(); tp2 == tp {
		t.Error("traceparent repeats")
	}
}

// TestSecurityCountersAreParsed reads the exposition format of
// rampart_security_events_total.
func TestSecurityCountersAreParsed(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `# TYPE rampart_security_events_total counter
rampart_security_events_total{reason="signature",service="gateway",type="token.rejected"} 3 # {trace_id="abc"} 1 1.7e9
rampart_security_events_total{reason="algorithm",service="gateway",type="token.rejected"} 2
rampart_security_events_total{reason="login",service="gateway",type="ratelimit.exceeded"} 7
`)
	}))
	defer srv.Close()
	c, err := scrapeSecurity(context.Background(), Target{Ops: map[string]string{"gateway": srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.sum("gateway", "token.rejected", ""); got != 5 {
		t.Errorf("token.rejected = %v, want 5", got)
	}
	if got := c.sum("gateway", "token.rejected", "algorithm"); got != 2 {
		t.Errorf("token.rejected/algorithm = %v, want 2", got)
	}
}
