package dashshot

import (
	"context"
	"math"
	"sort"
	"time"
)

// Point is one sample.
type Point struct {
	T time.Time
	V float64
}

// Series is one labelled result series; an instant query's has one point.
type Series struct {
	Labels map[string]string
	Points []Point
}

// Querier is the part of Prometheus's HTTP API the renderer needs
// (/api/v1/query_range and /api/v1/query).
type Querier interface {
	QueryRange(ctx context.Context, q string, start, end time.Time, step time.Duration) ([]Series, error)
	Query(ctx context.Context, q string, at time.Time) ([]Series, error)
}

// Line is a named series ready to draw.
type Line struct {
	Name   string
	Labels map[string]string
	Points []Point
}

// PanelData is what a panel's queries returned.
type PanelData struct {
	Lines []Line
	// Err is the first query error, drawn in the panel.
	Err string
}

// Data is every panel's data by panel id.
type Data map[int]PanelData

// Evaluate runs each drawable panel's queries against q over w, with the
// dashboard's variables expanded: range queries for time series, bar
// gauges and range stats; instant queries at w.End for tables and for
// targets marked instant. A failing query is recorded in its panel, not
// returned: one broken panel should not lose the others.
func Evaluate(ctx context.Context, q Querier, d *Dashboard, w Window) Data {
	out := Data{}
	for _, p := range d.AllPanels() {
		if ok, _ := Supported(p.Type); !ok || p.Type == "row" {
			continue
		}
		var pd PanelData
		for _, t := range p.Targets {
			expr := d.Expand(t.Expr, w)
			var res []Series
			var err error
			if t.Instant || p.Type == "table" {
				res, err = q.Query(ctx, expr, w.End)
			} else {
				res, err = q.QueryRange(ctx, expr, w.Start, w.End, w.Step)
			}
			if err != nil {
				if pd.Err == "" {
					pd.Err = err.Error()
				}
				continue
			}
			for _, s := range res {
				pd.Lines = append(pd.Lines, Line{Name: LegendName(t.LegendFormat, s.Labels), Labels: s.Labels, Points: s.Points})
			}
		}
		sort.SliceStable(pd.Lines, func(i, j int) bool { return pd.Lines[i].Name < pd.Lines[j].Name })
		out[p.ID] = pd
	}
	return out
}

// reduce is Grafana's reducer calc over a series (lastNotNull, last, max,
// min, mean, sum); NaN for no points.
func reduce(calc string, pts []Point) float64 {
	if len(pts) == 0 {
		return math.NaN()
	}
	switch calc {
	case "max":
		m := math.Inf(-1)
		for _, p := range pts {
			m = math.Max(m, p.V)
		}
		return m
	case "min":
		m := math.Inf(1)
		for _, p := range pts {
			m = math.Min(m, p.V)
		}
		return m
	case "mean", "sum":
		s := 0.0
		for _, p := range pts {
			s += p.V
		}
		if calc == "mean" {
			return s / float64(len(pts))
		}
		return s
	default: // lastNotNull, last
		for i := len(pts) - 1; i >= 0; i-- {
			if !math.IsNaN(pts[i].V) {
				return pts[i].V
			}
		}
		return math.NaN()
	}
}
