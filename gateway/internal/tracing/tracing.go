// Package tracing is the gateway's own OpenTelemetry HTTP instrumentation:
// one server span per request (started by the front handler) and one client
// span per upstream exchange (started by the proxy), with W3C trace context
// extracted from trusted callers and injected towards the upstream.
//
// It replaces otelhttp on the hot path. otelhttp computes its semantic-
// convention attributes, wraps the body and the response writer and clones
// the outgoing request whether or not anything records the span; with no
// exporter that was about a tenth of the gateway's CPU and the largest
// source of allocated bytes. Here a span that is not recording (no exporter:
// see shared/telemetry) costs its context only, and attributes are computed
// only for spans that record.
package tracing

import (
	"net/http"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// HeaderCarrier adapts an http.Header to the propagators without the
// allocation http.Header.Get pays to canonicalise the lower-case names the
// W3C propagators ask for.
type HeaderCarrier http.Header

var _ propagation.TextMapCarrier = HeaderCarrier(nil)

func canonical(key string) string {
	switch key {
	case "traceparent":
		return "Traceparent"
	case "tracestate":
		return "Tracestate"
	case "baggage":
		return "Baggage"
	}
	return http.CanonicalHeaderKey(key)
}

// Get returns the first value of key.
func (c HeaderCarrier) Get(key string) string {
	if v := c[canonical(key)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Set replaces key's values with value.
func (c HeaderCarrier) Set(key, value string) { c[canonical(key)] = []string{value} }

// Keys lists the header names.
func (c HeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// Server and client span start options, allocated once.
var (
	ServerKind = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}
	ClientKind = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}
)

// Method bounds a method to the registered ones (else "_OTHER"), as a
// constant string.
func Method(m string) string {
	switch m {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE":
		return m
	}
	return "_OTHER"
}

// ServerSpanName is "<method> gateway", the name the gateway's server spans
// have always had, without building a string per request.
func ServerSpanName(m string) string {
	switch m {
	case "GET":
		return "GET gateway"
	case "HEAD":
		return "HEAD gateway"
	case "POST":
		return "POST gateway"
	case "PUT":
		return "PUT gateway"
	case "PATCH":
		return "PATCH gateway"
	case "DELETE":
		return "DELETE gateway"
	case "OPTIONS":
		return "OPTIONS gateway"
	}
	return "_OTHER gateway"
}
