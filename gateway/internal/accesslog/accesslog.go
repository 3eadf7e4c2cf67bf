// Package accesslog writes the gateway's access log: one JSON line per
// request, in the shape of the service's other log lines (time, level, msg,
// service, then the fields), encoded by hand into a reused buffer and
// written in batches.
//
// Why not slog: under load the per-request slog path (an attribute slice,
// the trace handler's extra attributes, the JSON handler's buffer and one
// write(2) per line) cost about a tenth of the gateway's CPU, most of it the
// system call. Here a line costs no allocation, and lines reach the writer
// every FlushInterval or every BatchBytes, whichever comes first, and on
// Close: at most FlushInterval of lines is lost if the process is killed
// outright. Lines are only ever written whole, so they do not interleave
// with the service's other log lines on the same file.
package accesslog

import (
	"context"
	"encoding/hex"
	"io"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/trace"
)

// Defaults of Options.
const (
	DefaultFlushInterval = 100 * time.Millisecond
	DefaultBatchBytes    = 32 << 10
)

// Options configure New.
type Options struct {
	// Out receives whole lines (the service's log writer).
	Out io.Writer
	// Service is the "service" field of every line.
	Service string
	// FlushInterval bounds how long a line waits (DefaultFlushInterval).
	FlushInterval time.Duration
	// BatchBytes is the batch size that triggers a write at once
	// (DefaultBatchBytes).
	BatchBytes int
}

// Log is the access log. It is safe for concurrent use.
type Log struct {
	out      io.Writer
	prefix   []byte // `,"level":"INFO","msg":"access","service":…,"log":"access"`
	interval time.Duration
	batch    int

	mu  sync.Mutex
	buf []byte
	// spare is the other half of a double buffer: a batch is written from
	// one while requests append to the other.
	spare   []byte
	writeMu sync.Mutex // serialises writes to out, in order
	pool    sync.Pool
}

// New returns the access log writing to o.Out.
func New(o Options) *Log {
	if o.FlushInterval <= 0 {
		o.FlushInterval = DefaultFlushInterval
	}
	if o.BatchBytes <= 0 {
		o.BatchBytes = DefaultBatchBytes
	}
	p := []byte(`,"level":"INFO","msg":"access","service":`)
	p = appendString(p, o.Service)
	p = append(p, `,"log":"access"`...)
	l := &Log{out: o.Out, prefix: p, interval: o.FlushInterval, batch: o.BatchBytes,
		buf: make([]byte, 0, 2*o.BatchBytes), spare: make([]byte, 0, 2*o.BatchBytes)}
	l.pool.New = func() any { b := make([]byte, 0, 512); return &b }
	return l
}

// Entry is one request. Strings from the client or a token (Subject,
// ClientID) are escaped; none of the fields may hold a path, query, header,
// token or body.
type Entry struct {
	Time      time.Time
	RequestID string
	Method    string
	Route     string
	Status    int
	Bytes     int64
	Duration  time.Duration
	ClientIP  string
	Proto     string
	// TraceID and SpanID are written when TraceID is valid.
	TraceID           trace.TraceID
	SpanID            trace.SpanID
	Subject, ClientID string
	Upstream          string
	Retries           int
}

// Write queues e's line.
func (l *Log) Write(e *Entry) {
	bp := l.pool.Get().(*[]byte)
	b := append((*bp)[:0], `{"time":`...)
	b = append(b, '"')
	b = e.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	b = append(b, l.prefix...)
	b = appendField(b, "request_id", e.RequestID)
	b = appendField(b, "method", e.Method)
	b = appendField(b, "route", e.Route)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, e.Bytes, 10)
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendFloat(b, float64(e.Duration.Microseconds())/1000, 'f', -1, 64)
	b = appendField(b, "client_ip", e.ClientIP)
	b = appendField(b, "proto", e.Proto)
	if e.TraceID.IsValid() {
		b = append(b, `,"trace_id":"`...)
		b = hex.AppendEncode(b, e.TraceID[:])
		b = append(b, `","span_id":"`...)
		b = hex.AppendEncode(b, e.SpanID[:])
		b = append(b, '"')
	}
	if e.Subject != "" {
		b = appendField(b, "subject", e.Subject)
		b = appendField(b, "client_id", e.ClientID)
	}
	if e.Upstream != "" {
		b = appendField(b, "upstream", e.Upstream)
	}
	if e.Retries > 0 {
		b = append(b, `,"retries":`...)
		b = strconv.AppendInt(b, int64(e.Retries), 10)
	}
	b = append(b, "}\n"...)

	l.mu.Lock()
	l.buf = append(l.buf, b...)
	full := len(l.buf) >= l.batch
	l.mu.Unlock()
	*bp = b
	if cap(b) <= 4<<10 {
		l.pool.Put(bp)
	}
	if full {
		l.Flush()
	}
}

// Flush writes the queued lines.
func (l *Log) Flush() {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	l.mu.Lock()
	out := l.buf
	l.buf = l.spare[:0]
	l.mu.Unlock()
	if len(out) > 0 {
		_, _ = l.out.Write(out) // a failing log writer must not fail requests
	}
	l.mu.Lock()
	l.spare = out[:0]
	l.mu.Unlock()
}

// Run flushes every FlushInterval until ctx ends, then once more.
func (l *Log) Run(ctx context.Context) {
	t := time.NewTicker(l.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			l.Flush()
			return
		case <-t.C:
			l.Flush()
		}
	}
}

func appendField(b []byte, key, v string) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return appendString(b, v)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string: quotes, backslashes and control
// characters escaped, invalid UTF-8 replaced by U+FFFD, and U+2028/U+2029
// escaped (as encoding/json does) so a line is safe wherever it is pasted.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
