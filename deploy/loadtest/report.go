package loadtest

import (
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Threshold is one pass/fail rule over a run's summary (k6's thresholds).
type Threshold struct {
	Name string
	Eval func(*Summary) (got string, ok bool)
}

// ThresholdResult is an evaluated threshold.
type ThresholdResult struct {
	Name string `json:"name"`
	Got  string `json:"got"`
	OK   bool   `json:"ok"`
}

// tagOrAll returns the figures of tag, or of the whole run for "".
func tagOrAll(s *Summary, tag string) (p95, p99 time.Duration, errRate float64, n int64) {
	if tag == "" {
		return s.P95, s.P99, s.ErrorRate, s.Requests
	}
	t := s.Tags[tag]
	if t == nil {
		return 0, 0, 0, 0
	}
	return t.P95, t.P99, t.ErrorRate, t.Requests
}

func label(tag string) string {
	if tag == "" {
		return "all requests"
	}
	return tag
}

// P95Below holds when tag's p95 (all requests for "") is under d. A tag
// that saw no request fails: a budget nobody exercised proves nothing.
func P95Below(tag string, d time.Duration) Threshold {
	return Threshold{Name: fmt.Sprintf("p95 %s < %s", label(tag), d), Eval: func(s *Summary) (string, bool) {
		p95, _, _, n := tagOrAll(s, tag)
		return fmt.Sprintf("%s (n=%d)", ms(p95), n), n > 0 && p95 < d
	}}
}

// P99Below is P95Below for the 99th percentile.
func P99Below(tag string, d time.Duration) Threshold {
	return Threshold{Name: fmt.Sprintf("p99 %s < %s", label(tag), d), Eval: func(s *Summary) (string, bool) {
		_, p99, _, n := tagOrAll(s, tag)
		return fmt.Sprintf("%s (n=%d)", ms(p99), n), n > 0 && p99 < d
	}}
}

// ErrorRateBelow holds when tag's share of unexpected answers is at most
// max (0: none at all).
func ErrorRateBelow(tag string, limit float64) Threshold {
	return Threshold{Name: fmt.Sprintf("error rate %s <= %g%%", label(tag), limit*100), Eval: func(s *Summary) (string, bool) {
		_, _, r, n := tagOrAll(s, tag)
		return fmt.Sprintf("%.3f%% (n=%d)", r*100, n), n > 0 && r <= limit
	}}
}

// NoUnexpected401 holds when no request that did not expect a 401 got
// one: across a signing-key rotation this proves the rotation seamless.
func NoUnexpected401() Threshold {
	return Threshold{Name: "unexpected 401s == 0", Eval: func(s *Summary) (string, bool) {
		return fmt.Sprint(s.Unexpected401), s.Unexpected401 == 0
	}}
}

// ChecksPass holds when every check passed every time.
func ChecksPass() Threshold {
	return Threshold{Name: "every check passes", Eval: func(s *Summary) (string, bool) {
		f := s.CheckFailures()
		if len(f) == 0 {
			return fmt.Sprintf("%d checks", len(s.Checks)), len(s.Checks) > 0
		}
		return strings.Join(f, "; "), false
	}}
}

// DroppedBelow holds when at most share of the scheduled iterations were
// dropped for want of a free worker.
func DroppedBelow(share float64) Threshold {
	return Threshold{Name: fmt.Sprintf("dropped iterations <= %g%%", share*100), Eval: func(s *Summary) (string, bool) {
		all := float64(s.Dropped) + float64(s.Requests)
		if all == 0 {
			return "0", true
		}
		r := float64(s.Dropped) / all
		return fmt.Sprintf("%d (%.2f%%)", s.Dropped, r*100), r <= share
	}}
}

