// Package promrun runs Debian's Prometheus server against the in-process
// stack (deploy/stack): a configuration generated from
// prometheus-devstack.yml's job layout with the stack's ephemeral ops
// addresses and the repository's rule files, the server on a free
// loopback port with its storage in a directory of the caller's, and a
// small client for its HTTP API.
//
// The scrape test (deploy/observability) and the dashboard renderer
// (deploy/cmd/dashshot) share it: what the README's screenshot shows is
// scraped exactly as the test checks it.
package promrun

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/rampart-go/rampart/deploy/stack"
)

// ErrNotInstalled is returned by Find when no Prometheus server is found.
var ErrNotInstalled = errors.New("the prometheus server is not installed (RAMPART_PROMETHEUS, PATH): apt-get install prometheus (.ci/run does)")

// Find returns override when it is set and exists, else prometheus from
// PATH. It returns ErrNotInstalled when there is none.
func Find(override string) (string, error) {
	if override != "" {
		if _, err := os.Stat(override); err != nil {
			return "", fmt.Errorf("prometheus binary %s: %w", override, err)
		}
		return override, nil
	}
	if p, err := exec.LookPath("prometheus"); err == nil {
		return p, nil
	}
	return "", ErrNotInstalled
}

// Config is promDir/prometheus-devstack.yml with each target replaced by
// the stack's ephemeral ops address for the target's service label,
// interval as scrape and evaluation interval (and scrape timeout), and the
// rule files promDir/rules/*.yml by absolute path. It returns an error if
// the devstack file and the stack disagree on the set of services.
func Config(promDir string, s *stack.Stack, interval time.Duration) ([]byte, error) {
	raw, err := os.ReadFile(filepath.Join(promDir, "prometheus-devstack.yml")) //nolint:gosec // G304: the repository's own file
	if err != nil {
		return nil, fmt.Errorf("read scrape configuration: %w", err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("prometheus-devstack.yml: %w", err)
	}
	global, _ := cfg["global"].(map[string]any)
	if global == nil {
		return nil, errors.New("prometheus-devstack.yml: no global section")
	}
	iv := interval.String()
	global["scrape_interval"], global["scrape_timeout"], global["evaluation_interval"] = iv, iv, iv

	rules, err := filepath.Abs(filepath.Join(promDir, "rules"))
	if err != nil {
		return nil, err
	}
	m, err := filepath.Glob(filepath.Join(rules, "*.yml"))
	if err != nil {
		return nil, fmt.Errorf("find rule files: %w", err)
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("no rule files in %s", rules)
	}
	cfg["rule_files"] = []string{filepath.Join(rules, "*.yml")}

	var targeted []string
	jobs, _ := cfg["scrape_configs"].([]any)
	for _, j := range jobs {
		job, _ := j.(map[string]any)
		statics, _ := job["static_configs"].([]any)
		for _, sc := range statics {
			static, _ := sc.(map[string]any)
			labels, _ := static["labels"].(map[string]any)
			svc, _ := labels["service"].(string)
			ops, ok := s.Endpoints.Services[svc]
			if !ok {
				return nil, fmt.Errorf("prometheus-devstack.yml: target with service %q, which the stack does not run", svc)
			}
			u, err := url.Parse(ops.Ops)
			if err != nil {
				return nil, fmt.Errorf("ops address of %s: %w", svc, err)
			}
			static["targets"] = []string{u.Host}
			targeted = append(targeted, svc)
		}
	}
	slices.Sort(targeted)
	if want := slices.Sorted(slices.Values(stack.Services)); !slices.Equal(targeted, want) {
		return nil, fmt.Errorf("prometheus-devstack.yml scrapes %v, the stack runs %v", targeted, want)
	}
	return yaml.Marshal(cfg)
}

// Server is a running Prometheus server.
type Server struct {
	// Base is its URL, http://127.0.0.1:port.
	Base string
	log  *lockedBuffer
	cmd  *exec.Cmd
	done chan struct{} // closed when the process exits
}

// lockedBuffer collects the server's log from its output pipes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Start runs bin with config on a free loopback port, its configuration
// and storage in dir, and waits up to 30 s for /-/ready. The caller stops
// it with Stop. It returns an error if the process cannot start, exits or
// is not ready in time (with its log).
func Start(bin, dir string, config []byte) (*Server, error) {
	cfgFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, config, 0o600); err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	p := &Server{Base: "http://" + addr, log: &lockedBuffer{}, done: make(chan struct{})}
	// Not tied to a context: CommandContext would SIGKILL it, and Stop
	// shuts it down gracefully.
	p.cmd = exec.CommandContext(context.Background(), bin, // #nosec G204 -- the binary found by Find, fixed arguments
		"--config.file="+cfgFile,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--enable-feature=exemplar-storage",
		"--log.level=warn",
	)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	err = p.Wait(context.Background(), 30*time.Second, "prometheus ready", func() (bool, string) {
		req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, p.Base+"/-/ready", nil)
		if err != nil {
			return false, err.Error()
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false, err.Error()
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	if err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

// Stop asks the server to shut down (SIGINT) and kills it after 10 s.
func (p *Server) Stop() {
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Log returns what the server has logged so far.
func (p *Server) Log() string { return p.log.String() }

// freeAddr returns a loopback address with a port that was free a moment
// ago: Prometheus wants a concrete port, and nothing else binds ephemeral
// loopback ports here between the close and its listen.
func freeAddr() (string, error) {
	var lc net.ListenConfig
	l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	return addr, l.Close()
}

// Wait polls cond every 250 ms until it holds. It returns an error with
// cond's last explanation after d, at once (with the log) if Prometheus
// exited, or when ctx ends.
func (p *Server) Wait(ctx context.Context, d time.Duration, what string, cond func() (bool, string)) error {
	deadline := time.Now().Add(d)
	for {
		ok, why := cond()
		if ok {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("prometheus exited while waiting for %s:\n%s", what, p.log.String())
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s: %s", d, what, why)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// Get calls the HTTP API and decodes a successful response's data into v.
// It returns an error for a transport failure or a status other than
// "success".
func (p *Server) Get(ctx context.Context, path string, q url.Values, v any) error {
	u := p.Base + path
	if q != nil {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	var r struct {
		Status string          `json:"status"`
		Data   json.RawMessage `json:"data"`
		Error  string          `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return fmt.Errorf("GET %s: %s: %w", u, resp.Status, err)
	}
	if r.Status != "success" {
		return fmt.Errorf("GET %s: %s %s", u, r.Status, r.Error)
	}
	if err := json.Unmarshal(r.Data, v); err != nil {
		return fmt.Errorf("GET %s: data: %w", u, err)
	}
	return nil
}

// Series is one labelled series of a query: its points in time order. An
// instant query's series has one point.
type Series struct {
	Labels map[string]string
	Points []Point
}

// Point is one sample.
type Point struct {
	T time.Time
	V float64
}

// QueryRange evaluates q from start to end every step (/api/v1/query_range).
// It returns an error if the query fails or its result is not a matrix.
func (p *Server) QueryRange(ctx context.Context, q string, start, end time.Time, step time.Duration) ([]Series, error) {
	var r struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Values [][2]any          `json:"values"`
		} `json:"result"`
	}
	err := p.Get(ctx, "/api/v1/query_range", url.Values{
		"query": {q},
		"start": {formatTime(start)}, "end": {formatTime(end)},
		"step": {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)},
	}, &r)
	if err != nil {
		return nil, err
	}
	if r.ResultType != "matrix" {
		return nil, fmt.Errorf("%s: result type %s, want matrix", q, r.ResultType)
	}
	out := make([]Series, 0, len(r.Result))
	for _, s := range r.Result {
		ser := Series{Labels: s.Metric}
		for _, v := range s.Values {
			pt, err := point(v)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", q, err)
			}
			ser.Points = append(ser.Points, pt)
		}
		out = append(out, ser)
	}
	return out, nil
}

// Query evaluates q at time at (/api/v1/query). It returns an error if the
// query fails or its result is not a vector.
func (p *Server) Query(ctx context.Context, q string, at time.Time) ([]Series, error) {
	var r struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	}
	if err := p.Get(ctx, "/api/v1/query", url.Values{"query": {q}, "time": {formatTime(at)}}, &r); err != nil {
		return nil, err
	}
	if r.ResultType != "vector" {
		return nil, fmt.Errorf("%s: result type %s, want vector", q, r.ResultType)
	}
	out := make([]Series, 0, len(r.Result))
	for _, s := range r.Result {
		pt, err := point(s.Value)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", q, err)
		}
		out = append(out, Series{Labels: s.Metric, Points: []Point{pt}})
	}
	return out, nil
}

func formatTime(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64)
}

// point decodes the API's [unix seconds, "value"] pair.
func point(v [2]any) (Point, error) {
	ts, ok := v[0].(float64)
	if !ok {
		return Point{}, fmt.Errorf("timestamp %v", v[0])
	}
	str, _ := v[1].(string)
	f, err := strconv.ParseFloat(str, 64)
	if err != nil {
		return Point{}, fmt.Errorf("value %v: %w", v[1], err)
	}
	return Point{T: time.UnixMilli(int64(ts * 1000)), V: f}, nil
}
