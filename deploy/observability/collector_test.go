package observability

import (
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// collectorConfig is the OpenTelemetry collector configuration that docker
// compose mounts.
var collectorConfig = filepath.Join(root, "deploy", "otel-collector", "config.yaml")

// The processors that redact, in the order every traces pipeline must run
// them: after memory_limiter, before batch and any exporter.
var redactors = []string{"attributes/redact", "transform/redact", "redaction"}

// sensitiveKeys must never reach the trace backend, on spans or on span
// events (security events are span events).
var sensitiveKeys = []string{
	"http.request.header.authorization", "http.request.header.Authorization",
	"http.request.header.proxy-authorization", "http.request.header.cookie",
	"http.response.header.set-cookie", "http.response.header.set_cookie",
	"authorization", "cookie", "set-cookie",
	"email", "user.email", "enduser.email",
	"password", "user.password", "db.password",
	"token", "access_token", "refresh_token", "id_token",
	"client_secret", "rampart.client_secret", "code_verifier",
}

// keptKeys are attributes Rampart sets that an operator needs: a pattern
// broad enough to delete one of them is a bug too.
var keptKeys = []string{
	"http.route", "http.request.method", "http.response.status_code", "url.path", "url.scheme",
	"client.address", "client_id", "enduser.id", "request_id", "security.type", "security.reason",
	"security.severity", "messaging.message.id", "messaging.destination.name", "rampart.upstream",
	"db.operation.name", "db.collection.name", "service.name",
}

type collectorDoc struct {
	Receivers  map[string]any            `yaml:"receivers"`
	Processors map[string]map[string]any `yaml:"processors"`
	Exporters  map[string]any            `yaml:"exporters"`
	Service    struct {
		Pipelines map[string]struct {
			Receivers  []string `yaml:"receivers"`
			Processors []string `yaml:"processors"`
			Exporters  []string `yaml:"exporters"`
		} `yaml:"pipelines"`
	} `yaml:"service"`
}

// confmap turns the collector's "$$" escape back into the "$" a component
// receives.
func confmap(s string) string { return strings.ReplaceAll(s, "$$", "$") }

// TestCollectorRedactsEveryTracesPipeline parses the collector
// configuration and checks what the collector would do with it: every
// traces pipeline runs the redaction processors between memory_limiter
// and batch; the attributes processor deletes every sensitive key (and no
// key an operator needs); the transform processor deletes the same from
// span events and blanks OAuth parameters in query strings and URLs; the
// redaction processor masks JWTs and Authorization values. The patterns
// are compiled and run with Go's regexp, the collector's own engine.
func TestCollectorRedactsEveryTracesPipeline(t *testing.T) {
	var doc collectorDoc
	readYAML(t, collectorConfig, &doc)

	t.Run("every traces pipeline redacts before batching and exporting", func(t *testing.T) {
		traces := 0
		for name, p := range doc.Service.Pipelines {
			for _, r := range p.Receivers {
				if _, ok := doc.Receivers[r]; !ok {
					t.Errorf("pipeline %s: receiver %s is not configured", name, r)
				}
			}
			for _, e := range p.Exporters {
				if _, ok := doc.Exporters[e]; !ok {
					t.Errorf("pipeline %s: exporter %s is not configured", name, e)
				}
			}
			for _, pr := range p.Processors {
				if _, ok := doc.Processors[pr]; !ok {
					t.Errorf("pipeline %s: processor %s is not configured", name, pr)
				}
			}
			if name != "traces" && !strings.HasPrefix(name, "traces/") {
				continue
			}
			traces++
			if len(p.Processors) == 0 || p.Processors[0] != "memory_limiter" {
				t.Errorf("pipeline %s: processors %v, want memory_limiter first", name, p.Processors)
			}
			last := 0
			for _, r := range redactors {
				i := slices.Index(p.Processors, r)
				if i < 0 {
					t.Errorf("pipeline %s: processors %v lack %s", name, p.Processors, r)
					continue
				}
				if i < last {
					t.Errorf("pipeline %s: %s runs before the redactor listed ahead of it in %v", name, r, redactors)
				}
				last = i
			}
			if b := slices.Index(p.Processors, "batch"); b < 0 || b < last {
				t.Errorf("pipeline %s: processors %v, want batch after the redactors", name, p.Processors)
			}
		}
		if traces == 0 {
			t.Fatal("no traces pipeline")
		}
	})

	t.Run("span attributes: sensitive keys deleted, useful ones kept", func(t *testing.T) {
		actions, _ := doc.Processors["attributes/redact"]["actions"].([]any)
		var keys []string
		var patterns []*regexp.Regexp
		for _, a := range actions {
			m, _ := a.(map[string]any)
			if m["action"] != "delete" {
				t.Errorf("attributes/redact: action %v: only deletions belong here", m)
				continue
			}
			if k, ok := m["key"].(string); ok {
				keys = append(keys, k)
			}
			if p, ok := m["pattern"].(string); ok {
				re, err := regexp.Compile(confmap(p))
				if err != nil {
					t.Errorf("attributes/redact: pattern %q: %v", p, err)
					continue
				}
				patterns = append(patterns, re)
			}
		}
		deleted := func(k string) bool {
			return slices.Contains(keys, k) || slices.ContainsFunc(patterns, func(re *regexp.Regexp) bool { return re.MatchString(k) })
		}
		for _, k := range sensitiveKeys {
			if !deleted(k) {
				t.Errorf("attributes/redact keeps %q", k)
			}
		}
		for _, k := range keptKeys {
			if deleted(k) {
				t.Errorf("attributes/redact deletes %q, which operators need", k)
			}
		}
	})

	stmts := ottlStatements(t, doc.Processors["transform/redact"])

	t.Run("span events: sensitive keys deleted, useful ones kept", func(t *testing.T) {
		var patterns []*regexp.Regexp
		for _, s := range stmts["spanevent"] {
			m := deleteMatchingKeys.FindStringSubmatch(s)
			if m == nil {
				continue
			}
			re, err := regexp.Compile(confmap(ottlString(t, m[1])))
			if err != nil {
				t.Fatalf("transform/redact: %s: %v", s, err)
			}
			patterns = append(patterns, re)
		}
		if len(patterns) == 0 {
			t.Fatal("transform/redact deletes nothing from span events")
		}
		for _, k := range sensitiveKeys {
			if !slices.ContainsFunc(patterns, func(re *regexp.Regexp) bool { return re.MatchString(k) }) {
				t.Errorf("span events keep %q", k)
			}
		}
		for _, k := range keptKeys {
			if slices.ContainsFunc(patterns, func(re *regexp.Regexp) bool { return re.MatchString(k) }) {
				t.Errorf("span events lose %q, which operators need", k)
			}
		}
	})

	t.Run("OAuth parameters in query strings and URLs are blanked", func(t *testing.T) {
		samples := map[string]struct{ in, want string }{
			"url.query":   {"code=SPLxlOBeZQQYbYS6WxSbIA&state=af0ifjsldkj&iss=x", "code=REDACTED&state=REDACTED&iss=x"},
			"url.full":    {"http://127.0.0.1:53682/callback?state=s1&code=c1", "http://127.0.0.1:53682/callback?state=REDACTED&code=REDACTED"},
			"http.url":    {"https://rampart/oauth2/logout?id_token_hint=eyJ.a.b&x=1", "https://rampart/oauth2/logout?id_token_hint=REDACTED&x=1"},
			"http.target": {"/cb?Code=abc&STATE=def#frag", "/cb?Code=REDACTED&STATE=REDACTED#frag"},
		}
		done := map[string]bool{}
		for _, s := range stmts["span"] {
			m := replacePattern.FindStringSubmatch(s)
			if m == nil {
				continue
			}
			attr := m[1]
			re, err := regexp.Compile(confmap(ottlString(t, m[2])))
			if err != nil {
				t.Fatalf("transform/redact: %s: %v", s, err)
			}
			sample, ok := samples[attr]
			if !ok {
				continue
			}
			if got := re.ReplaceAllString(sample.in, confmap(ottlString(t, m[3]))); got != sample.want {
				t.Errorf("%s %q becomes %q, want %q", attr, sample.in, got, sample.want)
			}
			done[attr] = true
		}
		for attr := range samples {
			if !done[attr] {
				t.Errorf("transform/redact does not rewrite %s", attr)
			}
		}
	})

	t.Run("values that look like credentials are masked", func(t *testing.T) {
		r := doc.Processors["redaction"]
		if r["allow_all_keys"] != true {
			t.Errorf("redaction: allow_all_keys %v: the attributes processor decides which keys go, this one masks values", r["allow_all_keys"])
		}
		blocked, _ := r["blocked_values"].([]any)
		var res []*regexp.Regexp
		for _, b := range blocked {
			re, err := regexp.Compile(confmap(b.(string)))
			if err != nil {
				t.Fatalf("redaction: blocked value %q: %v", b, err)
			}
			res = append(res, re)
		}
		masked := func(v string) bool {
			return slices.ContainsFunc(res, func(re *regexp.Regexp) bool { return re.MatchString(v) })
		}
		for _, v := range []string{
			"eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCJ9.eyJzdWIiOiJ4In0.c2ln",
			"Bearer 2YotnFZFEjr1zCsicMWpAA", "basic cmFtcGFydC1tYWNoaW5lOnNlY3JldA==",
			"password=hunter2hunter2",
		} {
			if !masked(v) {
				t.Errorf("redaction does not mask %q", v)
			}
		}
		for _, v := range []string{"/api/v1/orders/{id}", "rampart-demo", "8b0f2d4e-0000-4000-8000-000000000001", "auth.login.failed"} {
			if masked(v) {
				t.Errorf("redaction masks %q, which operators need", v)
			}
		}
	})

	t.Run("docker compose mounts this file", func(t *testing.T) {
		var compose struct {
			Services map[string]struct {
				Command []string `yaml:"command"`
				Volumes []any    `yaml:"volumes"`
			} `yaml:"services"`
		}
		readYAML(t, filepath.Join(root, "docker-compose.yml"), &compose)
		svc, ok := compose.Services["otel-collector"]
		if !ok {
			t.Fatal("docker-compose.yml has no otel-collector service")
		}
		target := ""
		for _, v := range svc.Volumes {
			m, _ := v.(map[string]any)
			if m["source"] == "./deploy/otel-collector/config.yaml" {
				target, _ = m["target"].(string)
			}
		}
		if target == "" || !slices.Contains(svc.Command, "--config="+target) {
			t.Errorf("otel-collector mounts %v with command %v, want deploy/otel-collector/config.yaml as its --config", svc.Volumes, svc.Command)
		}
	})
}

var (
	replacePattern     = regexp.MustCompile(`^replace_pattern\(attributes\["([^"]+)"\],\s*("(?:[^"\\]|\\.)*"),\s*("(?:[^"\\]|\\.)*")\)$`)
	deleteMatchingKeys = regexp.MustCompile(`^delete_matching_keys\(attributes,\s*("(?:[^"\\]|\\.)*")\)$`)
)

// ottlStatements returns a transform processor's trace statements by
// context.
func ottlStatements(t *testing.T, transform map[string]any) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	groups, _ := transform["trace_statements"].([]any)
	for _, g := range groups {
		m, _ := g.(map[string]any)
		ctx, _ := m["context"].(string)
		ss, _ := m["statements"].([]any)
		for _, s := range ss {
			str, _ := s.(string)
			out[ctx] = append(out[ctx], strings.TrimSpace(str))
		}
	}
	if len(out) == 0 {
		t.Fatal("transform/redact has no trace statements")
	}
	return out
}

// ottlString decodes an OTTL string literal (double-quoted, backslash
// escapes as in Go).
func ottlString(t *testing.T, lit string) string {
	t.Helper()
	s, err := strconv.Unquote(lit)
	if err != nil {
		t.Fatalf("OTTL string %s: %v", lit, err)
	}
	return s
}
