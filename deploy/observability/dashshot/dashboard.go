// Package dashshot renders a Grafana dashboard file to one self-contained
// SVG from the answers of Prometheus's HTTP API: the dashboard's grid
// layout (gridPos), panel frames and titles, time series as lines with a
// legend and y-axis labels in the panel's unit, stat panels as big
// numbers coloured by their thresholds, tables and bar gauges. It is how
// the README's Security overview screenshot is produced from a real run
// (deploy/cmd/dashshot) without a Grafana server or a browser.
//
// It uses the standard library only and knows the subset of the Grafana
// dashboard schema our dashboards use; a panel type it does not draw is
// drawn as a frame naming the reason (Supported).
package dashshot

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Dashboard is the part of a Grafana dashboard file the renderer reads.
type Dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []Panel `json:"panels"`
	Templating struct {
		List []Variable `json:"list"`
	} `json:"templating"`
}

// Variable is a dashboard template variable.
type Variable struct {
	Name       string `json:"name"`
	IncludeAll bool   `json:"includeAll"`
	AllValue   string `json:"allValue"`
}

// Panel is one dashboard panel.
type Panel struct {
	ID          int      `json:"id"`
	Type        string   `json:"type"`
	Title       string   `json:"title"`
	GridPos     GridPos  `json:"gridPos"`
	Targets     []Target `json:"targets"`
	FieldConfig struct {
		Defaults struct {
			Unit       string      `json:"unit"`
			Thresholds *Thresholds `json:"thresholds"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	Options struct {
		ReduceOptions struct {
			Calcs []string `json:"calcs"`
		} `json:"reduceOptions"`
		GraphMode string `json:"graphMode"`
		ColorMode string `json:"colorMode"`
		Legend    struct {
			DisplayMode string   `json:"displayMode"`
			Calcs       []string `json:"calcs"`
		} `json:"legend"`
	} `json:"options"`
	// Panels are a collapsed row's panels.
	Panels []Panel `json:"panels"`
}

// GridPos is a panel's place on Grafana's 24-column grid.
type GridPos struct {
	X int `json:"x"`
	Y int `json:"y"`
	W int `json:"w"`
	H int `json:"h"`
}

// Target is one query of a panel.
type Target struct {
	RefID        string `json:"refId"`
	Expr         string `json:"expr"`
	LegendFormat string `json:"legendFormat"`
	Instant      bool   `json:"instant"`
	Format       string `json:"format"`
}

// Thresholds colour a stat by its value.
type Thresholds struct {
	Steps []struct {
		Color string   `json:"color"`
		Value *float64 `json:"value"`
	} `json:"steps"`
}

// Load reads and decodes a dashboard file. It returns an error if the
// file cannot be read or is not a dashboard.
func Load(path string) (*Dashboard, error) {
	b, err := os.ReadFile(path) //nolint:gosec // G304: the operator names the dashboard
	if err != nil {
		return nil, err
	}
	var d Dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("decode dashboard %s: %w", path, err)
	}
	if len(d.Panels) == 0 {
		return nil, fmt.Errorf("dashboard %s has no panels", path)
	}
	return &d, nil
}

// AllPanels returns the dashboard's panels with collapsed rows' panels
// after their row, in grid order (top to bottom, left to right).
func (d *Dashboard) AllPanels() []Panel {
	var out []Panel
	for _, p := range d.Panels {
		out = append(out, p)
		out = append(out, p.Panels...)
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].GridPos, out[j].GridPos
		if a.Y != b.Y {
			return a.Y < b.Y
		}
		return a.X < b.X
	})
	return out
}

// Supported reports whether the renderer draws panel type typ, and why
// not when it does not. Rows are drawn as section headings.
func Supported(typ string) (bool, string) {
	switch typ {
	case "row", "timeseries", "stat", "table", "bargauge":
		return true, ""
	case "text":
		return false, "text panels hold Markdown, which an SVG cannot lay out without a Markdown renderer"
	case "heatmap":
		return false, "heatmaps need histogram bucket layout the renderer does not implement"
	case "logs", "traces":
		return false, "log and trace panels query Loki/Tempo, not Prometheus"
	default:
		return false, fmt.Sprintf("panel type %q is not implemented by the renderer", typ)
	}
}

// Window is the time range a dashboard is rendered for, with the values
// of Grafana's built-in interval variables.
type Window struct {
	Start, End time.Time
	// Step is the resolution of range queries ($__interval).
	Step time.Duration
	// RateInterval replaces $__rate_interval. Grafana computes it as
	// max($__interval + scrape interval, 4 × scrape interval) with the
	// data source's scrape interval; callers pass what fits their run.
	RateInterval time.Duration
}

// Expand replaces Grafana's variables in a PromQL expression: the
// built-in $__rate_interval, $__interval and $__range with w's values,
// and each dashboard variable with its "All" value (.* when it has none),
// which is what an operator opening the dashboard sees.
func (d *Dashboard) Expand(expr string, w Window) string {
	repl := []string{
		"$__rate_interval", promDuration(w.RateInterval),
		"${__rate_interval}", promDuration(w.RateInterval),
		"$__interval", promDuration(w.Step),
		"${__interval}", promDuration(w.Step),
		"$__range", promDuration(w.End.Sub(w.Start)),
		"${__range}", promDuration(w.End.Sub(w.Start)),
	}
	for _, v := range d.Templating.List {
		all := v.AllValue
		if all == "" {
			all = ".*"
		}
		repl = append(repl, "${"+v.Name+"}", all, "$"+v.Name, all)
	}
	return strings.NewReplacer(repl...).Replace(expr)
}

// promDuration is d in whole seconds (at least 1s), as PromQL wants it.
func promDuration(d time.Duration) string {
	s := int64(d.Round(time.Second) / time.Second)
	return fmt.Sprintf("%ds", max(s, 1))
}

var legendLabel = regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)

// LegendName is a series' name as Grafana shows it: legendFormat with
// {{label}} replaced, or the label set when there is no format.
func LegendName(format string, labels map[string]string) string {
	if format != "" {
		return strings.TrimSpace(legendLabel.ReplaceAllStringFunc(format, func(m string) string {
			return labels[legendLabel.FindStringSubmatch(m)[1]]
		}))
	}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		if k != "__name__" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%q", k, labels[k]))
	}
	return labels["__name__"] + "{" + strings.Join(parts, ", ") + "}"
}
