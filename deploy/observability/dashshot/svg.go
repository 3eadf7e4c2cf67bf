package dashshot

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Layout of the drawing: Grafana's 24-column grid scaled to Width pixels,
// RowHeight pixels per grid row, a heading above the grid.
const (
	Width     = 1200
	RowHeight = 30
	margin    = 8
	gap       = 6
	heading   = 52
	charW     = 6.3 // average glyph width of 11 px sans-serif, for fitting text
)

// Grafana's dark theme.
const (
	colCanvas = "#111217"
	colPanel  = "#181b1f"
	colBorder = "#2a2d33"
	colText   = "#ccccdc"
	colMuted  = "#8e8e9a"
	colGrid   = "#262a30"
	colError  = "#f2495c"
)

// palette is Grafana's classic series palette.
var palette = []string{"#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9", "#705da0", "#37872d", "#fade2a", "#447ebc", "#c15c17"}

// namedColors map Grafana's colour names to the dark theme's stat
// backgrounds.
var namedColors = map[string]string{
	"green": "#37872d", "red": "#c4162a", "yellow": "#cc9d00", "orange": "#fa6400",
	"blue": "#1f60c4", "purple": "#8f3bb8", "dark-red": "#ad0317", "semi-dark-red": "#c4162a",
}

// Options are the heading's details.
type Options struct {
	// Note is a line under the title, such as how the data was produced.
	Note string
	// Location formats times (default UTC).
	Location *time.Location
}

// Render writes the dashboard as one SVG document: every panel of
// d.AllPanels at its grid position, drawn from data over w. Panels whose
// type Supported refuses are drawn as frames naming the reason. It
// returns the writer's error.
func Render(out io.Writer, d *Dashboard, data Data, w Window, o Options) error {
	if o.Location == nil {
		o.Location = time.UTC
	}
	panels := d.AllPanels()
	rows := 0
	for _, p := range panels {
		rows = max(rows, p.GridPos.Y+p.GridPos.H)
	}
	height := heading + rows*RowHeight + margin
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="Inter, Helvetica, Arial, sans-serif" font-size="11">`+"\n", Width, height, Width, height)
	fmt.Fprintf(&b, `<title>%s</title>`+"\n", esc(d.Title))
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="%s"/>`+"\n", Width, height, colCanvas)
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="18" font-weight="600" fill="%s">%s</text>`+"\n", margin+4, colText, esc(d.Title))
	rng := fmt.Sprintf("%s to %s (%s)", w.Start.In(o.Location).Format("2006-01-02 15:04:05"), w.End.In(o.Location).Format("15:04:05 MST"), w.End.Sub(w.Start).Round(time.Second))
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="12" text-anchor="end" fill="%s">%s · service: All</text>`+"\n", Width-margin-4, colMuted, esc(rng))
	if o.Note != "" {
		fmt.Fprintf(&b, `<text x="%d" y="42" font-size="11" fill="%s">%s</text>`+"\n", margin+4, colMuted, esc(o.Note))
	}
	for _, p := range panels {
		r := rect{
			x: margin + float64(p.GridPos.X)*colW() + gap/2,
			y: heading + float64(p.GridPos.Y)*RowHeight + gap/2,
			w: float64(p.GridPos.W)*colW() - gap,
			h: float64(p.GridPos.H)*RowHeight - gap,
		}
		drawPanel(&b, p, data[p.ID], r, w, o.Location)
	}
	b.WriteString("</svg>\n")
	_, err := out.Write(b.Bytes())
	return err
}

func colW() float64 { return float64(Width-2*margin) / 24 }

type rect struct{ x, y, w, h float64 }

