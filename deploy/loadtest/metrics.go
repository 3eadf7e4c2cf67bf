package loadtest

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"
	"time"
)

// Recorder collects every request's outcome by route tag, and every named
// check. It is safe for concurrent use; one Recorder serves a whole run.
type Recorder struct {
	mu     sync.Mutex
	start  time.Time
	tags   map[string]*tagStats
	checks map[string]*checkStats
	// unexpected401 counts 401 answers to requests that did not expect one:
	// a run across a key rotation must show none.
	unexpected401 int64
	dropped       int64
	failures      []Failure
	// phase prefixes every tag ("baseline/", "attack/"), so one run can
	// compare phases side by side.
	phase string
}

// SetPhase prefixes the tags of requests recorded from now on.
func (r *Recorder) SetPhase(p string) {
	r.mu.Lock()
	r.phase = p
	r.mu.Unlock()
}

// Failure is one unexpected answer, with what finds it in the logs and
// the trace backend: the traceparent we sent and the gateway's request id.
type Failure struct {
	Tag       string `json:"tag"`
	Method    string `json:"method"`
	Path      string `json:"path"`
	Status    int    `json:"status"`
	Error     string `json:"error,omitempty"`
	TraceID   string `json:"trace_id"`
	RequestID string `json:"request_id,omitempty"`
}

// maxFailures bounds the failures kept for the summary.
const maxFailures = 50

type tagStats struct {
	durations []time.Duration
	statuses  map[int]int64
	errors    int64 // unexpected status or transport error
	slowest   Sample
}

// Sample is one request worth finding again.
type Sample struct {
	Duration  time.Duration `json:"duration_ns"`
	TraceID   string        `json:"trace_id,omitempty"`
	RequestID string        `json:"request_id,omitempty"`
}

type checkStats struct{ pass, fail int64 }

// NewRecorder returns an empty Recorder whose clock starts now.
func NewRecorder() *Recorder {
	return &Recorder{start: time.Now(), tags: map[string]*tagStats{}, checks: map[string]*checkStats{}}
}

// observe records one request. ok is whether its status was expected.
func (r *Recorder) observe(tag string, d time.Duration, status int, ok bool, f Failure) {
	r.mu.Lock()
	defer r.mu.Unlock()
	tag = r.phase + tag
	f.Tag = tag
	t := r.tags[tag]
	if t == nil {
		t = &tagStats{statuses: map[int]int64{}}
		r.tags[tag] = t
	}
	t.durations = append(t.durations, d)
	t.statuses[status]++
	if d > t.slowest.Duration {
		t.slowest = Sample{Duration: d, TraceID: f.TraceID, RequestID: f.RequestID}
	}
	if ok {
		return
	}
	t.errors++
	if status == 401 {
		r.unexpected401++
	}
	if len(r.failures) < maxFailures {
		r.failures = append(r.failures, f)
	}
}

// Check records a named check and returns ok, for chaining.
func (r *Recorder) Check(name string, ok bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.checks[name]
	if c == nil {
		c = &checkStats{}
		r.checks[name] = c
	}
	if ok {
		c.pass++
	} else {
		c.fail++
	}
	return ok
}

// Dropped counts iterations the executor could not start: every worker
// was busy, so the system under test fell behind the arrival rate.
func (r *Recorder) Dropped(n int64) {
	r.mu.Lock()
	r.dropped += n
	r.mu.Unlock()
}

// TagSummary is one route tag's figures.
type TagSummary struct {
	Requests  int64         `json:"requests"`
	Errors    int64         `json:"errors"`
	ErrorRate float64       `json:"error_rate"`
	Statuses  map[int]int64 `json:"statuses"`
	P50       time.Duration `json:"p50_ns"`
	P95       time.Duration `json:"p95_ns"`
	P99       time.Duration `json:"p99_ns"`
	Max       time.Duration `json:"max_ns"`
	Rate      float64       `json:"rate_per_s"`
	Slowest   Sample        `json:"slowest"`
}

