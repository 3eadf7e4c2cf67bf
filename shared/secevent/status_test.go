package secevent

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestRefusalsMarkTheSpanAsAnError: a refused request's span gets status
// Error naming the type and reason, so the trace backend finds it by
// status; an audit fact (a login, a revocation) leaves the status alone.
func TestRefusalsMarkTheSpanAsAnError(t *testing.T) {
	e, err := NewEmitter(Options{Service: "order-service", Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	cases := []struct {
		ev   Event
		code codes.Code
		desc string
	}{
		{Event{Type: AccessDenied, Reason: ReasonOwnership}, codes.Error, "access.denied/ownership"},
		{Event{Type: TokenRejected, Reason: "expired"}, codes.Error, "token.rejected/expired"},
		{Event{Type: RefreshReused}, codes.Error, "auth.refresh.reused/"},
		{Event{Type: TokenRevoked, Reason: "logout"}, codes.Unset, ""},
		{Event{Type: LoginSucceeded}, codes.Unset, ""},
		{Event{Type: AccountChanged, Reason: "disabled"}, codes.Unset, ""},
	}
	for _, c := range cases {
		ctx, span := tp.Tracer("test").Start(context.Background(), "request")
		e.Emit(ctx, c.ev)
		span.End()
		ended := rec.Ended()
		got := ended[len(ended)-1].Status()
		if got.Code != c.code || got.Description != c.desc {
			t.Errorf("%s/%s: status %v %q, want %v %q", c.ev.Type, c.ev.Reason, got.Code, got.Description, c.code, c.desc)
		}
	}
	for _, typ := range []Type{LoginFailed, AccountLocked, ClientFailed, GrantInvalid, RateLimitExceeded, RequestRejected, MTLSRejected} {
		if !typ.Refusal() {
			t.Errorf("%s is not a refusal", typ)
		}
	}
}
