package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/rampart-go/rampart/deploy/loadtest"
	"github.com/rampart-go/rampart/deploy/observability/dashshot"
	"github.com/rampart-go/rampart/deploy/observability/promrun"
	"github.com/rampart-go/rampart/deploy/stack"
)

// config is the command line.
type config struct {
	out, dashboard, prometheus string
	duration, step, rateIval   time.Duration
	rate                       float64
	users                      int
}

// run is the whole command, so a test can call it as main does; it
// returns the exit code.
func run(ctx context.Context, args []string, promEnv string, stdout, stderr io.Writer) int {
	root, err := repoRoot()
	if err != nil {
		fmt.Fprintln(stderr, "dashshot:", err)
		return 1
	}
	fs := flag.NewFlagSet("dashshot", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	fs.StringVar(&c.out, "out", filepath.Join(root, "docs", "img", "security-overview.svg"), "SVG file to write")
	fs.StringVar(&c.dashboard, "dashboard", filepath.Join(root, "grafana", "dashboards", "security-overview.json"), "Grafana dashboard to render")
	fs.StringVar(&c.prometheus, "prometheus", promEnv, "Prometheus server binary (default RAMPART_PROMETHEUS, then PATH)")
	fs.DurationVar(&c.duration, "duration", 75*time.Second, "length of the scenario after setup")
	fs.DurationVar(&c.step, "step", 2*time.Second, "range-query resolution ($__interval)")
	fs.DurationVar(&c.rateIval, "rate-interval", 10*time.Second, "value of $__rate_interval (Grafana: max(step + scrape, 4 × scrape); wider smooths the bursts)")
	fs.Float64Var(&c.rate, "rate", 8, "real users' iterations per second")
	fs.IntVar(&c.users, "users", 8, "real users signed in up front")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := shoot(ctx, root, c, stdout); err != nil {
		fmt.Fprintln(stderr, "dashshot:", err)
		return 1
	}
	return 0
}

// repoRoot is the nearest directory up from the working directory that
// holds go.work.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the Rampart repository (no go.work above the working directory)")
		}
		dir = parent
	}
}

func shoot(ctx context.Context, root string, c config, stdout io.Writer) error {
	dash, err := dashshot.Load(c.dashboard)
	if err != nil {
		return err
	}
	bin, err := promrun.Find(c.prometheus)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "dashshot-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	sctx, cancel := context.WithCancel(ctx)
	s, err := stack.Start(sctx, stack.Options{Dir: filepath.Join(tmp, "stack"), Ephemeral: true, LogWriter: io.Discard})
	if err != nil {
		cancel()
		return fmt.Errorf("start stack: %w", err)
	}
	defer func() { cancel(); s.Wait() }()
	fmt.Fprintf(stdout, "stack up: gateway %s\n", s.Endpoints.Gateway)

	cfg, err := promrun.Config(filepath.Join(root, "deploy", "prometheus"), s, time.Second)
	if err != nil {
		return err
	}
	promDir := filepath.Join(tmp, "prometheus")
	if err := os.Mkdir(promDir, 0o700); err != nil {
		return err
	}
	prom, err := promrun.Start(bin, promDir, cfg)
	if err != nil {
		return err
	}
	defer prom.Stop()
	if err := waitTargets(ctx, prom); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "prometheus %s scraping every 1s\n", prom.Base)

	env := loadtest.NewEnv(loadtest.FromEndpoints(s.Endpoints, s.Credentials), stdout)
	noCert, err := s.HTTPClient("")
	if err != nil {
		return err
	}
	start := time.Now()
	err = loadtest.Showcase(ctx, env, loadtest.ShowcaseOptions{
		Duration: c.duration, Rate: c.rate, Users: c.users,
		At: func(wave string) {
			fmt.Fprintf(stdout, "%5.1fs  %s\n", time.Since(start).Seconds(), wave)
			if wave == "mtls" {
				refuse(ctx, noCert, s)
			}
		},
	})
	if err != nil {
		return fmt.Errorf("scenario: %w", err)
	}
	// Two more scrapes and rule evaluations, so the last events are in.
	time.Sleep(3 * time.Second)
	end := time.Now()
	printSummary(stdout, env.Rec.Summarize("showcase", s.Endpoints.Gateway))

	w := dashshot.Window{Start: start, End: end, Step: c.step, RateInterval: c.rateIval}
	data := dashshot.Evaluate(ctx, querier{prom}, dash, w)
	for _, p := range dash.AllPanels() {
		if pd, ok := data[p.ID]; ok {
			fmt.Fprintf(stdout, "panel %2d %-52q %2d series %s\n", p.ID, p.Title, len(pd.Lines), pd.Err)
		}
	}
	f, err := os.CreateTemp(filepath.Dir(c.out), ".dashshot-*.svg")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	note := fmt.Sprintf("Rendered by deploy/cmd/dashshot from a real Prometheus scraping the in-process stack every 1 s: %d users at %.0f iterations/s, attack waves (loadtest.Showcase); $__rate_interval = %s.",
		c.users, c.rate, c.rateIval)
	if err := dashshot.Render(f, dash, data, w, dashshot.Options{Note: note}); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil { //nolint:gosec // G302: a documentation image, meant to be read
		return err
	}
	if err := os.Rename(f.Name(), c.out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s\n", c.out)
	return nil
}

