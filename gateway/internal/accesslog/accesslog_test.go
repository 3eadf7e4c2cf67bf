package accesslog

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLinesAreJSONWithEveryField: each line is one JSON object with the
// fields of the service's slog lines and the request's, hostile strings
// from a token escaped.
func TestLinesAreJSONWithEveryField(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	l := New(Options{Out: &out, Service: "gateway"})
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	hostile := "sub\"\\\n\x00\u2028\xff<script>"
	l.Write(&Entry{
		Time: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), RequestID: "abc", Method: "GET", Route: "orders",
		Status: 200, Bytes: 92, Duration: 1500 * time.Microsecond, ClientIP: "192.0.2.1", Proto: "HTTP/1.1",
		TraceID: tid, SpanID: sid, Subject: hostile, ClientID: "demo",
		Upstream: "order-service", Retries: 1,
	})
	l.Write(&Entry{Time: time.Now(), RequestID: "def", Method: "_OTHER", Route: "rejected", Status: 400})
	if out.String() != "" {
		t.Fatal("lines written before a flush")
	}
	l.Flush()
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 lines, got %q", out.String())
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil {
		t.Fatalf("%v: %s", err, lines[0])
	}
	want := map[string]any{
		"time": "2026-01-02T03:04:05.000000006Z", "level": "INFO", "msg": "access", "service": "gateway", "log": "access",
		"request_id": "abc", "method": "GET", "route": "orders", "status": 200.0, "bytes": 92.0, "duration_ms": 1.5,
		"client_ip": "192.0.2.1", "proto": "HTTP/1.1", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
		"span_id": "00f067aa0ba902b7", "subject": "sub\"\\\n\x00\u2028\ufffd<script>", "client_id": "demo",
		"upstream": "order-service", "retries": 1.0,
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %#v, want %#v", k, m[k], v)
		}
	}
	if len(m) != len(want) {
		t.Errorf("fields %v", m)
	}
	if err := json.Unmarshal([]byte(lines[1]), &m); err != nil {
		t.Fatalf("%v: %s", err, lines[1])
	}
	for _, k := range []string{"trace_id", "subject", "upstream", "retries"} {
		if strings.Contains(lines[1], `"`+k+`"`) {
			t.Errorf("empty %s written: %s", k, lines[1])
		}
	}
}

// TestLinesReachTheWriter: by the flush interval, at a full batch, and when
// Run stops — never half a line.
func TestLinesReachTheWriter(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	l := New(Options{Out: &out, Service: "gateway", FlushInterval: 20 * time.Millisecond, BatchBytes: 1 << 20})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()
	l.Write(&Entry{Time: time.Now(), RequestID: "one"})
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), `"one"`) {
		if time.Now().After(deadline) {
			t.Fatal("a line was not flushed by the interval")
		}
		time.Sleep(5 * time.Millisecond)
	}
	l.Write(&Entry{Time: time.Now(), RequestID: "two"})
	cancel()
	<-done
	if !strings.Contains(out.String(), `"two"`) {
		t.Fatal("the last line was not flushed when Run stopped")
	}

	var small syncBuffer
	b := New(Options{Out: &small, Service: "gateway", BatchBytes: 1})
	b.Write(&Entry{Time: time.Now(), RequestID: "three"})
	if !strings.HasSuffix(small.String(), "}\n") || !strings.Contains(small.String(), `"three"`) {
		t.Fatalf("a full batch was not written at once: %q", small.String())
	}
}

// TestConcurrentWritersKeepLinesWhole under -race.
func TestConcurrentWritersKeepLinesWhole(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	l := New(Options{Out: &out, Service: "gateway", BatchBytes: 256})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				l.Write(&Entry{Time: time.Now(), RequestID: "r", Status: 200})
			}
		})
	}
	wg.Wait()
	l.Flush()
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 1600 {
		t.Fatalf("%d lines", len(lines))
	}
	for _, ln := range lines {
		if !json.Valid([]byte(ln)) {
			t.Fatalf("broken line %q", ln)
		}
	}
}

func BenchmarkWrite(b *testing.B) {
	l := New(Options{Out: io.Discard, Service: "gateway"})
	e := &Entry{Time: time.Now(), RequestID: "0123456789abcdef0123456789abcdef", Method: "GET", Route: "orders",
		Status: 200, Bytes: 92, Duration: 1500 * time.Microsecond, ClientIP: "192.0.2.1", Proto: "HTTP/1.1",
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, Subject: "0123456789abcdef", ClientID: "demo",
		Upstream: "order-service"}
	b.ReportAllocs()
	for b.Loop() {
		l.Write(e)
	}
}
