package dashshot

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

var securityOverview = filepath.Join("..", "..", "..", "grafana", "dashboards", "security-overview.json")

// fakeQuerier answers every query with a fixed set of series: two series
// with a gap for range queries, one labelled sample for instant ones.
type fakeQuerier struct{ queries []string }

func (f *fakeQuerier) QueryRange(_ context.Context, q string, start, end time.Time, step time.Duration) ([]Series, error) {
	f.queries = append(f.queries, q)
	var a, b []Point
	for t := start; !t.After(end); t = t.Add(step) {
		x := t.Sub(start).Seconds()
		a = append(a, Point{T: t, V: 2 + math.Sin(x/5)})
		if x < 10 || x > 20 { // a gap the line must break at
			b = append(b, Point{T: t, V: x / 10})
		}
	}
	return []Series{
		{Labels: map[string]string{"type": "auth.login.failed", "reason": "bad_credentials", "service": "auth-service"}, Points: a},
		{Labels: map[string]string{"type": "token.rejected", "reason": "signature", "service": "gateway"}, Points: b},
	}, nil
}

func (f *fakeQuerier) Query(_ context.Context, q string, at time.Time) ([]Series, error) {
	f.queries = append(f.queries, q)
	if strings.Contains(q, "auth.refresh.reused") {
		return nil, errors.New("bad_data: an error the panel must show")
	}
	return []Series{{Labels: map[string]string{"alertname": "RampartTokenForgery", "severity": "critical", "service": "gateway"},
		Points: []Point{{T: at, V: 3}}}}, nil
}

func window() Window {
	start := time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)
	return Window{Start: start, End: start.Add(90 * time.Second), Step: 2 * time.Second, RateInterval: 10 * time.Second}
}

// TestRenderSecurityOverview renders the real dashboard from fixed series
// and proves the output is well-formed XML in which every panel is either
// drawn or named unsupported with a reason.
func TestRenderSecurityOverview(t *testing.T) {
	t.Parallel()
	d, err := Load(securityOverview)
	if err != nil {
		t.Fatal(err)
	}
	q := &fakeQuerier{}
	w := window()
	data := Evaluate(context.Background(), q, d, w)
	var out bytes.Buffer
	if err := Render(&out, d, data, w, Options{Note: "test"}); err != nil {
		t.Fatal(err)
	}
	groups := wellFormed(t, out.Bytes())

	for _, p := range d.AllPanels() {
		g, ok := groups["panel-"+strconv.Itoa(p.ID)]
		if !ok {
			t.Errorf("panel %d %q is not in the SVG", p.ID, p.Title)
			continue
		}
		supported, reason := Supported(p.Type)
		switch {
		case supported && g.class == "unsupported":
			t.Errorf("panel %d %q (%s) is drawn as unsupported", p.ID, p.Title, p.Type)
		case !supported && (reason == "" || !strings.Contains(g.text, reason)):
			t.Errorf("panel %d %q (%s) is unsupported without its reason in the SVG (reason %q)", p.ID, p.Title, p.Type, reason)
		case !supported:
			t.Logf("panel %d %q (%s) not rendered: %s", p.ID, p.Title, p.Type, reason)
		}
		if supported && p.Type != "row" && !strings.Contains(g.text, p.Title) {
			t.Errorf("panel %d: title %q not drawn", p.ID, p.Title)
		}
	}
	// No Grafana variable reaches Prometheus.
	for _, e := range q.queries {
		if strings.Contains(e, "$") {
			t.Errorf("query still has a variable: %s", e)
		}
	}
	// A failing query is shown in its panel, not hidden.
	if !strings.Contains(out.String(), "query error: bad_data") {
		t.Error("the failing query's error is not drawn")
	}
}

// TestUnsupportedPanelsNameTheirReason draws a dashboard with a panel type
// the renderer does not know.
func TestUnsupportedPanelsNameTheirReason(t *testing.T) {
	t.Parallel()
	d := &Dashboard{Title: "t", Panels: []Panel{
		{ID: 1, Type: "text", Title: "Notes", GridPos: GridPos{W: 12, H: 4}},
		{ID: 2, Type: "piechart", Title: "Pie", GridPos: GridPos{X: 12, W: 12, H: 4}},
	}}
	var out bytes.Buffer
	if err := Render(&out, d, Data{}, window(), Options{}); err != nil {
		t.Fatal(err)
	}
	groups := wellFormed(t, out.Bytes())
	for _, id := range []string{"panel-1", "panel-2"} {
		if g := groups[id]; g.class != "unsupported" || !strings.Contains(g.text, "not rendered: ") {
			t.Errorf("%s: class %q text %q, want unsupported with a reason", id, g.class, g.text)
		}
	}
}

// TestExpandReplacesGrafanaVariables checks the substitutions Grafana
// would make for an operator viewing all services.
func TestExpandReplacesGrafanaVariables(t *testing.T) {
	t.Parallel()
	d := &Dashboard{}
	d.Templating.List = []Variable{{Name: "service", IncludeAll: true, AllValue: ".*"}, {Name: "route"}}
	got := d.Expand(`sum(rate(x{service=~"$service",route=~"${route}"}[$__rate_interval])) + increase(y[$__range]) / $__interval`, window())
	want := `sum(rate(x{service=~".*",route=~".*"}[10s])) + increase(y[90s]) / 2s`
	if got != want {
		t.Errorf("Expand = %s\nwant    %s", got, want)
	}
}

// TestFormatValue pins the units the dashboards use.
func TestFormatValue(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		v    float64
		unit string
		want string
	}{
		{2.5, "suffix: events/s", "2.5 events/s"},
		{0.0123, "suffix: events/s", "0.012 events/s"},
		{1500, "short", "1.5 K"},
		{3, "none", "3"},
		{0.25, "percentunit", "25%"},
		{0.2, "s", "200 ms"},
		{math.NaN(), "short", "–"},
	} {
		if got := formatValue(c.v, c.unit); got != c.want {
			t.Errorf("formatValue(%v, %q) = %q, want %q", c.v, c.unit, got, c.want)
		}
	}
}

type group struct{ class, text string }

// wellFormed parses svg with encoding/xml, fails on any error, checks the
// root is an <svg>, and returns each <g id="panel-N"> with its class and
// text content.
func wellFormed(t *testing.T, svg []byte) map[string]group {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(svg))
	dec.Strict = true
	out := map[string]group{}
	var cur string
	depth, root := 0, ""
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v", err)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				root = el.Name.Local
			}
			depth++
			if el.Name.Local == "g" {
				var id, class string
				for _, a := range el.Attr {
					switch a.Name.Local {
					case "id":
						id = a.Value
					case "class":
						class = a.Value
					}
				}
				if strings.HasPrefix(id, "panel-") {
					cur = id
					out[id] = group{class: class}
				}
			}
		case xml.EndElement:
			depth--
			if el.Name.Local == "g" {
				cur = ""
			}
		case xml.CharData:
			if cur != "" {
				g := out[cur]
				g.text += string(el)
				out[cur] = g
			}
		}
	}
	if root != "svg" || depth != 0 {
		t.Fatalf("root element %q, depth %d at end", root, depth)
	}
	return out
}
