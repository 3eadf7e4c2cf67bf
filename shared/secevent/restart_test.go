package secevent

import (
	"context"
	"encoding/json"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rampart-go/rampart/shared/natsx"
)

// gathered returns the value of the counter name with the given labels, as
// Prometheus would scrape it.
func gathered(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// nextData reads the next event from cons and returns its data.
func nextData(t *testing.T, cons jetstream.Consumer, wait time.Duration) (Data, bool) {
	t.Helper()
	msg, err := cons.Next(jetstream.FetchMaxWait(wait))
	if err != nil {
		return Data{}, false
	}
	var ev natsx.Event
	if err := json.Unmarshal(msg.Data(), &ev); err != nil {
		t.Fatalf("envelope: %v", err)
	}
	var d Data
	if err := json.Unmarshal(ev.Data, &d); err != nil {
		t.Fatalf("data: %v", err)
	}
	return d, true
}

// TestPublishingSurvivesANATSRestart runs the emitter against a real
// embedded JetStream server, stops it, and starts it again on the same port
// with the same store. While NATS is down Emit keeps returning, every event
// is counted, and what cannot be delivered is counted as dropped; once NATS
// is back, events reach RAMPART_SECURITY again without a restart of the
// service, and what was stored before the outage is still there.
//
// Embedded only: the test stops and restarts the server, which it cannot do
// to the machine's.
func TestPublishingSurvivesANATSRestart(t *testing.T) {
	t.Parallel()
	const (
		service = "restart-test"
		buffer  = 16
	)
	storeDir := t.TempDir()
	srv, err := natsx.StartEmbedded(natsx.EmbeddedOptions{Host: "127.0.0.1", Port: -1, StoreDir: storeDir})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			srv.Shutdown()
		}
	})
	addr, ok := srv.Server().Addr().(*net.TCPAddr)
	if !ok {
		t.Fatalf("server address %v", srv.Server().Addr())
	}

	ctx := context.Background()
	nc, err := natsx.Connect(ctx, natsx.Options{URL: srv.ClientURL(), Name: service})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := natsx.EnsureStreams(ctx, js); err != nil {
		t.Fatal(err)
	}

	reg := prometheus.NewRegistry()
	e, err := NewEmitter(Options{
		Service: service, Registerer: reg, Sink: NewNATSSink(js),
		Buffer: buffer, PublishTimeout: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	runDone := make(chan struct{})
	go func() { e.Run(runCtx); close(runDone) }()
	t.Cleanup(func() { cancel(); <-runDone })

	total := func(typ Type, reason Reason) float64 {
		return gathered(t, reg, "rampart_security_events_total", map[string]string{"service": service, "type": string(typ), "reason": string(reason)})
	}
	dropped := func() float64 {
		return gathered(t, reg, "rampart_security_events_dropped_total", map[string]string{"service": service})
	}
	consumer := func(typ Type) jetstream.Consumer {
		t.Helper()
		c, err := js.OrderedConsumer(ctx, natsx.StreamSecurity, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{natsx.SubjectSecurityPrefix + service + "." + string(typ)},
		})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	// Before the outage: delivered.
	e.Emit(ctx, Event{Type: TokenRejected, Reason: ReasonExpired, RequestID: "before-outage"})
	if d, ok := nextData(t, consumer(TokenRejected), 10*time.Second); !ok || d.RequestID != "before-outage" {
		t.Fatalf("event before the outage not on %s: %+v", natsx.StreamSecurity, d)
	}
	if got := dropped(); got != 0 {
		t.Fatalf("dropped %v before the outage", got)
	}

	// The outage.
	srv.Shutdown()
	stopped = true
	eventually(t, "the client to notice the outage", func() bool { return !nc.IsConnected() })

	const during = 200
	start := time.Now()
	for range during {
		e.Emit(ctx, Event{Type: TokenRejected, Reason: ReasonSignature, RequestID: "during-outage"})
	}
	// Emit only enqueues; 200 calls take microseconds. The bound is loose
	// on purpose: it catches an Emit that waits for NATS, not a slow CI.
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("%d Emit calls took %v while NATS was down", during, elapsed)
	}
	if got := total(TokenRejected, ReasonSignature); got != during {
		t.Errorf("counted %v events during the outage, want %d", got, during)
	}
	// The queue holds buffer events and the publisher one more; the rest
	// is dropped at once, and the queued ones as their publishes time out.
	if got := dropped(); got < during-buffer-1 {
		t.Errorf("dropped %v right after the burst, want at least %d", got, during-buffer-1)
	}
	eventually(t, "every undeliverable event to be counted as dropped", func() bool { return dropped() >= during })

	// The restart: same port, same JetStream store.
	srv2, err := natsx.StartEmbedded(natsx.EmbeddedOptions{Host: "127.0.0.1", Port: addr.Port, StoreDir: storeDir})
	if err != nil {
		t.Fatalf("restart on port %d: %v", addr.Port, err)
	}
	t.Cleanup(srv2.Shutdown)
	eventually(t, "the client to reconnect", func() bool { return nc.Status() == nats.CONNECTED })

	// What was stored before the outage survived it.
	if d, ok := nextData(t, consumer(TokenRejected), 10*time.Second); !ok || d.RequestID != "before-outage" {
		t.Errorf("the pre-outage event is gone from %s after the restart: %+v", natsx.StreamSecurity, d)
	}

	// Publishing resumes. JetStream may need a moment after the restart to
	// recover its streams, so emit until one arrives rather than assuming
	// the very first publish succeeds.
	after := consumer(AccessDenied)
	deadline := time.Now().Add(20 * time.Second)
	for {
		e.Emit(ctx, Event{Type: AccessDenied, Reason: ReasonRole, RequestID: "after-restart"})
		if d, ok := nextData(t, after, 500*time.Millisecond); ok {
			if d.RequestID != "after-restart" || d.Service != service {
				t.Errorf("unexpected event after the restart: %+v", d)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no event reached %s after the restart (dropped %v)", natsx.StreamSecurity, dropped())
		}
	}
	if got := total(AccessDenied, ReasonRole); got < 1 {
		t.Errorf("access.denied counted %v times", got)
	}
}
