package hygiene

import (
	"bytes"
	"context"
	"math"
	"net"
	"sync"
)

// Framing verdicts: why a request's HTTP/1 head is ambiguous.
const (
	FrameOK = iota
	// FrameCLAndTE: both Content-Length and Transfer-Encoding (RFC 9112
	// §6.1: the classic CL.TE / TE.CL desync).
	FrameCLAndTE
	// FrameDuplicateCL: more than one Content-Length field, or a list.
	FrameDuplicateCL
	// FrameObsFold: a header line continued by leading whitespace
	// (obsolete line folding, RFC 9112 §5.2).
	FrameObsFold
	// FrameBareLF: a line ended by LF alone, or a stray CR.
	FrameBareLF
	// FrameBadTE: a Transfer-Encoding other than exactly "chunked", or on
	// an HTTP/1.0 request (which Go would ignore, reading the chunked body
	// as the next request).
	FrameBadTE
)

// Why net/http alone is not enough: it accepts a request carrying both
// Content-Length and Transfer-Encoding (it drops the Content-Length), it
// merges identical duplicate Content-Length fields into one, and it unfolds
// obs-fold lines into a space — each time the handler sees a clean request
// and cannot tell. Those requests are harmless to the gateway itself but
// are exactly what a desync attack on a less careful hop looks like, so the
// gateway refuses them. Doing so needs the raw bytes, which only a wrapper
// around the connection sees: Framing follows an HTTP/1.x byte stream,
// judges each request head and queues one verdict per request, which the
// handler takes in order (HTTP/1 requests on one connection are served one
// after another).

// maxTrackedHead bounds the head bytes Framing buffers. net/http refuses
// larger heads itself (MaxHeaderBytes); past this Framing stops judging.
const maxTrackedHead = 256 << 10

type frameState uint8

const (
	stHead frameState = iota
	stBody
	stChunkSize
	stChunkData
	stChunkDataEnd
	stTrailer
	stStopped // gave up (or a verdict closes the connection): no more verdicts
)

// Framing judges the requests of one HTTP/1.x connection. It is safe for
// concurrent use (net/http reads from a second goroutine to notice a
// closed connection).
type Framing struct {
	mu        sync.Mutex
	state     frameState
	head      []byte
	line      []byte
	remaining int64
	verdicts  []int
}

// Feed follows b, the next bytes read from the connection.
func (f *Framing) Feed(b []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for len(b) > 0 && f.state != stStopped {
		switch f.state {
		case stHead:
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				f.head = append(f.head, b...)
				b = nil
			} else {
				f.head = append(f.head, b[:i+1]...)
				b = b[i+1:]
				f.endHeadLine()
			}
			if len(f.head) > maxTrackedHead {
				f.stop()
			}
		case stBody, stChunkData:
			n := min(int64(len(b)), f.remaining)
			f.remaining -= n
			b = b[n:]
			if f.remaining == 0 {
				if f.state == stBody {
					f.state = stHead
				} else {
					f.state = stChunkDataEnd
				}
			}
		case stChunkSize, stChunkDataEnd, stTrailer:
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				f.line = append(f.line, b...)
				b = nil
				if len(f.line) > 4096 {
					f.stop()
				}
				continue
			}
			f.line = append(f.line, b[:i+1]...)
			b = b[i+1:]
			f.endChunkLine()
			f.line = f.line[:0]
		}
	}
}

func (f *Framing) stop() {
	f.state = stStopped
	f.head, f.line = nil, nil
}

// endHeadLine runs when f.head ends in '\n'. Empty lines before a request
// line are skipped (RFC 9112 §2.2); an empty line after it ends the head.
func (f *Framing) endHeadLine() {
	h := f.head
	start := bytes.LastIndexByte(h[:len(h)-1], '\n') + 1
	line := h[start:]
	empty := len(line) == 1 || len(line) == 2 && line[0] == '\r'
	if !empty {
		return
	}
	if start == 0 {
		f.head = f.head[:0] // leading empty line
		return
	}
	verdict, chunked, length := judgeHead(h)
	f.verdicts = append(f.verdicts, verdict)
	f.head = f.head[:0]
	switch {
	case verdict != FrameOK:
		// The handler refuses the request and closes the connection;
		// whatever follows is not parsed by anyone.
		f.stop()
	case chunked:
		f.state = stChunkSize
	case length > 0:
		f.state, f.remaining = stBody, length
	}
}

func (f *Framing) endChunkLine() {
	line := bytes.TrimRight(f.line, "\r\n")
	switch f.state {
	case stChunkSize:
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		line = bytes.TrimRight(line, " \t")
		size, ok := parseHex(line)
		switch {
		case !ok:
			f.stop() // net/http fails the body read; nothing to follow
		case size == 0:
			f.state = stTrailer
		default:
			f.state, f.remaining = stChunkData, size
		}
	case stChunkDataEnd:
		if len(line) != 0 {
			f.stop()
			return
		}
		f.state = stChunkSize
	case stTrailer:
		if len(line) == 0 {
			f.state = stHead
		}
	}
}

