// Package e2e drives the whole of Rampart, started in-process by the same
// stack package devstack runs, over real TCP, real mutual TLS, an embedded
// NATS server with JetStream and SQLite.
package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/rampart-go/rampart/deploy/stack"
	"github.com/rampart-go/rampart/shared/mtls"
	"github.com/rampart-go/rampart/shared/natsx"
)

// env is one running stack and what a test needs to talk to it.
type env struct {
	*stack.Stack
	spans  *tracetest.SpanRecorder
	public *http.Client // trusts the dev CA, presents no certificate
}

// start runs a fresh stack on free loopback ports for the test's lifetime.
func start(t testing.TB) *env {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: skipped with -short")
	}
	rec := tracetest.NewSpanRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := stack.Start(ctx, stack.Options{
		Dir: t.TempDir(), Ephemeral: true, LogWriter: io.Discard,
		SpanProcessors: []sdktrace.SpanProcessor{rec}, CertReloadInterval: 100 * time.Millisecond,
		AuthRatePerMinute: 100_000, AuthRateBurst: 10_000,
	})
	if err != nil {
		cancel()
		t.Fatalf("start stack: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		s.Wait()
		if err := s.Err(); err != nil {
			t.Errorf("stack stopped with error: %v", err)
		}
	})
	public, err := s.HTTPClient("")
	if err != nil {
		t.Fatal(err)
	}
	return &env{Stack: s, spans: rec, public: public}
}

// get performs a GET and returns the response with its body read.
func get(t testing.TB, c *http.Client, url string, hdr http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s: %v", url, err)
	}
	return resp, body
}

// metric returns the value of one sample on a service's /metrics, 0 if the
// series does not exist yet. labels must be given in the exposition order
// (alphabetical for our collectors).
func (e *env) metric(t testing.TB, svc, name, labels string) float64 {
	t.Helper()
	resp, err := http.Get(e.Endpoints.Services[svc].Ops + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", svc, err)
	}
	defer resp.Body.Close()
	want := name + "{" + labels + "}"
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, want+" ") {
			var v float64
			if _, err := fmt.Sscan(strings.Fields(line)[1], &v); err != nil {
				t.Fatalf("parse %q: %v", line, err)
			}
			return v
		}
	}
	return 0
}

// secEventLabels renders the label set of rampart_security_events_total.
func secEventLabels(reason, svc, typ string) string {
	return fmt.Sprintf(`reason=%q,service=%q,type=%q`, reason, svc, typ)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// securityEvents returns a function that fetches the next security event
// published on subject from the RAMPART_SECURITY stream, as the ops user.
func (e *env) securityEvents(t testing.TB, subject string) func() (natsx.Event, nats.Header) {
	t.Helper()
	pool, err := mtls.LoadPool(e.Endpoints.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := natsx.Connect(ctx, natsx.Options{
		URL: e.Endpoints.NATS, Name: "e2e", User: stack.OpsUser, Password: e.NATSPassword(stack.OpsUser),
		TLS: tlsClient(pool),
	})
	if err != nil {
		t.Fatalf("connect NATS as ops: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.OrderedConsumer(ctx, natsx.StreamSecurity, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		t.Fatalf("consumer on %s: %v", subject, err)
	}
	return func() (natsx.Event, nats.Header) {
		t.Helper()
		msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("no security event on %s: %v", subject, err)
		}
		var ev natsx.Event
		if err := json.Unmarshal(msg.Data(), &ev); err != nil {
			t.Fatalf("decode event: %v", err)
		}
		return ev, msg.Headers()
	}
}
