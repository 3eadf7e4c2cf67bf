package e2e

import (
	"bufio"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/rampart-go/rampart/deploy/stack"
)

// clientTraceparent is a W3C trace context a public caller sends with the
// denied request. The gateway does not trust public callers' trace context
// (RAMPART_TRUST_CLIENT_TRACE is off), so this trace id must appear nowhere.
const (
	clientTraceID     = "4bf92f3577b34da6a3ce929d0e0e4736"
	clientTraceparent = "00-" + clientTraceID + "-00f067aa0ba902b7-01"
)

// TestDeniedRequestIsOneTraceWithItsSecurityEventAndExemplar is issue 6's
// chain for one request: alice reads bob's order through the gateway,
// order-service denies it (404, access.denied/ownership), and
//   - the gateway's server span, its client span towards order-service and
//     order-service's server span are one trace, rooted at the gateway (a
//     client-sent traceparent is not continued);
//   - order-service's server span carries the span event
//     security.access.denied with reason ownership and the request's id;
//   - the exemplar of order-service's
//     rampart_security_events_total{type="access.denied",reason="ownership"}
//     in the OpenMetrics exposition carries that trace id, so a click on the
//     Grafana spike lands on this trace.
func TestDeniedRequestIsOneTraceWithItsSecurityEventAndExemplar(t *testing.T) {
	e := start(t)
	_, _, alice, bob := e.cast(t)
	theirs := e.placeOrder(t, bob, mugOrder, nil)

	const route = "/api/v1/orders/:id"
	resp, body := get(t, e.public, e.Endpoints.Gateway+"/api/v1/orders/"+theirs.ID, http.Header{
		"Authorization": {"Bearer " + alice.token},
		"Traceparent":   {clientTraceparent},
	})
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("alice GETs bob's order: %d %s, want 404", resp.StatusCode, body)
	}
	reqID := resp.Header.Get("X-Request-Id")
	if reqID == "" {
		t.Fatal("no X-Request-Id on the response")
	}

	// order-service served exactly one request on this route in this test:
	// this one. Spans end asynchronously to the response, so wait.
	var denied sdktrace.ReadOnlySpan
	waitFor(t, 5*time.Second, "order-service's server span for "+route, func() bool {
		var found []sdktrace.ReadOnlySpan
		for _, s := range e.spans.Ended() {
			if serviceOf(s.Resource().Attributes()) == stack.Order && s.SpanKind() == trace.SpanKindServer &&
				attr(s.Attributes(), "http.route") == route {
				found = append(found, s)
			}
		}
		if len(found) > 1 {
			t.Fatalf("%d order-service server spans for %s, want 1", len(found), route)
		}
		if len(found) == 1 {
			denied = found[0]
		}
		return denied != nil
	})
	traceID := denied.SpanContext().TraceID()
	if traceID.String() == clientTraceID {
		t.Errorf("the trace continues the public caller's traceparent %s: the gateway must start its own", clientTraceID)
	}

	t.Run("order-service's span carries the security.access.denied event", func(t *testing.T) {
		var events []sdktrace.Event
		for _, ev := range denied.Events() {
			if ev.Name == "security.access.denied" {
				events = append(events, ev)
			}
		}
		if len(events) != 1 {
			t.Fatalf("%d security.access.denied events on %q, want 1 (events: %v)", len(events), denied.Name(), eventNames(denied))
		}
		want := map[attribute.Key]string{
			"security.type": "access.denied", "security.reason": "ownership", "security.severity": "medium",
			"http.route": route, "request_id": reqID, "enduser.id": alice.id,
		}
		for k, v := range want {
			if got := attr(events[0].Attributes, k); got != v {
				t.Errorf("event attribute %s = %q, want %q", k, got, v)
			}
		}
	})

	t.Run("gateway and order-service spans share one trace rooted at the gateway", func(t *testing.T) {
		// The gateway's spans end after order-service's: wait for them.
		var inTrace []sdktrace.ReadOnlySpan
		var root, client sdktrace.ReadOnlySpan
		waitFor(t, 5*time.Second, "the gateway's spans in trace "+traceID.String(), func() bool {
			inTrace, root, client = nil, nil, nil
			for _, s := range e.spans.Ended() {
				if s.SpanContext().TraceID() != traceID {
					continue
				}
				inTrace = append(inTrace, s)
				if serviceOf(s.Resource().Attributes()) != stack.Gateway {
					continue
				}
				switch s.SpanKind() {
				case trace.SpanKindServer:
					root = s
				case trace.SpanKindClient:
					if s.SpanContext().SpanID() == denied.Parent().SpanID() {
						client = s
					}
				}
			}
			return root != nil && client != nil
		})
		if root.Parent().IsValid() {
			t.Errorf("the gateway's server span has parent %s: it must be the trace's root", root.Parent().SpanID())
		}
		if got := attr(root.Attributes(), "http.response.status_code"); got != "404" {
			t.Errorf("gateway server span status code %s, want 404", got)
		}
		if client.Parent().SpanID() != root.SpanContext().SpanID() {
			t.Errorf("the gateway's client span is not a child of its server span")
		}
		if attr(client.Attributes(), "rampart.upstream") != stack.Order {
			t.Errorf("the gateway's client span went to %q, want %s", attr(client.Attributes(), "rampart.upstream"), stack.Order)
		}
		// Every span of the trace hangs off a recorded span of the same
		// trace: one request, one tree, no orphaned fragment.
		ids := map[trace.SpanID]bool{}
		for _, s := range inTrace {
			ids[s.SpanContext().SpanID()] = true
		}
		for _, s := range inTrace {
			if s.Parent().IsValid() && !ids[s.Parent().SpanID()] {
				t.Errorf("span %q (%s) has a parent outside the recorded trace", s.Name(), serviceOf(s.Resource().Attributes()))
			}
		}
	})

	t.Run("the security-event counter's exemplar carries the trace id", func(t *testing.T) {
		ex := exemplarOf(t, e.Endpoints.Services[stack.Order].Ops+"/metrics", "rampart_security_events_total",
			map[string]string{"service": stack.Order, "type": "access.denied", "reason": "ownership"})
		if ex == "" {
			t.Fatal(`rampart_security_events_total{service="order-service",type="access.denied",reason="ownership"} has no exemplar`)
		}
		if want := `trace_id="` + traceID.String() + `"`; !strings.Contains(ex, want) {
			t.Errorf("exemplar %s, want one with %s", ex, want)
		}
	})
}

