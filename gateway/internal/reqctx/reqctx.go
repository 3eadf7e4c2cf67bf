// Package reqctx carries what the gateway learns about a request (its id,
// route, client address, token subject, body counter) from the front
// handler to the proxy and the access log, in one context value: one
// allocation per request instead of one per fact.
package reqctx

import (
	"context"
	"errors"
	"io"
	"sync/atomic"

	"github.com/rampart-go/rampart/gateway/internal/route"
)

// Info is the per-request record. Fields are written by the front handler
// before the request is proxied and only read afterwards.
type Info struct {
	ID       string
	Route    *route.Route
	ClientIP string
	// Subject and ClientID come from a verified token.
	Subject, ClientID string
	// Body counts the request body as it streams; nil when no body.
	Body *LimitedBody
	// Retries the proxy made (access log).
	Retries int
	// CacheHit says the token was answered from the verified-token cache.
	CacheHit bool
}

type key struct{}

// With returns ctx carrying info.
func With(ctx context.Context, info *Info) context.Context {
	return context.WithValue(ctx, key{}, info)
}

// From returns the request's Info, or an empty one (never nil).
func From(ctx context.Context) *Info {
	if i, ok := ctx.Value(key{}).(*Info); ok {
		return i
	}
	return &Info{}
}

// ErrBodyTooLarge is returned by a LimitedBody read past its limit.
var ErrBodyTooLarge = errors.New("request body too large")

// LimitedBody counts a request body as it is read and fails the read that
// goes past Max: a chunked body (no Content-Length) is refused as soon as
// it has sent one byte too many, without being buffered.
type LimitedBody struct {
	R        io.ReadCloser
	Max      int64
	n        int64
	exceeded atomic.Bool
}

// Read implements io.Reader.
func (b *LimitedBody) Read(p []byte) (int, error) {
	if b.n > b.Max {
		return 0, ErrBodyTooLarge
	}
	// Read at most one byte past the limit: enough to know it is exceeded.
	if rem := b.Max - b.n + 1; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := b.R.Read(p)
	b.n += int64(n)
	if b.n > b.Max {
		b.exceeded.Store(true)
		return 0, ErrBodyTooLarge
	}
	return n, err
}

// Close implements io.Closer.
func (b *LimitedBody) Close() error { return b.R.Close() }

// Exceeded reports whether a read went past the limit.
func (b *LimitedBody) Exceeded() bool { return b != nil && b.exceeded.Load() }