// CheckSummary is one check's tally.
type CheckSummary struct {
	Pass int64 `json:"pass"`
	Fail int64 `json:"fail"`
}

// Summary is a run's result, written as JSON and Markdown.
type Summary struct {
	Scenario      string                  `json:"scenario"`
	Target        string                  `json:"target"`
	Started       time.Time               `json:"started"`
	Duration      time.Duration           `json:"duration_ns"`
	Requests      int64                   `json:"requests"`
	Rate          float64                 `json:"rate_per_s"`
	Errors        int64                   `json:"errors"`
	ErrorRate     float64                 `json:"error_rate"`
	P50           time.Duration           `json:"p50_ns"`
	P95           time.Duration           `json:"p95_ns"`
	P99           time.Duration           `json:"p99_ns"`
	Unexpected401 int64                   `json:"unexpected_401"`
	Dropped       int64                   `json:"dropped_iterations"`
	Tags          map[string]*TagSummary  `json:"tags"`
	Checks        map[string]CheckSummary `json:"checks"`
	Failures      []Failure               `json:"failures,omitempty"`
	// Counters are security-counter deltas read from /metrics (abuse).
	Counters   map[string]float64 `json:"counters,omitempty"`
	Thresholds []ThresholdResult  `json:"thresholds"`
	Passed     bool               `json:"passed"`
}

// Summarize freezes the recorder's figures.
func (r *Recorder) Summarize(scenario, target string) *Summary {
	r.mu.Lock()
	defer r.mu.Unlock()
	el := time.Since(r.start)
	s := &Summary{
		Scenario: scenario, Target: target, Started: r.start, Duration: el,
		Unexpected401: r.unexpected401, Dropped: r.dropped,
		Tags: map[string]*TagSummary{}, Checks: map[string]CheckSummary{},
		Failures: slices.Clone(r.failures), Counters: map[string]float64{},
	}
	var all []time.Duration
	for name, t := range r.tags {
		d := slices.Clone(t.durations)
		slices.Sort(d)
		ts := &TagSummary{
			Requests: int64(len(d)), Errors: t.errors, Statuses: map[int]int64{},
			P50: quantile(d, 0.50), P95: quantile(d, 0.95), P99: quantile(d, 0.99), Max: quantile(d, 1),
			Rate: float64(len(d)) / el.Seconds(), Slowest: t.slowest,
		}
		for k, v := range t.statuses {
			ts.Statuses[k] = v
		}
		if ts.Requests > 0 {
			ts.ErrorRate = float64(ts.Errors) / float64(ts.Requests)
		}
		s.Tags[name] = ts
		s.Requests += ts.Requests
		s.Errors += ts.Errors
		all = append(all, d...)
	}
	slices.Sort(all)
	s.P50, s.P95, s.P99 = quantile(all, 0.50), quantile(all, 0.95), quantile(all, 0.99)
	s.Rate = float64(s.Requests) / el.Seconds()
	if s.Requests > 0 {
		s.ErrorRate = float64(s.Errors) / float64(s.Requests)
	}
	for name, c := range r.checks {
		s.Checks[name] = CheckSummary{Pass: c.pass, Fail: c.fail}
	}
	return s
}

// quantile is the nearest-rank quantile of sorted d (0 when empty).
func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(d)))) - 1
	return d[min(max(i, 0), len(d)-1)]
}

// TagNames returns the tags in a stable order.
func (s *Summary) TagNames() []string {
	names := make([]string, 0, len(s.Tags))
	for n := range s.Tags {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// CheckFailures lists every check that failed at least once.
func (s *Summary) CheckFailures() []string {
	var out []string
	for name, c := range s.Checks {
		if c.Fail > 0 {
			out = append(out, fmt.Sprintf("%s (%d of %d failed)", name, c.Fail, c.Fail+c.Pass))
		}
	}
	sort.Strings(out)
	return out
}
