package audit_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"

	"github.com/rampart-go/rampart/shared/audit"
	"github.com/rampart-go/rampart/shared/dbx/dbxtest"
	"github.com/rampart-go/rampart/shared/natsx"
	"github.com/rampart-go/rampart/shared/secevent"
)

// jetStream starts an embedded nats-server with the Rampart streams. The
// machine's NATS (RAMPART_TEST_NATS_URL) is not used: its RAMPART_SECURITY
// holds every other test's events, which a DeliverAll consumer would replay.
func jetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	srv, err := natsx.StartEmbedded(natsx.EmbeddedOptions{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := natsx.Connect(context.Background(), natsx.Options{URL: srv.ClientURL(), Name: "audit-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := natsx.EnsureStreams(context.Background(), js); err != nil {
		t.Fatal(err)
	}
	return js
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTrailRecordsEverySecurityEventOnce drives the real path: services'
// emitters publish to RAMPART_SECURITY, the trail appends each event in
// order; a redelivered event (published again outside the stream's
// duplicate window) appends nothing; a trail restarted later catches up
// from its durable position.
func TestTrailRecordsEverySecurityEventOnce(t *testing.T) {
	js := jetStream(t)
	dbxtest.Each(t, func(t *testing.T, url string) {
		ctx := t.Context()
		db := openDB(t, url)
		name := "audit-test-" + uuid.NewString()[:8]
		start := func(reg prometheus.Registerer) context.CancelFunc {
			tr, err := audit.New(ctx, audit.Options{JS: js, DB: db, Name: name, Registerer: reg, CheckpointInterval: 10 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			runCtx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() { defer close(done); tr.Run(runCtx) }()
			waitFor(t, "trail ready", tr.Ready)
			return func() { cancel(); <-done }
		}
		stop := start(prometheus.NewRegistry())

		// Each service's emitter, as service.New builds it. A fresh
		// service name per run keeps the two databases' runs apart on the
		// shared stream (each durable sees both; the test counts its own).
		svc := "svc-" + uuid.NewString()[:8]
		em, err := secevent.NewEmitter(secevent.Options{Service: svc, Registerer: prometheus.NewRegistry(), Sink: secevent.NewNATSSink(js)})
		if err != nil {
			t.Fatal(err)
		}
		emCtx, stopEmitter := context.WithCancel(ctx)
		defer stopEmitter()
		go em.Run(emCtx)
		em.Emit(ctx, secevent.Event{Type: secevent.LoginFailed, Reason: secevent.ReasonBadCredentials, Subject: "alice", ClientIP: "192.0.2.1"})
		em.Emit(ctx, secevent.Event{Type: secevent.AccountLocked, Subject: "alice"})
		em.Emit(ctx, secevent.Event{Type: secevent.TokenRejected, Reason: secevent.ReasonSignature, RequestID: "req-1"})

		mine := func() []audit.Entry {
			es, err := audit.Tail(ctx, db, audit.Filter{Service: svc, Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			return es
		}
		waitFor(t, "three entries", func() bool { return len(mine()) == 3 })
		es := mine()
		for i, want := range []struct{ typ, reason, subject string }{
			{"auth.login.failed", "bad_credentials", "alice"}, {"auth.account.locked", "", "alice"}, {"token.rejected", "signature", ""},
		} {
			if es[i].Type != want.typ || es[i].Reason != want.reason || es[i].Subject != want.subject || es[i].Service != svc {
				t.Fatalf("entry %d: %+v; want %+v", i, es[i], want)
			}
			if i > 0 && es[i].Seq <= es[i-1].Seq {
				t.Fatalf("entries out of order: %d after %d", es[i].Seq, es[i-1].Seq)
			}
		}

		// Redelivery: the stored message published again under a new
		// Nats-Msg-Id, so the stream keeps both copies.
		var first natsx.Event
		if err := json.Unmarshal([]byte(es[0].Payload), &first); err != nil {
			t.Fatal(err)
		}
		msg, err := natsx.Message(ctx, propagation.TraceContext{}, natsx.SubjectSecurityPrefix+svc+".auth.login.failed", first)
		if err != nil {
			t.Fatal(err)
		}
		msg.Header.Set(jetstream.MsgIDHeader, uuid.NewString())
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
		// A later event: the consumer handles messages in stream order, so
		// once it is recorded the duplicate has been handled too.
		em.Emit(ctx, secevent.Event{Type: secevent.AccessDenied, Reason: secevent.ReasonOwnership, Subject: "alice"})
		waitFor(t, "the event after the duplicate", func() bool { return len(mine()) >= 4 })
		if es := mine(); len(es) != 4 || es[3].Type != "access.denied" {
			t.Fatalf("entries after a redelivery and one more event: %+v; want 4, the duplicate not among them", es)
		}
		stop()

		// Down for a while: events wait in the stream.
		em.Emit(ctx, secevent.Event{Type: secevent.RefreshReused, Subject: "bob"})
		time.Sleep(100 * time.Millisecond)
		stop = start(prometheus.NewRegistry())
		defer stop()
		waitFor(t, "catch-up", func() bool { return len(mine()) == 5 })
		if rep, err := audit.Verify(ctx, db); err != nil || !rep.OK() {
			t.Fatalf("verify: %+v %v", rep, err)
		}
	})
}

// TestTrailAttributesAnEventToTheServiceItsSubjectProves: NATS permissions
// let each service publish only on rampart.security.<itself>.>, so the
// subject is the one authenticated claim of who sent an event; its
// envelope's source and data.service are whatever the publisher wrote. A
// compromised gateway must not be able to put a login success or an admin
// revocation "by auth-service" into the audit trail.
func TestTrailAttributesAnEventToTheServiceItsSubjectProves(t *testing.T) {
	js := jetStream(t)
	dbxtest.Each(t, func(t *testing.T, url string) {
		ctx := t.Context()
		db := openDB(t, url)
		tr, err := audit.New(ctx, audit.Options{JS: js, DB: db, Name: "audit-test-" + uuid.NewString()[:8], CheckpointInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); tr.Run(runCtx) }()
		defer func() { cancel(); <-done }()
		waitFor(t, "trail ready", tr.Ready)

		attacker, victim := "gw-"+uuid.NewString()[:8], "auth-"+uuid.NewString()[:8]
		for _, forged := range []struct{ source, service string }{
			{"rampart/" + victim, victim}, // both claims forged
			{"rampart/" + attacker, victim},
			{"rampart/" + victim, ""}, // data without a service: the source names it
		} {
			ev, err := natsx.NewEvent(ctx, forged.source, "rampart.security."+string(secevent.LoginSucceeded), "alice", secevent.Data{
				Type: secevent.LoginSucceeded, Service: forged.service, Severity: secevent.SeverityInfo, Subject: "alice",
			})
			if err != nil {
				t.Fatal(err)
			}
			msg, err := natsx.Message(ctx, propagation.TraceContext{}, natsx.SubjectSecurityPrefix+attacker+"."+string(secevent.LoginSucceeded), ev)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := js.PublishMsg(ctx, msg); err != nil {
				t.Fatal(err)
			}
		}
		// The attacker's own, honest event: once it is recorded, the forged
		// ones before it have been handled.
		em, err := secevent.NewEmitter(secevent.Options{Service: attacker, Registerer: prometheus.NewRegistry(), Sink: secevent.NewNATSSink(js)})
		if err != nil {
			t.Fatal(err)
		}
		emCtx, stopEmitter := context.WithCancel(ctx)
		defer stopEmitter()
		go em.Run(emCtx)
		em.Emit(ctx, secevent.Event{Type: secevent.TokenRejected, Reason: secevent.ReasonSignature})
		waitFor(t, "the honest event", func() bool {
			es, err := audit.Tail(ctx, db, audit.Filter{Service: attacker, Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range es {
				if e.Type == string(secevent.TokenRejected) {
					return true
				}
			}
			return false
		})
		es, err := audit.Tail(ctx, db, audit.Filter{Service: victim, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		if len(es) != 0 {
			t.Fatalf("events published on %s's subject are recorded as %s's: %+v", attacker, victim, es)
		}
	})
}
