package observability

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"
)

var (
	grafanaDir    = filepath.Join(root, "grafana")
	dashboardsDir = filepath.Join(grafanaDir, "dashboards")
)

// syntheticSeries are series Prometheus makes itself, not any service:
// they can never appear on a /metrics page.
var syntheticSeries = map[string]bool{"up": true, "ALERTS": true, "ALERTS_FOR_STATE": true}

// grafanaBuiltinUIDs are data sources every Grafana has without
// provisioning (annotations and alerts).
var grafanaBuiltinUIDs = map[string]bool{"-- Grafana --": true, "grafana": true}

// urlPattern finds anything that looks like an absolute URL; the only ones
// a dashboard may hold are links into this repository's docs.
var (
	urlPattern     = regexp.MustCompile(`[a-zA-Z][a-zA-Z0-9+.-]*://[^\s"]*`)
	allowedURLBase = "https://github.com/rampart-go/rampart/"
)

// grafanaVars replaces Grafana's macros and template variables with values
// the PromQL parser accepts, longest name first.
var grafanaVars = strings.NewReplacer(
	"$__rate_interval", "5m", "${__rate_interval}", "5m",
	"$__interval", "1m", "${__interval}", "1m",
	"$__range", "1h", "${__range}", "1h",
	"${service}", "x", "$service", "x",
)

// provisionedUIDs reads the data-source uids from grafana/provisioning.
func provisionedUIDs(t testing.TB) map[string]string {
	t.Helper()
	uids := map[string]string{}
	for _, f := range glob(t, filepath.Join(grafanaDir, "provisioning", "datasources"), "*.yml") {
		var doc struct {
			Datasources []struct {
				Name     string         `yaml:"name"`
				UID      string         `yaml:"uid"`
				Type     string         `yaml:"type"`
				URL      string         `yaml:"url"`
				JSONData map[string]any `yaml:"jsonData"`
			} `yaml:"datasources"`
		}
		readYAML(t, f, &doc)
		for _, ds := range doc.Datasources {
			if ds.UID == "" {
				t.Errorf("%s: data source %q has no uid: dashboards could not refer to it", f, ds.Name)
				continue
			}
			if _, dup := uids[ds.UID]; dup {
				t.Errorf("%s: data source uid %q provisioned twice", f, ds.UID)
			}
			uids[ds.UID] = ds.Type
		}
		// Exemplars must link to a provisioned trace data source.
		for _, ds := range doc.Datasources {
			dests, _ := ds.JSONData["exemplarTraceIdDestinations"].([]any)
			for _, d := range dests {
				m, _ := d.(map[string]any)
				uid, _ := m["datasourceUid"].(string)
				if uids[uid] != "tempo" {
					t.Errorf("%s: %s exemplars link to %q, not a provisioned Tempo uid", f, ds.Name, uid)
				}
			}
		}
	}
	return uids
}

func readYAML(t testing.TB, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// dashboard is one parsed dashboard file.
type dashboard struct {
	file string
	raw  []byte
	doc  map[string]any
}

func loadDashboards(t testing.TB) []dashboard {
	t.Helper()
	var out []dashboard
	for _, f := range glob(t, dashboardsDir, "*.json") {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out = append(out, dashboard{file: filepath.Base(f), raw: b, doc: doc})
	}
	return out
}

// walk calls fn for every JSON object in v, depth first.
func walk(v any, fn func(map[string]any)) {
	switch x := v.(type) {
	case map[string]any:
		fn(x)
		for _, c := range x {
			walk(c, fn)
		}
	case []any:
		for _, c := range x {
			walk(c, fn)
		}
	}
}

// panels returns every panel, rows' nested panels included.
func panels(doc map[string]any) []map[string]any {
	var out []map[string]any
	var add func(list any)
	add = func(list any) {
		ps, _ := list.([]any)
		for _, p := range ps {
			m, ok := p.(map[string]any)
			if !ok {
				continue
			}
			out = append(out, m)
			add(m["panels"])
		}
	}
	add(doc["panels"])
	return out
}

// dashboardExprs returns every PromQL expression of a dashboard, keyed by
// where it is, template-variable queries included.
func dashboardExprs(t testing.TB, d dashboard) map[string]string {
	t.Helper()
	exprs := map[string]string{}
	for _, p := range panels(d.doc) {
		ts, _ := p["targets"].([]any)
		for _, x := range ts {
			tg, _ := x.(map[string]any)
			if e, ok := tg["expr"].(string); ok {
				exprs[d.file+": panel "+title(p)+" "+str(tg["refId"])] = e
			}
		}
	}
	tmpl, _ := d.doc["templating"].(map[string]any)
	list, _ := tmpl["list"].([]any)
	for _, x := range list {
		v, _ := x.(map[string]any)
		if v["type"] != "query" {
			continue
		}
		q := v["query"]
		if m, ok := q.(map[string]any); ok {
			q = m["query"]
		}
		s, _ := q.(string)
		exprs[d.file+": variable "+str(v["name"])] = variableExpr(t, s)
	}
	return exprs
}

// labelValues matches Grafana's label_values(selector, label) variable query.
var labelValues = regexp.MustCompile(`^label_values\((.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\)$`)

// variableExpr turns a Prometheus variable query into PromQL.
func variableExpr(t testing.TB, q string) string {
	t.Helper()
	if m := labelValues.FindStringSubmatch(strings.TrimSpace(q)); m != nil {
		return m[1]
	}
	if strings.HasPrefix(q, "query_result(") {
		return strings.TrimSuffix(strings.TrimPrefix(q, "query_result("), ")")
	}
	t.Errorf("variable query %q: not label_values(...) or query_result(...)", q)
	return q
}

func title(p map[string]any) string { return "“" + str(p["title"]) + "”" }

func str(v any) string {
	s, _ := v.(string)
	return s
}

// metricNames parses expr and returns every metric name it selects.
func metricNames(expr string) ([]string, error) {
	e, err := parser.ParseExpr(grafanaVars.Replace(expr))
	if err != nil {
		return nil, err
	}
	var names []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		if name == "" {
			for _, m := range vs.LabelMatchers {
				if m.Name == "__name__" && m.Type.String() == "=" {
					name = m.Value
				}
			}
		}
		if name != "" {
			names = append(names, name)
		}
		return nil
	})
	return names, nil
}

