// Package proxy forwards a routed request to its upstream service over mTLS.
package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/rampart-go/rampart/shared/problem"
)

// Upstream is one service behind the gateway.
type Upstream struct {
	Name string
	rp   *httputil.ReverseProxy
}

// Options configure an Upstream.
type Options struct {
	Name      string
	Target    *url.URL
	Transport http.RoundTripper
	Logger    *slog.Logger
	// RequestID returns the id assigned to the inbound request, so the
	// gateway's problem bodies carry it too.
	RequestID func(*http.Request) string
}

// New builds the reverse proxy for one upstream. It uses Rewrite rather
// than Director: with Rewrite, hop-by-hop headers named by the client's
// Connection header are removed before our code runs, so a client cannot
// make the proxy delete headers the gateway sets (Go #50580).
func New(o Options) *Upstream {
	target := *o.Target
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(&target)
			// The upstream sees its own host name, not the public one.
			pr.Out.Host = target.Host
			// Forwarded/X-Forwarded-* from the client were already dropped
			// by ReverseProxy; SetXForwarded records the peer we saw.
			pr.SetXForwarded()
		},
		Transport: o.Transport,
		// -1 flushes after every write, so streamed responses (and server
		// events, should a service offer them) are not held back.
		FlushInterval: -1,
		ErrorLog:      slog.NewLogLogger(o.Logger.Handler(), slog.LevelDebug),
		ModifyResponse: func(resp *http.Response) error {
			// Internal detail is no business of the client's.
			resp.Header.Del("Server")
			resp.Header.Del("X-Powered-By")
			for k := range resp.Header {
				if strings.HasPrefix(k, "X-Internal-") {
					resp.Header.Del(k)
				}
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			code := problem.BadGateway
			msg := "upstream unavailable"
			if errors.Is(err, context.DeadlineExceeded) {
				code, msg = problem.Timeout, "upstream timed out"
			}
			if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
				// The client went away; nobody is listening for an answer.
				return
			}
			o.Logger.WarnContext(r.Context(), "upstream error",
				slog.String("upstream", o.Name), slog.Any("error", err))
			p := problem.New(code, msg).Problem(o.RequestID(r), r.URL.Path)
			problem.Write(w, p)
		},
	}
	return &Upstream{Name: o.Name, rp: rp}
}

// ServeHTTP forwards r within timeout.
func (u *Upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.rp.ServeHTTP(w, r)
}

// WithTimeout bounds the upstream exchange; the response body may stream
// past it only as long as the write timeout allows.
func WithTimeout(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), d)
		defer cancel()
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}
