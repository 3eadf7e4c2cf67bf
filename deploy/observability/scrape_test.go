package observability

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rampart-go/rampart/deploy/observability/promrun"
	"github.com/rampart-go/rampart/deploy/stack"
)

// TestScrapeByARealPrometheus starts Debian's Prometheus server against the
// in-process stack: a configuration generated from
// prometheus-devstack.yml's job layout with the stack's ephemeral ops
// addresses, the repository's rule files, a 1 s scrape and evaluation
// interval. After the attack scenario of TestEveryReferencedMetricIsExported
// it asks Prometheus's HTTP API, as Grafana would, for the security events
// by type and reason, for the recording rule the Security overview
// dashboard draws and for the counters' trace-id exemplars, and checks
// every target is up with its service label.
func TestScrapeByARealPrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole stack and Prometheus: skipped with -short")
	}
	bin := prometheusPath(t)

	ctx, cancel := context.WithCancel(context.Background())
	s, err := stack.Start(ctx, stack.Options{Dir: t.TempDir(), Ephemeral: true, LogWriter: io.Discard})
	if err != nil {
		cancel()
		t.Fatalf("start stack: %v", err)
	}
	t.Cleanup(func() { cancel(); s.Wait() })

	prom := startPrometheus(t, bin, scrapeConfig(t, s))

	// Every target up before the attack, so the scenario's counters are
	// seen being born (as in production) rather than all at once.
	waitProm(t, prom, 30*time.Second, "every target up", func() (bool, string) {
		var r struct {
			ActiveTargets []struct {
				Labels    map[string]string `json:"labels"`
				Health    string            `json:"health"`
				LastError string            `json:"lastError"`
				ScrapeURL string            `json:"scrapeUrl"`
			} `json:"activeTargets"`
		}
		prom.get(t, "/api/v1/targets", nil, &r)
		var up, state []string
		for _, tg := range r.ActiveTargets {
			state = append(state, fmt.Sprintf("%s %s %s %s", tg.Labels["service"], tg.ScrapeURL, tg.Health, tg.LastError))
			if tg.Health == "up" && tg.Labels["job"] == "rampart" {
				up = append(up, tg.Labels["service"])
			}
		}
		slices.Sort(up)
		want := slices.Sorted(slices.Values(stack.Services))
		return len(r.ActiveTargets) == len(want) && slices.Equal(up, want), strings.Join(state, "; ")
	})

	exercise(t, s)

	// What the scenario produces (service, type, reason), asserted through
	// PromQL: the raw counter as scraped, and the recording rule the
	// Security overview dashboard draws, which proves the rule files
	// loaded and evaluate.
	want := []string{
		"gateway token.rejected missing",
		"gateway token.rejected malformed",
		"gateway ratelimit.exceeded login",
		"auth-service auth.login.failed bad_credentials",
		"auth-service auth.account.locked ", // a lockout has no reason
		"auth-service mtls.rejected no_certificate",
	}
	for _, q := range []string{
		// Every (type, reason) series exists from the start at 0 (so that
		// increase() sees the first event): only those that rose count.
		"sum by (service, type, reason) (rampart_security_events_total) > 0",
		"sum by (service, type, reason) (service_type_reason:rampart_security_events:rate5m) > 0",
	} {
		waitProm(t, prom, 30*time.Second, q+" returns the scenario's events", func() (bool, string) {
			got := prom.series(t, q, "service", "type", "reason")
			missing := slices.DeleteFunc(slices.Clone(want), func(w string) bool { return slices.Contains(got, w) })
			return len(missing) == 0, fmt.Sprintf("missing %v, have %v", missing, got)
		})
	}
	// Prometheus stored the counters' trace-id exemplars (the link from a
	// Grafana spike to a trace) for every event raised inside a request.
	// mtls.rejected happens in the TLS handshake, before any span.
	withExemplar := exemplarSeries(t, prom, "rampart_security_events_total")
	for _, w := range want {
		if strings.Contains(w, "mtls.rejected") {
			continue
		}
		if !slices.Contains(withExemplar, w) {
			t.Errorf("no trace_id exemplar stored for %q (have %v)", w, withExemplar)
		}
	}
	// Five wrong passwords, five failed-login events, counted once each.
	if v := prom.value(t, `sum(rampart_security_events_total{service="auth-service",type="auth.login.failed"})`); v != 5 {
		t.Errorf("auth.login.failed = %v in Prometheus, want 5", v)
	}
}