// parseHex reads a chunk size as net/http does: up to 16 hex digits,
// leading zeros included. Stricter than net/http, Framing would stop
// following the stream at a size net/http reads (a zero-padded
// "0000000000000005"), and every later request on the connection would go
// unjudged. A size beyond int64 is held at MaxInt64: no client sends that
// many bytes, so the stream never leaves the chunk, as for net/http.
func parseHex(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 16 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		d, ok := unhex(c)
		if !ok {
			return 0, false
		}
		n = n<<4 | uint64(d)
	}
	return int64(min(n, math.MaxInt64)), true
}

// judgeHead looks at one complete head (request line, fields, empty line)
// and says whether its framing is ambiguous, and how net/http will frame
// the body so the stream can be followed.
func judgeHead(h []byte) (verdict int, chunked bool, length int64) {
	lines := bytes.Split(h, []byte{'\n'})
	lines = lines[:len(lines)-1] // after the final '\n'
	clCount, teCount := 0, 0
	var te, cl []byte
	http10 := false
	for i, l := range lines {
		if len(l) == 0 || l[len(l)-1] != '\r' {
			return FrameBareLF, false, 0
		}
		l = l[:len(l)-1]
		if bytes.IndexByte(l, '\r') >= 0 {
			return FrameBareLF, false, 0
		}
		if i == 0 {
			http10 = bytes.HasSuffix(l, []byte(" HTTP/1.0"))
			continue
		}
		if len(l) == 0 {
			continue
		}
		if l[0] == ' ' || l[0] == '\t' {
			return FrameObsFold, false, 0
		}
		name, value, ok := bytes.Cut(l, []byte{':'})
		if !ok {
			continue // net/http refuses it
		}
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			clCount++
			cl = bytes.Trim(value, " \t")
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			teCount++
			te = bytes.Trim(value, " \t")
		}
	}
	switch {
	case teCount > 0 && clCount > 0:
		return FrameCLAndTE, false, 0
	case clCount > 1 || bytes.IndexByte(cl, ',') >= 0:
		return FrameDuplicateCL, false, 0
	case teCount > 1 || teCount == 1 && (http10 || !bytes.EqualFold(te, []byte("chunked"))):
		return FrameBadTE, false, 0
	case teCount == 1:
		return FrameOK, true, 0
	case clCount == 1:
		n, ok := parseDecimal(cl)
		if !ok {
			return FrameOK, false, 0 // net/http refuses it and closes
		}
		return FrameOK, false, n
	}
	return FrameOK, false, 0
}

// parseDecimal reads a Content-Length as net/http does
// (strconv.ParseUint(s, 10, 63)): any number of digits, leading zeros
// included, up to MaxInt64. Refusing a padded length that net/http reads
// would make Framing take the body for the next head, judge it, and pin
// every later verdict on the wrong request.
func parseDecimal(b []byte) (int64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n > (math.MaxInt64-d)/10 {
			return 0, false // net/http refuses it too
		}
		n = n*10 + d
	}
	return n, true
}

// Next returns the verdict on the next request head, in order. A request
// whose head Framing could not judge (it stopped following the stream)
// gets FrameOK: net/http's own checks still apply to it.
func (f *Framing) Next() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.verdicts) == 0 {
		return FrameOK
	}
	v := f.verdicts[0]
	f.verdicts = f.verdicts[1:]
	return v
}

// Conn is a connection whose reads are followed by a Framing.
type Conn struct {
	net.Conn
	Framing Framing
}

// Read implements net.Conn.
func (c *Conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.Framing.Feed(p[:n])
	}
	return n, err
}

type framingKey struct{}

// ConnContext is an http.Server ConnContext hook: it makes the
// connection's Framing available to handlers (FramingVerdict).
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if fc, ok := c.(*Conn); ok {
		return context.WithValue(ctx, framingKey{}, &fc.Framing)
	}
	return ctx
}

// FramingVerdict takes the verdict on the request whose context is ctx.
// HTTP/2 requests (no Framing) are always FrameOK: HTTP/2 frames bodies
// itself and net/http refuses connection-specific fields there.
func FramingVerdict(ctx context.Context) int {
	if f, ok := ctx.Value(framingKey{}).(*Framing); ok {
		return f.Next()
	}
	return FrameOK
}

// Listener wraps accepted plain-TCP connections in Conn. (The TLS edge
// wraps the *tls.Conn of HTTP/1 connections itself; see the edge server.)
type Listener struct{ net.Listener }

// Accept implements net.Listener.
func (l Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &Conn{Conn: c}, nil
}