// refuse calls every service's mTLS API listener without a client
// certificate, as a misconfigured or hostile caller inside the network
// would: each handshake is refused and counted (mtls.rejected).
func refuse(ctx context.Context, c *http.Client, s *stack.Stack) {
	for range 3 {
		for _, svc := range []string{stack.Auth, stack.User, stack.Order} {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.Endpoints.Services[svc].API+"/healthz", nil)
			if err != nil {
				continue
			}
			if resp, err := c.Do(req); err == nil {
				_ = resp.Body.Close()
			}
		}
		time.Sleep(time.Second)
	}
}

// waitTargets waits until Prometheus has scraped every service once.
func waitTargets(ctx context.Context, p *promrun.Server) error {
	return p.Wait(ctx, 30*time.Second, "every target up", func() (bool, string) {
		var r struct {
			ActiveTargets []struct {
				Labels map[string]string `json:"labels"`
				Health string            `json:"health"`
			} `json:"activeTargets"`
		}
		if err := p.Get(ctx, "/api/v1/targets", nil, &r); err != nil {
			return false, err.Error()
		}
		var up []string
		for _, t := range r.ActiveTargets {
			if t.Health == "up" {
				up = append(up, t.Labels["service"])
			}
		}
		slices.Sort(up)
		want := slices.Sorted(slices.Values(stack.Services))
		return slices.Equal(up, want), fmt.Sprintf("up: %v", up)
	})
}

// printSummary lists what the scenario sent, by route tag and status.
func printSummary(w io.Writer, s *loadtest.Summary) {
	for _, name := range s.TagNames() {
		t := s.Tags[name]
		var st []string
		for code, n := range t.Statuses {
			st = append(st, fmt.Sprintf("%d×%d", n, code))
		}
		slices.Sort(st)
		fmt.Fprintf(w, "  %-28s %5d  %s\n", name, t.Requests, strings.Join(st, " "))
	}
}

// querier adapts promrun's client to the renderer's Querier.
type querier struct{ p *promrun.Server }

func (q querier) QueryRange(ctx context.Context, expr string, start, end time.Time, step time.Duration) ([]dashshot.Series, error) {
	res, err := q.p.QueryRange(ctx, expr, start, end, step)
	return convert(res), err
}

func (q querier) Query(ctx context.Context, expr string, at time.Time) ([]dashshot.Series, error) {
	res, err := q.p.Query(ctx, expr, at)
	return convert(res), err
}

func convert(in []promrun.Series) []dashshot.Series {
	out := make([]dashshot.Series, 0, len(in))
	for _, s := range in {
		pts := make([]dashshot.Point, len(s.Points))
		for i, p := range s.Points {
			pts[i] = dashshot.Point{T: p.T, V: p.V}
		}
		out = append(out, dashshot.Series{Labels: s.Labels, Points: pts})
	}
	return out
}