// prometheusPath finds the Prometheus server: RAMPART_PROMETHEUS, then
// PATH. Without one the test skips, unless RAMPART_REQUIRE_PROMETHEUS=1
// (CI, which installs Debian's prometheus package) makes it fail: CI must
// not pass by checking nothing.
func prometheusPath(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("RAMPART_PROMETHEUS"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("RAMPART_PROMETHEUS=%s: %v", p, err)
		}
		return p
	}
	if p, err := exec.LookPath("prometheus"); err == nil {
		return p
	}
	const msg = "the prometheus server is not installed (RAMPART_PROMETHEUS, PATH): apt-get install prometheus (.ci/run does)"
	if os.Getenv("RAMPART_REQUIRE_PROMETHEUS") == "1" {
		t.Fatal(msg + "; RAMPART_REQUIRE_PROMETHEUS=1 requires it")
	}
	t.Skip(msg)
	return ""
}

// scrapeConfig is prometheus-devstack.yml pointed at the stack's ephemeral
// ops addresses with 1 s intervals (promrun.Config).
func scrapeConfig(t testing.TB, s *stack.Stack) []byte {
	t.Helper()
	cfg, err := promrun.Config(promDir, s, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// prometheus is a running Prometheus server, failing the test on API
// errors.
type prometheus struct {
	*promrun.Server
}

// startPrometheus runs bin with config (promrun.Start) in a temporary
// directory. It is stopped when the test ends; its log is shown if the
// test failed.
func startPrometheus(t testing.TB, bin string, config []byte) *prometheus {
	t.Helper()
	srv, err := promrun.Start(bin, t.TempDir(), config)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Stop()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", srv.Log())
		}
	})
	return &prometheus{srv}
}

// waitProm polls cond every 250 ms until it holds, failing with cond's
// last explanation after d, or at once if Prometheus exited.
func waitProm(t testing.TB, p *prometheus, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	if err := p.Wait(context.Background(), d, what, cond); err != nil {
		t.Fatal(err)
	}
}

// get calls the HTTP API and decodes a successful response's data into v.
func (p *prometheus) get(t testing.TB, path string, q url.Values, v any) {
	t.Helper()
	if err := p.Get(context.Background(), path, q, v); err != nil {
		t.Fatal(err)
	}
}

// sample is one element of an instant vector.
type sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// query runs an instant PromQL query and returns its vector.
func (p *prometheus) query(t testing.TB, q string) []sample {
	t.Helper()
	var r struct {
		ResultType string   `json:"resultType"`
		Result     []sample `json:"result"`
	}
	p.get(t, "/api/v1/query", url.Values{"query": {q}}, &r)
	if r.ResultType != "vector" {
		t.Fatalf("%s: result type %s, want vector", q, r.ResultType)
	}
	return r.Result
}

// series returns each result of q as its labels' values joined by spaces,
// sorted.
func (p *prometheus) series(t testing.TB, q string, labels ...string) []string {
	t.Helper()
	var out []string
	for _, s := range p.query(t, q) {
		vals := make([]string, len(labels))
		for i, l := range labels {
			vals[i] = s.Metric[l]
		}
		out = append(out, strings.Join(vals, " "))
	}
	slices.Sort(out)
	return out
}

// exemplarSeries returns, as "service type reason", the series of metric
// for which Prometheus stored an exemplar with a W3C trace id.
func exemplarSeries(t testing.TB, p *prometheus, metric string) []string {
	t.Helper()
	var r []struct {
		SeriesLabels map[string]string `json:"seriesLabels"`
		Exemplars    []struct {
			Labels map[string]string `json:"labels"`
		} `json:"exemplars"`
	}
	now := time.Now()
	p.get(t, "/api/v1/query_exemplars", url.Values{
		"query": {metric},
		"start": {strconv.FormatInt(now.Add(-time.Hour).Unix(), 10)},
		"end":   {strconv.FormatInt(now.Add(time.Minute).Unix(), 10)},
	}, &r)
	var out []string
	for _, s := range r {
		for _, ex := range s.Exemplars {
			if id := ex.Labels["trace_id"]; traceID.MatchString(id) && strings.Trim(id, "0") != "" {
				l := s.SeriesLabels
				out = append(out, l["service"]+" "+l["type"]+" "+l["reason"])
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

// traceID is a W3C trace id: 32 lower-case hex digits, not all zero.
var traceID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// value returns the single value of q, failing unless there is exactly one.
func (p *prometheus) value(t testing.TB, q string) float64 {
	t.Helper()
	res := p.query(t, q)
	if len(res) != 1 {
		t.Fatalf("%s: %d results, want 1", q, len(res))
	}
	str, _ := res[0].Value[1].(string)
	v, err := strconv.ParseFloat(str, 64)
	if err != nil {
		t.Fatalf("%s: value %v: %v", q, res[0].Value[1], err)
	}
	return v
}