func drawPanel(b *bytes.Buffer, p Panel, pd PanelData, r rect, w Window, loc *time.Location) {
	ok, why := Supported(p.Type)
	if p.Type == "row" {
		fmt.Fprintf(b, `<g id="panel-%d" data-type="row">`, p.ID)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="14" font-weight="600" fill="%s">⌄ %s</text>`, r.x+2, r.y+r.h-6, colText, esc(p.Title))
		b.WriteString("</g>\n")
		return
	}
	class := "panel"
	if !ok {
		class = "unsupported"
	}
	fmt.Fprintf(b, `<g id="panel-%d" class="%s" data-type="%s">`, p.ID, class, esc(p.Type))
	bg := colPanel
	if ok && p.Type == "stat" && p.Options.ColorMode == "background" && pd.Err == "" && len(pd.Lines) > 0 {
		bg = thresholdColor(p, reduce(calc(p), pd.Lines[0].Points))
	}
	fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" rx="3" fill="%s" stroke="%s"/>`, r.x, r.y, r.w, r.h, bg, colBorder)
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="13" font-weight="500" fill="%s">%s</text>`, r.x+8, r.y+18, colText, esc(fit(p.Title, r.w-16, 7)))
	inner := rect{r.x + 8, r.y + 28, r.w - 16, r.h - 34}
	switch {
	case !ok:
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" fill="%s">not rendered: %s</text>`, inner.x, inner.y+14, colMuted, esc(fit(why, inner.w, charW)))
	case pd.Err != "":
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" fill="%s">query error: %s</text>`, inner.x, inner.y+14, colError, esc(fit(pd.Err, inner.w, charW)))
	case p.Type == "stat":
		drawStat(b, p, pd, inner)
	case p.Type == "table":
		drawTable(b, pd, inner)
	case p.Type == "bargauge":
		drawBars(b, p, pd, inner)
	default:
		drawTimeseries(b, p, pd, inner, w, loc)
	}
	b.WriteString("</g>\n")
}

func calc(p Panel) string {
	if c := p.Options.ReduceOptions.Calcs; len(c) > 0 {
		return c[0]
	}
	return "lastNotNull"
}

// thresholdColor is the colour of the highest threshold step v reaches
// (Grafana's default: green, red from 80).
func thresholdColor(p Panel, v float64) string {
	color := "green"
	if t := p.FieldConfig.Defaults.Thresholds; t != nil && len(t.Steps) > 0 {
		for _, s := range t.Steps {
			if s.Value == nil || (!math.IsNaN(v) && v >= *s.Value) {
				color = s.Color
			}
		}
	} else if v >= 80 {
		color = "red"
	}
	if c, ok := namedColors[color]; ok {
		return c
	}
	if strings.HasPrefix(color, "#") {
		return color
	}
	return namedColors["green"]
}

func noData(b *bytes.Buffer, r rect) {
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="14" text-anchor="middle" fill="%s">No data</text>`, r.x+r.w/2, r.y+r.h/2, colMuted)
}

func drawStat(b *bytes.Buffer, p Panel, pd PanelData, r rect) {
	if len(pd.Lines) == 0 {
		noData(b, r)
		return
	}
	n := float64(len(pd.Lines))
	for i, l := range pd.Lines {
		cell := rect{r.x + float64(i)*r.w/n, r.y, r.w / n, r.h}
		if p.Options.GraphMode == "area" && len(l.Points) > 1 {
			spark := rect{cell.x - 8, cell.y + cell.h*0.45, cell.w + 16, cell.h*0.55 + 6}
			lo, hi := span(l.Points)
			writePath(b, l.Points, spark, l.Points[0].T, l.Points[len(l.Points)-1].T, 0, math.Max(hi, lo+1e-9), "rgba(255,255,255,0.55)", "rgba(255,255,255,0.18)", 0)
		}
		v := reduce(calc(p), l.Points)
		text := "No data"
		if !math.IsNaN(v) {
			text = formatValue(v, p.FieldConfig.Defaults.Unit)
		}
		size := math.Min(cell.h*0.5, cell.w/(0.62*float64(len([]rune(text)))+1))
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="%.0f" font-weight="600" text-anchor="middle" fill="#ffffff">%s</text>`,
			cell.x+cell.w/2, cell.y+cell.h*0.42+size*0.35, size, esc(text))
		if len(pd.Lines) > 1 {
			fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#ffffff">%s</text>`, cell.x+cell.w/2, cell.y+cell.h-4, esc(fit(l.Name, cell.w, charW)))
		}
	}
}