// attr returns the value of key in attrs as a string, "" when absent.
func attr(attrs []attribute.KeyValue, key attribute.Key) string {
	for _, a := range attrs {
		if a.Key == key {
			return a.Value.String()
		}
	}
	return ""
}

func eventNames(s sdktrace.ReadOnlySpan) []string {
	var names []string
	for _, ev := range s.Events() {
		names = append(names, ev.Name)
	}
	return names
}

// openMetrics is the content type Prometheus asks for when it wants
// exemplars: the classic text format has no syntax for them.
const openMetrics = "application/openmetrics-text; version=1.0.0; charset=utf-8"

// exemplarOf scrapes url in the OpenMetrics format and returns the exemplar
// label set of the sample name{labels} (order-independent), as written
// after the " # ", e.g. {trace_id="…"}; "" when the sample has none. It
// fails the test if the sample is missing or the response is not
// OpenMetrics.
func exemplarOf(t testing.TB, url, name string, labels map[string]string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", openMetrics)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text") {
		t.Fatalf("scrape %s: Content-Type %q, want OpenMetrics", url, ct)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var seen []string
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		// name{a="x",b="y"} value [timestamp] [# {exemplar labels} value [timestamp]]
		// Our label values hold no "}" or " # ", so splitting on them is exact.
		end := strings.Index(line, "} ")
		if end < 0 {
			t.Fatalf("malformed sample line %q", line)
		}
		seen = append(seen, line)
		if !sameLabels(line[len(name)+1:end], labels) {
			continue
		}
		_, ex, ok := strings.Cut(line[end+2:], " # ")
		if !ok {
			return ""
		}
		exLabels, _, _ := strings.Cut(ex, "} ")
		return exLabels + "}"
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read %s: %v", url, err)
	}
	t.Fatalf("no sample %s%v on %s; have:\n%s", name, labels, url, strings.Join(seen, "\n"))
	return ""
}

// sameLabels reports whether the exposition's label list a="x",b="y" is
// exactly want.
func sameLabels(list string, want map[string]string) bool {
	got := map[string]string{}
	for pair := range strings.SplitSeq(list, ",") {
		k, v, ok := strings.Cut(pair, "=")
		if !ok {
			return false
		}
		got[k] = strings.Trim(v, `"`)
	}
	return fmt.Sprint(got) == fmt.Sprint(want)
}
