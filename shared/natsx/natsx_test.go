package natsx_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/rampart-go/rampart/shared/mtls"
	"github.com/rampart-go/rampart/shared/natsx"
)

// externalEnv names the machine's NATS server; tests run against it as well
// as against an embedded server when it is set. That server is shared:
// tests there use uniquely named streams and subjects and delete what they
// create — except the contract's streams, which EnsureStreams only creates
// or updates to their contract configuration, as every service does.
const externalEnv = "RAMPART_TEST_NATS_URL"

type target struct {
	name, url string
	external  bool
}

// startEmbedded starts an embedded server; zero Host and Port mean a
// random loopback port (TestEmbeddedDefaultsToARandomLoopbackPort).
func startEmbedded(t testing.TB, o natsx.EmbeddedOptions) *natsx.Embedded {
	t.Helper()
	if o.StoreDir == "" {
		o.StoreDir = t.TempDir()
	}
	srv, err := natsx.StartEmbedded(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

// targets is the contract-suite list: an embedded server always, the
// machine's server when RAMPART_TEST_NATS_URL is set.
func targets(t *testing.T) []target {
	t.Helper()
	out := []target{{name: "embedded", url: startEmbedded(t, natsx.EmbeddedOptions{}).ClientURL()}}
	if u := os.Getenv(externalEnv); u != "" {
		out = append(out, target{name: "external", url: u, external: true})
	}
	return out
}

func connect(t testing.TB, o natsx.Options) *nats.Conn {
	t.Helper()
	if o.Name == "" {
		o.Name = "natsx-test"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	nc, err := natsx.Connect(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func newJS(t testing.TB, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func uniqueID(t testing.TB) string {
	t.Helper()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// scratchStream creates a uniquely named stream on subjects prefix.> and
// deletes it when t ends.
func scratchStream(t testing.TB, js jetstream.JetStream) (stream, prefix string) {
	t.Helper()
	id := uniqueID(t)
	stream, prefix = "NATSX_TEST_"+strings.ToUpper(id), "natsxtest."+id
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: stream, Subjects: []string{prefix + ".>"}, Storage: jetstream.MemoryStorage,
		Duplicates: time.Minute, MaxAge: time.Hour,
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := js.DeleteStream(ctx, stream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Logf("delete %s: %v", stream, err)
		}
	})
	return stream, prefix
}

func TestEnsureStreamsIsIdempotentAndMatchesTheContract(t *testing.T) {
	t.Parallel()
	for _, tg := range targets(t) {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			js := newJS(t, connect(t, natsx.Options{URL: tg.url}))
			for i := range 2 {
				if err := natsx.EnsureStreams(ctx, js); err != nil {
					t.Fatalf("EnsureStreams call %d: %v", i+1, err)
				}
			}

			want := map[string]jetstream.StreamConfig{}
			for _, c := range natsx.StreamConfigs() {
				want[c.Name] = c
			}
			if len(want) != 2 || want[natsx.StreamEvents].Name == "" || want[natsx.StreamSecurity].Name == "" {
				t.Fatalf("StreamConfigs = %v, want RAMPART_EVENTS and RAMPART_SECURITY", want)
			}
			if got := want[natsx.StreamSecurity]; got.MaxBytes != 1<<30 || got.MaxAge != 30*24*time.Hour || got.Discard != jetstream.DiscardOld {
				t.Errorf("security retention %v / %d bytes / %v, want 30 days, 1 GiB, discard old", got.MaxAge, got.MaxBytes, got.Discard)
			}
			if got := want[natsx.StreamEvents]; got.MaxAge != 7*24*time.Hour {
				t.Errorf("events retention %v, want 7 days", got.MaxAge)
			}
			for name, w := range want {
				s, err := js.Stream(ctx, name)
				if err != nil {
					t.Fatalf("stream %s: %v", name, err)
				}
				info, err := s.Info(ctx)
				if err != nil {
					t.Fatal(err)
				}
				c := info.Config
				if strings.Join(c.Subjects, ",") != strings.Join(w.Subjects, ",") || c.Storage != w.Storage ||
					c.Retention != w.Retention || c.Discard != w.Discard || c.MaxAge != w.MaxAge ||
					c.Duplicates != w.Duplicates || c.MaxMsgSize != w.MaxMsgSize || (w.MaxBytes != 0 && c.MaxBytes != w.MaxBytes) {
					t.Errorf("stream %s config\n got %+v\nwant %+v", name, c, w)
				}
			}
			for name, subj := range map[string]string{
				natsx.StreamEvents:   natsx.SubjectEventsPrefix + "order-service.order.created",
				natsx.StreamSecurity: natsx.SubjectSecurityPrefix + "gateway.token.rejected",
			} {
				if got, err := js.StreamNameBySubject(ctx, subj); err != nil || got != name {
					t.Errorf("subject %s is captured by %q (%v), want %s", subj, got, err, name)
				}
			}

			kv, err := js.KeyValue(ctx, natsx.BucketRevocations)
			if err != nil {
				t.Fatalf("bucket %s: %v", natsx.BucketRevocations, err)
			}
			st, err := kv.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.History() != 1 || st.TTL() != natsx.RevocationTTL || st.TTL() != 16*time.Minute {
				t.Errorf("bucket history %d ttl %v, want 1 and %v", st.History(), st.TTL(), natsx.RevocationTTL)
			}
			if si := st.(*jetstream.KeyValueBucketStatus).StreamInfo(); si.Config.Storage != jetstream.FileStorage {
				t.Errorf("bucket storage %v, want file", si.Config.Storage)
			}
		})
	}
}

func TestPublishCarriesTheTraceToTheConsumer(t *testing.T) {
	t.Parallel()
	for _, tg := range targets(t) {
		t.Run(tg.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			js := newJS(t, connect(t, natsx.Options{URL: tg.url}))
			stream, prefix := scratchStream(t, js)
			subject := prefix + ".order.created"

			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
			prop := propagation.TraceContext{}
			pub := natsx.NewPublisher(js, tp, prop)

			reqCtx, reqSpan := tp.Tracer("test").Start(ctx, "POST /api/v1/orders")
			ev, err := natsx.NewEvent(reqCtx, "rampart/order-service", "rampart.order.created", "order-1", map[string]any{"order_id": "order-1", "total_cents": 1200})
			if err != nil {
				t.Fatal(err)
			}
			if err := pub.Publish(reqCtx, subject, ev); err != nil {
				t.Fatal(err)
			}
			// A retry of the same event within the duplicate window is
			// stored once: Nats-Msg-Id is the event id.
			if err := pub.Publish(reqCtx, subject, ev); err != nil {
				t.Fatal(err)
			}
			reqSpan.End()
			traceID := reqSpan.SpanContext().TraceID()

			// The first publish is the one stored; the retry was dropped as
			// a duplicate.
			var producer sdktrace.ReadOnlySpan
			for _, s := range rec.Ended() {
				if s.Name() == "publish "+subject {
					producer = s
					break
				}
			}
			if producer == nil || producer.SpanKind() != trace.SpanKindProducer || producer.SpanContext().TraceID() != traceID {
				t.Fatalf("no producer span in the request's trace: %v", producer)
			}

			cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
			if err != nil {
				t.Fatal(err)
			}
			msg, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
			if err != nil {
				t.Fatalf("event not delivered: %v", err)
			}
			s, err := js.Stream(ctx, stream)
			if err != nil {
				t.Fatal(err)
			}
			if info, err := s.Info(ctx); err != nil || info.State.Msgs != 1 {
				t.Errorf("stream holds %d messages (%v), want the event once", info.State.Msgs, err)
			}

			h := msg.Headers()
			if got := h.Get("Content-Type"); got != natsx.ContentType {
				t.Errorf("Content-Type %q, want %s", got, natsx.ContentType)
			}
			if got := h.Get(jetstream.MsgIDHeader); got != ev.ID {
				t.Errorf("Nats-Msg-Id %q, want the event id %s", got, ev.ID)
			}
			var got natsx.Event
			if err := json.Unmarshal(msg.Data(), &got); err != nil {
				t.Fatal(err)
			}
			if got.SpecVersion != "1.0" || got.ID != ev.ID || got.Source != "rampart/order-service" || got.Type != "rampart.order.created" ||
				got.Subject != "order-1" || got.DataContentType != "application/json" || got.Time.IsZero() {
				t.Errorf("envelope %+v", got)
			}
			if id, err := uuid.Parse(got.ID); err != nil || id.Version() != 7 {
				t.Errorf("event id %q is not a UUIDv7", got.ID)
			}
			var data map[string]any
			if err := json.Unmarshal(got.Data, &data); err != nil || data["order_id"] != "order-1" {
				t.Errorf("data %s: %v", got.Data, err)
			}

			// The envelope keeps the context it was created in; the header
			// carries the producer span. Both are the request's trace.
			if want := natsx.TraceParent(reqSpan.SpanContext()); got.TraceParent != want {
				t.Errorf("JSON traceparent %q, want the request span's %q", got.TraceParent, want)
			}
			header := natsx.HeaderCarrier(h).Get("traceparent")
			if want := natsx.TraceParent(producer.SpanContext()); header != want {
				t.Errorf("header traceparent %q, want the producer span's %q", header, want)
			}

			cctx, consume := natsx.StartConsumeSpan(context.Background(), tp, prop, subject, h)
			consume.End()
			if sc := trace.SpanContextFromContext(cctx); sc.TraceID() != traceID {
				t.Errorf("consumer trace %s, want %s", sc.TraceID(), traceID)
			}
			var consumer sdktrace.ReadOnlySpan
			for _, s := range rec.Ended() {
				if s.Name() == "process "+subject {
					consumer = s
				}
			}
			if consumer == nil {
				t.Fatal("no consumer span")
			}
			if consumer.SpanKind() != trace.SpanKindConsumer || consumer.Parent().SpanID() != producer.SpanContext().SpanID() || !consumer.Parent().IsRemote() {
				t.Errorf("consumer span kind %v parent %v, want a consumer child of the producer %s", consumer.SpanKind(), consumer.Parent(), producer.SpanContext().SpanID())
			}
			var msgID string
			for _, a := range consumer.Attributes() {
				if a.Key == "messaging.message.id" {
					msgID = a.Value.AsString()
				}
			}
			if msgID != ev.ID {
				t.Errorf("consumer span message id %q, want %s", msgID, ev.ID)
			}
		})
	}
}

func TestMessageTakesTheProducerTraceWhenTheEventHasNone(t *testing.T) {
	t.Parallel()
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("test").Start(context.Background(), "relay")
	defer span.End()
	ev, err := natsx.NewEvent(context.Background(), "rampart/test", "rampart.test", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if ev.TraceParent != "" {
		t.Fatalf("an event created outside a trace has traceparent %q", ev.TraceParent)
	}
	msg, err := natsx.Message(ctx, propagation.TraceContext{}, "rampart.events.test", ev)
	if err != nil {
		t.Fatal(err)
	}
	var got natsx.Event
	if err := json.Unmarshal(msg.Data, &got); err != nil {
		t.Fatal(err)
	}
	want := natsx.TraceParent(span.SpanContext())
	if got.TraceParent != want || msg.Header.Get("Traceparent") != want {
		t.Errorf("JSON %q header %q, want both %q", got.TraceParent, msg.Header.Get("Traceparent"), want)
	}
	if !strings.HasPrefix(want, "00-"+span.SpanContext().TraceID().String()+"-") || !strings.HasSuffix(want, "-01") {
		t.Errorf("TraceParent %q is not a sampled W3C traceparent", want)
	}

	if _, err := natsx.NewEvent(context.Background(), "rampart/test", "rampart.test", "", make(chan int)); err == nil {
		t.Error("NewEvent encoded a channel")
	}
}

func TestHeaderCarrierIsCaseInsensitive(t *testing.T) {
	t.Parallel()
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, key := range []string{"traceparent", "Traceparent", "TRACEPARENT", "TraceParent"} {
		t.Run(key, func(t *testing.T) {
			t.Parallel()
			h := nats.Header{key: []string{tp}}
			if got := natsx.HeaderCarrier(h).Get("traceparent"); got != tp {
				t.Errorf("Get = %q", got)
			}
			if got := natsx.HeaderCarrier(h).Get("Traceparent"); got != tp {
				t.Errorf("Get(canonical) = %q", got)
			}
			ctx := natsx.Extract(context.Background(), propagation.TraceContext{}, h)
			sc := trace.SpanContextFromContext(ctx)
			if !sc.IsValid() || !sc.IsRemote() || sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
				t.Errorf("extracted %v from %s", sc, key)
			}
		})
	}
	// The trap HeaderCarrier exists for: nats.Header.Get is exact.
	if (nats.Header{"traceparent": []string{tp}}).Get("Traceparent") != "" {
		t.Log("nats.Header.Get became case-insensitive; HeaderCarrier is still correct")
	}

	h := nats.Header{"traceparent": []string{"old"}, "TRACEPARENT": []string{"older"}, "Other": []string{"x"}}
	c := natsx.HeaderCarrier(h)
	c.Set("traceparent", tp)
	if len(h) != 2 || h["Traceparent"][0] != tp || c.Get("TRACEPARENT") != tp {
		t.Errorf("after Set: %v, want only Traceparent and Other", h)
	}
	keys := c.Keys()
	if len(keys) != 2 {
		t.Errorf("Keys = %v", keys)
	}
	if c.Get("missing") != "" || (natsx.HeaderCarrier(nats.Header{"Empty": nil})).Get("empty") != "" {
		t.Error("Get of an absent or empty key is not empty")
	}
	if ctx := natsx.Extract(context.Background(), propagation.TraceContext{}, nil); trace.SpanContextFromContext(ctx).IsValid() {
		t.Error("Extract from nil headers produced a span context")
	}
}

// violations collects a connection's asynchronous errors.
type violations struct {
	mu   sync.Mutex
	errs []error
}

func (v *violations) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.errs = append(v.errs, err)
}

// requireViolation waits for a permissions violation whose text contains s.
// requireRefused runs each attempt (keyed by the subject the server will
// name) and requires that it fails with a permissions violation.
func (v *violations) requireRefused(ctx context.Context, t *testing.T, attempts map[string]func(context.Context) error) {
	t.Helper()
	for subject, attempt := range attempts {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		err := attempt(actx)
		cancel()
		if err == nil {
			t.Errorf("%s succeeded", subject)
			continue
		}
		v.requireViolation(t, subject)
	}
}

func (v *violations) requireViolation(t *testing.T, s string) {
	t.Helper()
	if err := v.waitFor(t, s); !errors.Is(err, nats.ErrPermissionViolation) {
		t.Errorf("got %v, want a permissions violation", err)
	}
}

// waitFor returns the first collected error whose text contains s.
func (v *violations) waitFor(t *testing.T, s string) error {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		v.mu.Lock()
		for _, err := range v.errs {
			if strings.Contains(err.Error(), s) {
				v.mu.Unlock()
				return err
			}
		}
		v.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no asynchronous error containing %q", s)
	return nil
}

func TestPermissions(t *testing.T) {
	t.Parallel()
	if os.Getenv(externalEnv) != "" {
		t.Run("external", func(t *testing.T) {
			t.Skip("the machine's NATS server at " + externalEnv + " runs without authentication: its users and permissions are its own configuration, which a test cannot set")
		})
	}
	svcPub, svcSub := natsx.ServicePermissions("order-service", []string{"rampart.events.order-service.>"}, []string{"rampart.events.>"})
	if !contains(svcPub, "$JS.API.CONSUMER.*.KV_"+natsx.BucketRevocations+".>") || contains(svcPub, "$JS.API.CONSUMER.>") || !contains(svcPub, "$JS.API.STREAM.CREATE."+natsx.StreamSecurity) || contains(svcPub, "$JS.API.>") ||
		!contains(svcPub, "$JS.ACK.>") || !contains(svcSub, natsx.InboxPrefix("order-service")+".>") || contains(svcSub, "_INBOX.>") {
		t.Fatalf("ServicePermissions(pub %v, sub %v) lacks the JetStream API, acks or inbox", svcPub, svcSub)
	}
	srv := startEmbedded(t, natsx.EmbeddedOptions{Users: []natsx.User{
		{Name: "order-service", Password: "s3cret-order", Publish: svcPub, Subscribe: svcSub, PublishDeny: natsx.ServicePublishDeny()},
		{Name: "admin", Password: "s3cret-admin", Publish: []string{">"}, Subscribe: []string{">"}},
		{Name: "nobody", Password: "s3cret-nobody"},
	}})
	url := srv.ClientURL()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()

	admin := connect(t, natsx.Options{URL: url, User: "admin", Password: "s3cret-admin"})
	adminJS := newJS(t, admin)
	if err := natsx.EnsureStreams(ctx, adminJS); err != nil {
		t.Fatal(err)
	}

	t.Run("anonymous and wrong passwords are refused at once", func(t *testing.T) {
		for _, o := range []natsx.Options{{URL: url}, {URL: url, User: "order-service", Password: "wrong"}} {
			start := time.Now()
			cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
			nc, err := natsx.Connect(cctx, o)
			ccancel()
			if err == nil {
				nc.Close()
				t.Fatalf("user %q connected", o.User)
			}
			if !errors.Is(err, nats.ErrAuthorization) {
				t.Errorf("user %q: %v, want an authorization error", o.User, err)
			}
			// Connect must not retry a credentials problem until ctx ends.
			if time.Since(start) > 10*time.Second {
				t.Errorf("user %q: Connect took %v to give up on bad credentials", o.User, time.Since(start))
			}
		}
	})

	t.Run("a service publishes and subscribes within its lists", func(t *testing.T) {
		nc := connect(t, natsx.Options{URL: url, User: "order-service", Password: "s3cret-order", InboxPrefix: natsx.InboxPrefix("order-service")})
		sub, err := nc.SubscribeSync("rampart.events.>")
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.Publish("rampart.events.order-service.order.created", []byte("{}")); err != nil {
			t.Fatal(err)
		}
		if _, err := sub.NextMsg(10 * time.Second); err != nil {
			t.Fatalf("own event not received: %v", err)
		}
		js := newJS(t, nc)
		if _, err := js.Publish(ctx, "rampart.events.order-service.order.created", []byte("{}")); err != nil {
			t.Fatalf("JetStream publish with ack: %v", err)
		}
		if err := natsx.EnsureStreams(ctx, js); err != nil {
			t.Fatalf("a service cannot run EnsureStreams: %v", err)
		}
	})

	t.Run("publishing outside the publish list is a permissions violation", func(t *testing.T) {
		var v violations
		nc := connect(t, natsx.Options{URL: url, User: "order-service", Password: "s3cret-order", InboxPrefix: natsx.InboxPrefix("order-service")})
		nc.SetErrorHandler(v.handler)
		watch, err := admin.SubscribeSync("rampart.events.user-service.>")
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.Publish("rampart.events.user-service.user.deleted", []byte("{}")); err != nil {
			t.Fatal(err)
		}
		v.requireViolation(t, `Publish to "rampart.events.user-service.user.deleted"`)
		if m, err := watch.NextMsg(200 * time.Millisecond); err == nil {
			t.Fatalf("a forged event was delivered: %s", m.Subject)
		}
	})

	t.Run("subscribing outside the subscribe list is a permissions violation", func(t *testing.T) {
		var v violations
		nc := connect(t, natsx.Options{URL: url, User: "order-service", Password: "s3cret-order", InboxPrefix: natsx.InboxPrefix("order-service")})
		nc.SetErrorHandler(v.handler)
		if _, err := nc.SubscribeSync("rampart.security.>"); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		v.requireViolation(t, `Subscription to "rampart.security.>"`)
	})

	t.Run("an empty allow list allows nothing", func(t *testing.T) {
		var v violations
		nc := connect(t, natsx.Options{URL: url, User: "nobody", Password: "s3cret-nobody"})
		nc.SetErrorHandler(v.handler)
		if err := nc.Publish("anything", nil); err != nil {
			t.Fatal(err)
		}
		v.requireViolation(t, `Publish to "anything"`)
	})

	t.Run("the destructive JetStream API is denied", func(t *testing.T) {
		if _, err := adminJS.Publish(ctx, natsx.SubjectSecurityPrefix+"gateway.token.rejected", []byte("{}")); err != nil {
			t.Fatal(err)
		}
		sec, err := adminJS.Stream(ctx, natsx.StreamSecurity)
		if err != nil {
			t.Fatal(err)
		}
		info, err := sec.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		before := info.State.Msgs

		var v violations
		nc := connect(t, natsx.Options{URL: url, User: "order-service", Password: "s3cret-order", InboxPrefix: natsx.InboxPrefix("order-service")})
		nc.SetErrorHandler(v.handler)
		js := newJS(t, nc)
		attempts := map[string]func(context.Context) error{
			"$JS.API.STREAM.DELETE." + natsx.StreamSecurity: func(ctx context.Context) error { return js.DeleteStream(ctx, natsx.StreamSecurity) },
			"$JS.API.STREAM.PURGE." + natsx.StreamSecurity: func(ctx context.Context) error {
				s, err := js.Stream(ctx, natsx.StreamSecurity)
				if err != nil {
					return err
				}
				return s.Purge(ctx)
			},
			"$JS.API.STREAM.MSG.DELETE." + natsx.StreamSecurity: func(ctx context.Context) error {
				s, err := js.Stream(ctx, natsx.StreamSecurity)
				if err != nil {
					return err
				}
				return s.DeleteMsg(ctx, info.State.LastSeq)
			},
		}
		for subject, attempt := range attempts {
			// The server answers a denied request with nothing: the attempt
			// ends at this deadline, and the violation arrives asynchronously.
			actx, acancel := context.WithTimeout(ctx, time.Second)
			err := attempt(actx)
			acancel()
			if err == nil {
				t.Errorf("%s succeeded", subject)
			}
			v.requireViolation(t, fmt.Sprintf("Publish to %q", subject))
		}
		info, err = sec.Info(ctx)
		if err != nil {
			t.Fatalf("the security stream is gone: %v", err)
		}
		if info.State.Msgs != before {
			t.Errorf("security stream holds %d messages, had %d", info.State.Msgs, before)
		}
	})
	// Shrinking a stream's limits erases as surely as a purge: the server
	// applies a lowered MaxMsgs at once and drops the oldest messages. A
	// compromised service must not be able to empty the security record or
	// the revocation bucket (every revoked token valid again) this way.
	t.Run("a service cannot rewrite a stream's limits to erase it", func(t *testing.T) {
		adminKV, err := adminJS.KeyValue(ctx, natsx.BucketRevocations)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if _, err := adminJS.Publish(ctx, natsx.SubjectSecurityPrefix+"gateway.token.rejected", []byte("{}")); err != nil {
				t.Fatal(err)
			}
			if _, err := adminKV.Put(ctx, fmt.Sprintf("jti-%d", i), []byte("revoked")); err != nil {
				t.Fatal(err)
			}
		}
		var v violations
		nc := connect(t, natsx.Options{URL: url, User: "order-service", Password: "s3cret-order", InboxPrefix: natsx.InboxPrefix("order-service")})
		nc.SetErrorHandler(v.handler)
		js := newJS(t, nc)
		for _, name := range []string{natsx.StreamSecurity, "KV_" + natsx.BucketRevocations} {
			s, err := adminJS.Stream(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			before := s.CachedInfo().State.Msgs
			cfg := s.CachedInfo().Config
			cfg.MaxMsgs = 1
			actx, acancel := context.WithTimeout(ctx, time.Second)
			_, err = js.UpdateStream(actx, cfg)
			acancel()
			if err == nil {
				t.Errorf("order-service updated %s", name)
			}
			v.requireViolation(t, fmt.Sprintf("Publish to %q", "$JS.API.STREAM.UPDATE."+name))
			info, err := s.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if info.State.Msgs != before || info.Config.MaxMsgs != -1 {
				t.Errorf("%s holds %d messages (had %d), max_msgs %d", name, info.State.Msgs, before, info.Config.MaxMsgs)
			}
		}
		if err := natsx.EnsureStreams(ctx, js); err != nil {
			t.Errorf("a service cannot run EnsureStreams on existing streams: %v", err)
		}
	})
	// Services only write security events. Were they allowed to read
	// RAMPART_SECURITY or manage its consumers, a compromised one could read
	// every other service's events, or delete or redirect the audit
	// trail's durable consumer and so stop the audit record.
	t.Run("a service can neither read the security stream nor touch its consumers", func(t *testing.T) {
		if _, err := adminJS.CreateOrUpdateConsumer(ctx, natsx.StreamSecurity, jetstream.ConsumerConfig{
			Durable: "audit-trail", AckPolicy: jetstream.AckExplicitPolicy,
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := adminJS.Publish(ctx, natsx.SubjectSecurityPrefix+"auth-service.auth.login.failed", []byte("{}")); err != nil {
			t.Fatal(err)
		}
		var v violations
		nc := connect(t, natsx.Options{URL: url, User: "order-service", Password: "s3cret-order", InboxPrefix: natsx.InboxPrefix("order-service")})
		nc.SetErrorHandler(v.handler)
		js := newJS(t, nc)
		attempts := map[string]func(context.Context) error{
			"$JS.API.CONSUMER.DELETE." + natsx.StreamSecurity + ".audit-trail": func(ctx context.Context) error {
				return js.DeleteConsumer(ctx, natsx.StreamSecurity, "audit-trail")
			},
			"$JS.API.CONSUMER.CREATE." + natsx.StreamSecurity + ".audit-trail": func(ctx context.Context) error {
				_, err := js.CreateOrUpdateConsumer(ctx, natsx.StreamSecurity, jetstream.ConsumerConfig{
					Durable: "audit-trail", AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: "nothing.at.all",
				})
				return err
			},
			"$JS.API.STREAM.MSG.GET." + natsx.StreamSecurity: func(ctx context.Context) error {
				s, err := js.Stream(ctx, natsx.StreamSecurity)
				if err != nil {
					return err
				}
				_, err = s.GetMsg(ctx, s.CachedInfo().State.LastSeq)
				return err
			},
		}
		v.requireRefused(ctx, t, attempts)
		if _, err := adminJS.Consumer(ctx, natsx.StreamSecurity, "audit-trail"); err != nil {
			t.Errorf("the audit trail's consumer is gone: %v", err)
		}
	})
	// Replies (JetStream API answers, pull deliveries of domain events,
	// bucket reads) go to the requester's inbox: one prefix per service, so
	// no service can listen to another's.
	t.Run("a service cannot listen to another's inbox", func(t *testing.T) {
		var v violations
		nc := connect(t, natsx.Options{URL: url, User: "order-service", Password: "s3cret-order", InboxPrefix: natsx.InboxPrefix("order-service")})
		nc.SetErrorHandler(v.handler)
		for _, subj := range []string{"_INBOX.>", natsx.InboxPrefix("user-service") + ".>"} {
			if _, err := nc.SubscribeSync(subj); err != nil {
				t.Fatal(err)
			}
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			v.requireViolation(t, fmt.Sprintf("Subscription to %q", subj))
		}
	})
	// Durable consumers of RAMPART_EVENTS are granted per service
	// (DurableConsumerAPI); another's is out of reach, and so is a consumer
	// of one's own that would read every domain event.
	t.Run("a service can neither read the domain events nor touch another's consumer", func(t *testing.T) {
		if _, err := adminJS.CreateOrUpdateConsumer(ctx, natsx.StreamEvents, jetstream.ConsumerConfig{
			Durable: "user-service-account-created", AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: "rampart.events.account.created",
		}); err != nil {
			t.Fatal(err)
		}
		var v violations
		nc := connect(t, natsx.Options{URL: url, User: "order-service", Password: "s3cret-order", InboxPrefix: natsx.InboxPrefix("order-service")})
		nc.SetErrorHandler(v.handler)
		js := newJS(t, nc)
		attempts := map[string]func(context.Context) error{
			"$JS.API.CONSUMER.DELETE." + natsx.StreamEvents + ".user-service-account-created": func(ctx context.Context) error {
				return js.DeleteConsumer(ctx, natsx.StreamEvents, "user-service-account-created")
			},
			"$JS.API.CONSUMER.CREATE." + natsx.StreamEvents + ".spy": func(ctx context.Context) error {
				_, err := js.CreateOrUpdateConsumer(ctx, natsx.StreamEvents, jetstream.ConsumerConfig{Durable: "spy", AckPolicy: jetstream.AckExplicitPolicy})
				return err
			},
		}
		v.requireRefused(ctx, t, attempts)
		if _, err := adminJS.Consumer(ctx, natsx.StreamEvents, "user-service-account-created"); err != nil {
			t.Errorf("user-service's consumer is gone: %v", err)
		}
	})
	// A stream of its own that sources (or mirrors) another copies that
	// stream's messages where the service may read them; a snapshot
	// streams a whole stream to the requester. Services create only the
	// contract's streams (EnsureStreams).
	t.Run("a service cannot copy a stream into one of its own", func(t *testing.T) {
		var v violations
		nc := connect(t, natsx.Options{URL: url, User: "order-service", Password: "s3cret-order", InboxPrefix: natsx.InboxPrefix("order-service")})
		nc.SetErrorHandler(v.handler)
		js := newJS(t, nc)
		for _, src := range []string{natsx.StreamSecurity, natsx.StreamEvents} {
			name := "SPY_" + src
			actx, acancel := context.WithTimeout(ctx, time.Second)
			_, err := js.CreateStream(actx, jetstream.StreamConfig{Name: name, Sources: []*jetstream.StreamSource{{Name: src}}, Storage: jetstream.MemoryStorage})
			acancel()
			if err == nil {
				t.Errorf("order-service created %s sourcing %s", name, src)
			}
			v.requireViolation(t, "$JS.API.STREAM.CREATE."+name)
		}
		_ = nc.Publish("$JS.API.STREAM.SNAPSHOT."+natsx.StreamSecurity, []byte(`{"deliver_subject":"_INBOX.snap"}`))
		v.requireViolation(t, "$JS.API.STREAM.SNAPSHOT."+natsx.StreamSecurity)
	})
	if got := natsx.DestructiveJetStreamAPI(); len(got) != 4 {
		t.Errorf("DestructiveJetStreamAPI = %v", got)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestEmbeddedDefaultsToARandomLoopbackPort(t *testing.T) {
	t.Parallel()
	a := startEmbedded(t, natsx.EmbeddedOptions{})
	b := startEmbedded(t, natsx.EmbeddedOptions{})
	for _, srv := range []*natsx.Embedded{a, b} {
		u := srv.ClientURL()
		if !strings.HasPrefix(u, "nats://127.0.0.1:") || strings.HasSuffix(u, ":4222") {
			t.Errorf("ClientURL %q, want nats://127.0.0.1:<random port>", u)
		}
		if !srv.Server().JetStreamEnabled() {
			t.Error("JetStream is not enabled")
		}
	}
	if a.ClientURL() == b.ClientURL() {
		t.Errorf("two servers share %s", a.ClientURL())
	}
}

func TestEmbeddedTLS(t *testing.T) {
	t.Parallel()
	ca, err := mtls.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile, err := ca.EnsureLeaf(dir, "nats", []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	serverCert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := startEmbedded(t, natsx.EmbeddedOptions{TLS: &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{serverCert}}})
	if !strings.HasPrefix(srv.ClientURL(), "tls://127.0.0.1:") {
		t.Fatalf("ClientURL %q, want tls://127.0.0.1:<port>", srv.ClientURL())
	}
	if strings.HasSuffix(srv.ClientURL(), ":4222") {
		t.Fatal("the embedded server took the default port 4222")
	}

	clientCert, clientKey, err := ca.EnsureLeaf(dir, "order-service", nil, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	r, err := mtls.NewReloader(clientCert, clientKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)

	nc := connect(t, natsx.Options{URL: srv.ClientURL(), TLS: mtls.ClientConfig(r, roots, "nats")})
	if !nc.TLSRequired() {
		t.Error("the connection is not TLS")
	}
	cs, err := nc.TLSConnectionState()
	if err != nil || len(cs.PeerCertificates) == 0 {
		t.Fatalf("TLS state: %v", err)
	}
	if name, _ := mtls.IdentityOf(cs.PeerCertificates[0]); name != "nats" {
		t.Errorf("server identity %q, want nats", name)
	}
	js := newJS(t, nc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := natsx.EnsureStreams(ctx, js); err != nil {
		t.Fatal(err)
	}

	plain := strings.Replace(srv.ClientURL(), "tls://", "nats://", 1)
	pctx, pcancel := context.WithTimeout(ctx, time.Second)
	defer pcancel()
	if nc, err := natsx.Connect(pctx, natsx.Options{URL: plain}); err == nil {
		nc.Close()
		t.Fatal("a plain-text client connected to a TLS server")
	}
	// A client expecting another identity refuses this server.
	wctx, wcancel := context.WithTimeout(ctx, time.Second)
	defer wcancel()
	if nc, err := natsx.Connect(wctx, natsx.Options{URL: srv.ClientURL(), TLS: mtls.ClientConfig(r, roots, "auth-service")}); err == nil {
		nc.Close()
		t.Fatal("connected to a server with the wrong identity")
	}
}

func TestConnectRetriesUntilTheServerAppears(t *testing.T) {
	t.Parallel()
	// Reserve a free port, then release it for the server started later.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type result struct {
		nc  *nats.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		nc, err := natsx.Connect(ctx, natsx.Options{URL: url, Name: "early-bird"})
		done <- result{nc, err}
	}()
	// Let Connect fail at least once before the server exists.
	select {
	case r := <-done:
		t.Fatalf("Connect returned before the server started: %v", r.err)
	case <-time.After(600 * time.Millisecond):
	}
	startEmbedded(t, natsx.EmbeddedOptions{Port: port, StoreDir: filepath.Join(t.TempDir(), "js")})
	r := <-done
	if r.err != nil {
		t.Fatalf("Connect gave up although the server appeared: %v", r.err)
	}
	defer r.nc.Close()
	if !r.nc.IsConnected() {
		t.Error("not connected")
	}
}

func TestConnectGivesUpWhenTheContextEnds(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "nats://" + ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	nc, err := natsx.Connect(ctx, natsx.Options{URL: url})
	if err == nil {
		nc.Close()
		t.Fatal("connected to nothing")
	}
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), url) {
		t.Errorf("got %v, want context.Canceled naming %s", err, url)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("Connect took %v to notice the cancelled context", time.Since(start))
	}
}

// TestABucketWatcherKeepsUpWithABurst: a KV watcher (every service's
// revocation list) is a push consumer with flow control: past a window of
// pending bytes the server waits for the client's answer on $JS.FC.… before
// it delivers more. A service allowed to subscribe but not to answer stalls
// there for good — and revocations stop reaching it, so revoked tokens keep
// working. 4 MB of updates is well past the window.
func TestABucketWatcherKeepsUpWithABurst(t *testing.T) {
	t.Parallel()
	pub, sub := natsx.ServicePermissions("gateway", []string{"rampart.security.gateway.>"}, []string{"rampart.revocations"})
	srv := startEmbedded(t, natsx.EmbeddedOptions{Users: []natsx.User{
		{Name: "gateway", Password: "s3cret-gateway", Publish: pub, Subscribe: sub, PublishDeny: natsx.ServicePublishDeny()},
		{Name: "admin", Password: "s3cret-admin", Publish: []string{">"}, Subscribe: []string{">"}},
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	adminJS := newJS(t, connect(t, natsx.Options{URL: srv.ClientURL(), User: "admin", Password: "s3cret-admin"}))
	if err := natsx.EnsureStreams(ctx, adminJS); err != nil {
		t.Fatal(err)
	}
	adminKV, err := adminJS.KeyValue(ctx, natsx.BucketRevocations)
	if err != nil {
		t.Fatal(err)
	}
	var v violations
	nc := connect(t, natsx.Options{URL: srv.ClientURL(), User: "gateway", Password: "s3cret-gateway", InboxPrefix: natsx.InboxPrefix("gateway")})
	nc.SetErrorHandler(v.handler)
	kv, err := newJS(t, nc).KeyValue(ctx, natsx.BucketRevocations)
	if err != nil {
		t.Fatal(err)
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const n = 4000
	val := []byte(strings.Repeat("x", 1000))
	go func() {
		for i := range n {
			if _, err := adminKV.Put(ctx, fmt.Sprintf("jti-%d", i), val); err != nil {
				return
			}
		}
	}()
	got, deadline := 0, time.After(20*time.Second)
	for got < n {
		select {
		case e := <-w.Updates():
			if e != nil {
				got++
			}
		case <-deadline:
			v.mu.Lock()
			defer v.mu.Unlock()
			t.Fatalf("the watcher stalled after %d of %d updates; connection errors: %v", got, n, v.errs)
		}
	}
}