func drawTable(b *bytes.Buffer, pd PanelData, r rect) {
	if len(pd.Lines) == 0 {
		noData(b, r)
		return
	}
	seen := map[string]bool{}
	var cols []string
	for _, l := range pd.Lines {
		for k := range l.Labels {
			if k != "__name__" && !seen[k] {
				seen[k] = true
				cols = append(cols, k)
			}
		}
	}
	sort.Strings(cols)
	cols = append(cols, "Value")
	cw := r.w / float64(len(cols))
	const rowH = 18.0
	fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#22252b"/>`, r.x, r.y, r.w, rowH)
	for i, c := range cols {
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-weight="600" fill="%s">%s</text>`, r.x+float64(i)*cw+4, r.y+13, colText, esc(c))
	}
	maxRows := int((r.h - rowH) / rowH)
	for j, l := range pd.Lines {
		y := r.y + rowH*float64(j+1)
		if j == maxRows-1 && len(pd.Lines) > maxRows {
			fmt.Fprintf(b, `<text x="%.1f" y="%.1f" fill="%s">… %d more</text>`, r.x+4, y+13, colMuted, len(pd.Lines)-j)
			break
		}
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`, r.x, y, r.x+r.w, y, colGrid)
		for i, c := range cols {
			v := l.Labels[c]
			if c == "Value" && len(l.Points) > 0 {
				v = formatValue(l.Points[len(l.Points)-1].V, "")
			}
			fmt.Fprintf(b, `<text x="%.1f" y="%.1f" fill="%s">%s</text>`, r.x+float64(i)*cw+4, y+13, colText, esc(fit(v, cw-8, charW)))
		}
	}
}

func drawBars(b *bytes.Buffer, p Panel, pd PanelData, r rect) {
	if len(pd.Lines) == 0 {
		noData(b, r)
		return
	}
	hi := 0.0
	vals := make([]float64, len(pd.Lines))
	for i, l := range pd.Lines {
		vals[i] = reduce(calc(p), l.Points)
		if !math.IsNaN(vals[i]) {
			hi = math.Max(hi, vals[i])
		}
	}
	if hi == 0 {
		hi = 1
	}
	rowH := math.Min(24, r.h/float64(len(pd.Lines)))
	label := math.Min(r.w*0.35, 180)
	for i, l := range pd.Lines {
		y := r.y + float64(i)*rowH
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" fill="%s">%s</text>`, r.x, y+rowH*0.65, colText, esc(fit(l.Name, label-6, charW)))
		v := vals[i]
		if math.IsNaN(v) {
			v = 0
		}
		bw := (r.w - label - 70) * v / hi
		fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`, r.x+label, y+2, math.Max(bw, 1), rowH-4, palette[i%len(palette)])
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="end" fill="%s">%s</text>`, r.x+r.w, y+rowH*0.65, colText, esc(formatValue(v, p.FieldConfig.Defaults.Unit)))
	}
}

func span(pts []Point) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, p := range pts {
		if math.IsNaN(p.V) || math.IsInf(p.V, 0) {
			continue
		}
		lo, hi = math.Min(lo, p.V), math.Max(hi, p.V)
	}
	if math.IsInf(lo, 0) {
		return 0, 0
	}
	return lo, hi
}