// StatusShare holds when at least minShare of the answers under tags
// starting with tag have one of codes
// (attackers must be stopped).
func StatusShare(tag string, minShare float64, codes ...int) Threshold {
	return Threshold{Name: fmt.Sprintf("%s answered %v >= %g%%", tag, codes, minShare*100), Eval: func(s *Summary) (string, bool) {
		var n, all int64
		for name, t := range s.Tags {
			if !strings.HasPrefix(name, tag) {
				continue
			}
			all += t.Requests
			for _, c := range codes {
				n += t.Statuses[c]
			}
		}
		if all == 0 {
			return "no requests", false
		}
		r := float64(n) / float64(all)
		return fmt.Sprintf("%.1f%% of %d", r*100, all), r >= minShare
	}}
}

// CounterEquals holds when the recorded counter delta name equals want(s).
func CounterEquals(name string, want func(*Summary) float64) Threshold {
	return Threshold{Name: "counter " + name + " rose by the expected amount", Eval: func(s *Summary) (string, bool) {
		got, ok := s.Counters[name]
		w := want(s)
		return fmt.Sprintf("rose %g, expected %g", got, w), ok && got == w
	}}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

// WriteResults writes DIR/<scenario>-<time>.json and .md, and returns
// their paths.
func WriteResults(dir string, s *Summary) (string, string, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", "", err
	}
	base := filepath.Join(dir, s.Scenario+"-"+s.Started.UTC().Format("20060102T150405Z"))
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return "", "", err
	}
	if err := os.WriteFile(base+".json", b, 0o600); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(base+".md", []byte(s.Markdown()), 0o600); err != nil {
		return "", "", err
	}
	return base + ".json", base + ".md", nil
}

// Markdown renders the summary as the tables docs/PERFORMANCE.md quotes.
func (s *Summary) Markdown() string {
	var b strings.Builder
	verdict := "PASSED"
	if !s.Passed {
		verdict = "FAILED"
	}
	fmt.Fprintf(&b, "## %s — %s\n\n", s.Scenario, verdict)
	fmt.Fprintf(&b, "Target %s, started %s, %s. %d requests, %.0f req/s, error rate %.3f%%, "+
		"p50 %s, p95 %s, p99 %s, unexpected 401s %d, dropped iterations %d.\n\n",
		s.Target, s.Started.UTC().Format(time.RFC3339), s.Duration.Round(time.Second), s.Requests, s.Rate,
		s.ErrorRate*100, ms(s.P50), ms(s.P95), ms(s.P99), s.Unexpected401, s.Dropped)
	b.WriteString("| route tag | requests | req/s | errors | p50 | p95 | p99 | max | statuses |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n")
	for _, name := range s.TagNames() {
		t := s.Tags[name]
		fmt.Fprintf(&b, "| %s | %d | %.1f | %d | %s | %s | %s | %s | %s |\n", name, t.Requests, t.Rate, t.Errors,
			ms(t.P50), ms(t.P95), ms(t.P99), ms(t.Max), statuses(t.Statuses))
	}
	b.WriteString("\n| threshold | got | ok |\n| --- | --- | --- |\n")
	for _, th := range s.Thresholds {
		ok := "yes"
		if !th.OK {
			ok = "**NO**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", th.Name, th.Got, ok)
	}
	if len(s.Counters) > 0 {
		b.WriteString("\n| security counter (Δ over the run) | value |\n| --- | ---: |\n")
		for _, k := range sortedKeys(s.Counters) {
			fmt.Fprintf(&b, "| %s | %g |\n", k, s.Counters[k])
		}
	}
	if len(s.Failures) > 0 {
		b.WriteString("\nFirst unexpected answers (trace id sent in traceparent; request id from the gateway):\n\n")
		for _, f := range s.Failures {
			fmt.Fprintf(&b, "- %s %s %s → %d %s trace=%s request=%s\n", f.Tag, f.Method, f.Path, f.Status, f.Error, f.TraceID, f.RequestID)
		}
	}
	return b.String()
}

func statuses(m map[int]int64) string {
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%d×%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