// ruleFile is a Prometheus rule file.
type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Record      string            `yaml:"record"`
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func loadRules(t testing.TB) []ruleFile {
	t.Helper()
	var out []ruleFile
	for _, f := range glob(t, promDir, "rules/*.yml") {
		var rf ruleFile
		readYAML(t, f, &rf)
		out = append(out, rf)
	}
	return out
}

// referencedMetrics returns every metric name the dashboards and rules
// select, each with one place it is used, and the recording rules' outputs.
func referencedMetrics(t testing.TB) (refs map[string]string, recorded map[string]bool) {
	t.Helper()
	refs, recorded = map[string]string{}, map[string]bool{}
	for _, rf := range loadRules(t) {
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				if r.Record != "" {
					recorded[r.Record] = true
				}
				names, err := metricNames(r.Expr)
				if err != nil {
					t.Errorf("rule %s%s: %v", r.Record, r.Alert, err)
				}
				for _, n := range names {
					refs[n] = "rule " + r.Record + r.Alert
				}
			}
		}
	}
	for _, d := range loadDashboards(t) {
		for where, e := range dashboardExprs(t, d) {
			names, err := metricNames(e)
			if err != nil {
				t.Errorf("%s: %v\n%s", where, err, e)
			}
			for _, n := range names {
				refs[n] = where
			}
		}
	}
	return refs, recorded
}