func drawTimeseries(b *bytes.Buffer, p Panel, pd PanelData, r rect, w Window, loc *time.Location) {
	unit := p.FieldConfig.Defaults.Unit
	// Legend below the plot, Grafana's table mode: name, then the calcs.
	calcs := p.Options.Legend.Calcs
	const lineH = 14.0
	rows := len(pd.Lines)
	maxRows := max(int((r.h-90)/lineH)-1, 1)
	shown := min(rows, maxRows)
	legendH := 0.0
	if rows > 0 {
		legendH = float64(shown)*lineH + 6
		if len(calcs) > 0 {
			legendH += lineH
		}
		if rows > shown {
			legendH += lineH
		}
	}
	hi := 0.0
	for _, l := range pd.Lines {
		_, h := span(l.Points)
		hi = math.Max(hi, h)
	}
	ticks := niceTicks(hi)
	top := ticks[len(ticks)-1]
	axisW := 0.0
	for _, t := range ticks {
		axisW = math.Max(axisW, float64(len([]rune(formatValue(t, unit))))*charW)
	}
	plot := rect{r.x + axisW + 6, r.y + 4, r.w - axisW - 10, r.h - legendH - 22}
	// y grid and labels
	for _, t := range ticks {
		y := plot.y + plot.h - t/top*plot.h
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`, plot.x, y, plot.x+plot.w, y, colGrid)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="end" fill="%s">%s</text>`, plot.x-5, y+4, colMuted, esc(formatValue(t, unit)))
	}
	// x grid and labels
	every := timeTick(w.End.Sub(w.Start), plot.w)
	for t := w.Start.Truncate(every).Add(every); !t.After(w.End); t = t.Add(every) {
		x := plot.x + plot.w*t.Sub(w.Start).Seconds()/w.End.Sub(w.Start).Seconds()
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`, x, plot.y, x, plot.y+plot.h, colGrid)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="%s">%s</text>`, x, plot.y+plot.h+14, colMuted, t.In(loc).Format("15:04:05"))
	}
	if len(pd.Lines) == 0 {
		noData(b, plot)
		return
	}
	for i, l := range pd.Lines {
		c := palette[i%len(palette)]
		writePath(b, l.Points, plot, w.Start, w.End, 0, top, c, c, 2*w.Step)
	}
	// legend
	y := plot.y + plot.h + 22
	// Each calc column is as wide as its widest value.
	colCalc := 50.0
	for _, l := range pd.Lines[:shown] {
		for _, cl := range calcs {
			colCalc = math.Max(colCalc, float64(len([]rune(formatValue(reduce(cl, l.Points), unit))))*charW+14)
		}
	}
	nameW := r.w - float64(len(calcs))*colCalc - 16
	if len(calcs) > 0 {
		for j, c := range calcs {
			fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="end" fill="%s">%s</text>`, r.x+r.w-float64(len(calcs)-1-j)*colCalc, y+10, colMuted, esc(calcName(c)))
		}
		y += lineH
	}
	for i, l := range pd.Lines[:shown] {
		c := palette[i%len(palette)]
		fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="12" height="3" fill="%s"/>`, r.x, y+5, c)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" fill="%s">%s</text>`, r.x+16, y+10, colText, esc(fit(l.Name, nameW, charW)))
		for j, cl := range calcs {
			v := reduce(cl, l.Points)
			fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="end" fill="%s">%s</text>`, r.x+r.w-float64(len(calcs)-1-j)*colCalc, y+10, colText, esc(formatValue(v, unit)))
		}
		y += lineH
	}
	if rows > shown {
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" fill="%s">… %d more series</text>`, r.x+16, y+10, colMuted, rows-shown)
	}
}

func calcName(c string) string {
	switch c {
	case "lastNotNull":
		return "Last *"
	case "max":
		return "Max"
	case "min":
		return "Min"
	case "mean":
		return "Mean"
	case "sum":
		return "Total"
	}
	return c
}

// writePath draws pts scaled into r (time t0..t1, values lo..hi) as a
// line with a 10 % fill beneath, broken where samples are more than
// maxGap apart (0: never).
func writePath(b *bytes.Buffer, pts []Point, r rect, t0, t1 time.Time, lo, hi float64, stroke, fill string, maxGap time.Duration) {
	if len(pts) == 0 || !t1.After(t0) || hi <= lo {
		return
	}
	xy := func(p Point) (float64, float64) {
		return r.x + r.w*p.T.Sub(t0).Seconds()/t1.Sub(t0).Seconds(), r.y + r.h - (p.V-lo)/(hi-lo)*r.h
	}
	var segs [][]Point
	var cur []Point
	for i, p := range pts {
		if math.IsNaN(p.V) || math.IsInf(p.V, 0) || (i > 0 && maxGap > 0 && p.T.Sub(pts[i-1].T) > maxGap) {
			if len(cur) > 0 {
				segs = append(segs, cur)
			}
			cur = nil
			if math.IsNaN(p.V) || math.IsInf(p.V, 0) {
				continue
			}
		}
		cur = append(cur, p)
	}
	if len(cur) > 0 {
		segs = append(segs, cur)
	}
	for _, s := range segs {
		var line strings.Builder
		for i, p := range s {
			x, y := xy(p)
			if i == 0 {
				fmt.Fprintf(&line, "M%.1f %.1f", x, y)
			} else {
				fmt.Fprintf(&line, "L%.1f %.1f", x, y)
			}
		}
		x0, _ := xy(s[0])
		x1, _ := xy(s[len(s)-1])
		base := r.y + r.h
		if fill != "" {
			fmt.Fprintf(b, `<path d="%sL%.1f %.1fL%.1f %.1fZ" fill="%s" fill-opacity="0.1" stroke="none"/>`, line.String(), x1, base, x0, base, fill)
		}
		fmt.Fprintf(b, `<path d="%s" fill="none" stroke="%s" stroke-width="1.5" stroke-linejoin="round"/>`, line.String(), stroke)
	}
}

// niceTicks are 0 and round steps up to at least hi (about four).
func niceTicks(hi float64) []float64 {
	if hi <= 0 || math.IsNaN(hi) || math.IsInf(hi, 0) {
		hi = 1
	}
	raw := hi / 4
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var out []float64
	for v := 0.0; ; v += step {
		out = append(out, v)
		if v >= hi-step*1e-9 {
			return out
		}
	}
}

// timeTick is a round interval giving a time label about every 110 px.
func timeTick(d time.Duration, width float64) time.Duration {
	want := time.Duration(float64(d) * 110 / math.Max(width, 1))
	for _, s := range []time.Duration{time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second,
		time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour} {
		if s >= want {
			return s
		}
	}
	return time.Hour
}

// formatValue formats v in a Grafana unit: "suffix:<text>", "short"
// (k, M, B), "percent", "percentunit", "s", "ms", "none" and "".
func formatValue(v float64, unit string) string {
	if math.IsNaN(v) {
		return "–"
	}
	switch {
	case strings.HasPrefix(unit, "suffix:"):
		return num(v) + strings.TrimPrefix(unit, "suffix:")
	case unit == "short":
		for _, s := range []struct {
			f float64
			u string
		}{{1e9, " B"}, {1e6, " M"}, {1e3, " K"}} {
			if math.Abs(v) >= s.f {
				return num(v/s.f) + s.u
			}
		}
		return num(v)
	case unit == "percent":
		return num(v) + "%"
	case unit == "percentunit":
		return num(v*100) + "%"
	case unit == "s":
		if math.Abs(v) < 1 && v != 0 {
			return num(v*1000) + " ms"
		}
		return num(v) + " s"
	case unit == "ms":
		return num(v) + " ms"
	}
	return num(v)
}

// num prints v with up to three significant decimals, no trailing zeros.
func num(v float64) string {
	prec := 2
	switch a := math.Abs(v); {
	case a >= 100:
		prec = 0
	case a >= 10:
		prec = 1
	case a < 0.1 && a > 0:
		prec = 3
	}
	s := strconv.FormatFloat(v, 'f', prec, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	if s == "-0" {
		s = "0"
	}
	return s
}

// fit cuts s with an ellipsis to about width pixels at glyph width cw.
func fit(s string, width, cw float64) string {
	n := int(width / cw)
	r := []rune(s)
	if len(r) <= n || n < 2 {
		return s
	}
	return string(r[:n-1]) + "…"
}

// esc escapes s for XML text and attribute values.
func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