func TestDashboards(t *testing.T) {
	uids := provisionedUIDs(t)
	dashboards := loadDashboards(t)

	t.Run("uids and titles are unique", func(t *testing.T) {
		seen, titles := map[string]string{}, map[string]string{}
		for _, d := range dashboards {
			uid, ttl := str(d.doc["uid"]), str(d.doc["title"])
			if uid == "" || len(uid) > 40 {
				t.Errorf("%s: uid %q must be 1 to 40 characters", d.file, uid)
			}
			if prev, dup := seen[uid]; dup {
				t.Errorf("%s: uid %q already used by %s", d.file, uid, prev)
			}
			if prev, dup := titles[ttl]; dup || ttl == "" {
				t.Errorf("%s: title %q empty or already used by %s", d.file, ttl, prev)
			}
			seen[uid], titles[ttl] = d.file, d.file
			if _, ok := d.doc["schemaVersion"].(float64); !ok {
				t.Errorf("%s: no schemaVersion", d.file)
			}
		}
	})

	t.Run("data sources resolve to provisioned uids", func(t *testing.T) {
		for _, d := range dashboards {
			walk(d.doc, func(m map[string]any) {
				ds, ok := m["datasource"]
				if !ok {
					return
				}
				ref, ok := ds.(map[string]any)
				if !ok {
					t.Errorf("%s: data source %v is not a {type, uid} reference", d.file, ds)
					return
				}
				uid := str(ref["uid"])
				if grafanaBuiltinUIDs[uid] {
					return
				}
				typ, ok := uids[uid]
				if !ok {
					t.Errorf("%s: data source uid %q is not provisioned (have %v)", d.file, uid, keys(uids))
				} else if str(ref["type"]) != typ {
					t.Errorf("%s: data source %q has type %q, provisioned as %q", d.file, uid, ref["type"], typ)
				}
			})
		}
	})

	t.Run("no hard-coded instance URLs", func(t *testing.T) {
		for _, d := range dashboards {
			for _, u := range urlPattern.FindAllString(string(d.raw), -1) {
				if !strings.HasPrefix(u, allowedURLBase) {
					t.Errorf("%s: hard-coded URL %s", d.file, u)
				}
			}
			for _, host := range []string{"localhost", "127.0.0.1", ":9090", ":3000", ":3200"} {
				if strings.Contains(string(d.raw), host) {
					t.Errorf("%s: mentions %s", d.file, host)
				}
			}
		}
	})

	t.Run("every panel has a title and graphs have units", func(t *testing.T) {
		for _, d := range dashboards {
			ids := map[float64]bool{}
			for _, p := range panels(d.doc) {
				id, _ := p["id"].(float64)
				if ids[id] {
					t.Errorf("%s: panel id %v used twice", d.file, id)
				}
				ids[id] = true
				if str(p["title"]) == "" {
					t.Errorf("%s: panel %v has no title", d.file, id)
				}
				switch str(p["type"]) {
				case "timeseries", "stat", "gauge", "bargauge", "state-timeline":
					fc, _ := p["fieldConfig"].(map[string]any)
					def, _ := fc["defaults"].(map[string]any)
					if str(def["unit"]) == "" {
						t.Errorf("%s: panel %s has no unit", d.file, title(p))
					}
				}
				if ts, _ := p["targets"].([]any); str(p["type"]) != "row" && len(ts) == 0 {
					t.Errorf("%s: panel %s has no query", d.file, title(p))
				}
			}
		}
	})

	t.Run("every PromQL expression parses", func(t *testing.T) {
		for _, d := range dashboards {
			exprs := dashboardExprs(t, d)
			if len(exprs) == 0 {
				t.Errorf("%s: no PromQL at all", d.file)
			}
			for where, e := range exprs {
				if _, err := parser.ParseExpr(grafanaVars.Replace(e)); err != nil {
					t.Errorf("%s: %v\n%s", where, err, e)
				}
			}
		}
	})
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestAlertRules checks what promtool does not: every alert has a severity,
// a runbook section that exists, and unit tests that see it fire and stay
// quiet.
func TestAlertRules(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(root, "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for line := range strings.SplitSeq(string(doc), "\n") {
		if h, ok := strings.CutPrefix(line, "#"); ok {
			anchors[githubAnchor(strings.TrimLeft(h, "# "))] = true
		}
	}
	fires, quiet := alertTests(t)
	for _, rf := range loadRules(t) {
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				if r.Alert == "" {
					continue
				}
				if !slices.Contains([]string{"critical", "warning"}, r.Labels["severity"]) {
					t.Errorf("%s: severity %q, want critical or warning", r.Alert, r.Labels["severity"])
				}
				for _, a := range []string{"summary", "description", "runbook_url"} {
					if r.Annotations[a] == "" {
						t.Errorf("%s: no %s annotation", r.Alert, a)
					}
				}
				base, anchor, _ := strings.Cut(r.Annotations["runbook_url"], "#")
				if base != allowedURLBase+"blob/main/docs/operations.md" || !anchors[anchor] {
					t.Errorf("%s: runbook_url %q is not a section of docs/operations.md", r.Alert, r.Annotations["runbook_url"])
				}
				if !fires[r.Alert] {
					t.Errorf("%s: no promtool test sees it fire", r.Alert)
				}
				if !quiet[r.Alert] {
					t.Errorf("%s: no promtool test sees it stay quiet", r.Alert)
				}
			}
		}
	}
}

// githubAnchor is the id GitHub gives a Markdown heading.
func githubAnchor(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(h)) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteRune('-')
		}
	}
	return b.String()
}

// alertTests reads the promtool test files: which alerts some test expects
// to fire, and which some test expects to stay quiet.
func alertTests(t testing.TB) (fires, quiet map[string]bool) {
	t.Helper()
	fires, quiet = map[string]bool{}, map[string]bool{}
	for _, f := range glob(t, promDir, "tests/*.yml") {
		var doc struct {
			Tests []struct {
				AlertRuleTest []struct {
					Alertname string `yaml:"alertname"`
					ExpAlerts []any  `yaml:"exp_alerts"`
				} `yaml:"alert_rule_test"`
			} `yaml:"tests"`
		}
		readYAML(t, f, &doc)
		for _, tc := range doc.Tests {
			for _, a := range tc.AlertRuleTest {
				if len(a.ExpAlerts) > 0 {
					fires[a.Alertname] = true
				} else {
					quiet[a.Alertname] = true
				}
			}
		}
	}
	return fires, quiet
}
