// Package authn is the gin side of token checking, used by every service:
// a middleware that verifies the bearer token with the shared verifier and
// answers RFC 6750 401s, and a policy guard that answers 403s. Each refusal
// emits exactly one security event.
package authn

import (
	"context"
	"crypto/subtle"
	"net/http"
	"slices"

	"github.com/gin-gonic/gin"

	"github.com/rampart-go/rampart/shared/mtls"
	"github.com/rampart-go/rampart/shared/policy"
	"github.com/rampart-go/rampart/shared/problem"
	"github.com/rampart-go/rampart/shared/secevent"
	"github.com/rampart-go/rampart/shared/server"
	"github.com/rampart-go/rampart/shared/tokens"
)

// Verifier checks a raw access token.
type Verifier interface {
	Verify(ctx context.Context, raw string) (*tokens.Claims, error)
}

// Emitter records security events.
type Emitter interface {
	Emit(ctx context.Context, ev secevent.Event)
}

// Realm is the RFC 6750 realm of every challenge.
const Realm = "rampart"

const (
	ctxClaims = "rampart.claims"
	ctxRaw    = "rampart.raw_token"
)

// Middleware requires a valid access token. A request without one gets
// `WWW-Authenticate: Bearer realm="rampart"` (RFC 6750 §3.1: no error code);
// a rejected token gets error="invalid_token" and the same body whatever the
// reason, which goes to the token.rejected event only.
func Middleware(v Verifier, events Emitter) gin.HandlerFunc {
	return func(c *gin.Context) {
		ctx := c.Request.Context()
		raw, err := tokens.BearerToken(c.GetHeader("Authorization"))
		if err == nil {
			var claims *tokens.Claims
			if claims, err = v.Verify(ctx, raw); err == nil {
				if claims.CertThumbprint == "" || boundToPeer(c.Request, claims) {
					c.Set(ctxClaims, claims)
					c.Set(ctxRaw, raw)
					c.Next()
					return
				}
				// A certificate-bound token (RFC 8705) is only good on a
				// connection authenticated by that certificate: one lifted
				// from a service and replayed by anyone else is refused.
				reject(c, events, tokens.ReasonBinding)
				return
			}
		}
		reject(c, events, tokens.ReasonOf(err))
	}
}

// reject emits token.rejected with reason and answers the RFC 6750 401.
func reject(c *gin.Context, events Emitter, reason tokens.Reason) {
	events.Emit(c.Request.Context(), secevent.Event{
		Type: secevent.TokenRejected, Reason: secevent.Reason(reason),
		ClientIP: c.ClientIP(), Route: c.FullPath(), RequestID: server.RequestID(c),
	})
	challenge := `Bearer realm="` + Realm + `"`
	msg := "a bearer access token is required"
	if reason != tokens.ReasonMissing {
		challenge += `, error="invalid_token"`
		msg = "the access token is invalid"
	}
	c.Header("WWW-Authenticate", challenge)
	server.Fail(c, problem.New(problem.Unauthenticated, msg))
}

// boundToPeer reports whether claims' cnf.x5t#S256 is the thumbprint of the
// certificate the caller presented on this connection.
func boundToPeer(r *http.Request, claims *tokens.Claims) bool {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return false
	}
	want := mtls.Thumbprint(r.TLS.PeerCertificates[0])
	return subtle.ConstantTimeCompare([]byte(want), []byte(claims.CertThumbprint)) == 1
}

// RequireBinding refuses (401, token.rejected/binding) a token that is not
// bound to the caller's certificate. Routes for service callers use it: a
// bearer token alone is not enough there, the caller must also hold the
// key it was issued to. It must run after Middleware, which has already
// refused a bound token presented on the wrong connection.
func RequireBinding(events Emitter) gin.HandlerFunc {
	return func(c *gin.Context) {
		if claims := Claims(c); claims == nil || claims.CertThumbprint == "" {
			reject(c, events, tokens.ReasonBinding)
			return
		}
		c.Next()
	}
}

// RequirePeer lets only the named service identities through: the listener's
// allowlist admits every service that may call this one at all, and this
// narrows one route group further (403, mtls.rejected/identity_not_allowed).
func RequirePeer(events Emitter, allowed ...string) gin.HandlerFunc {
	return func(c *gin.Context) {
		if id, ok := mtls.PeerIdentity(c.Request); ok && slices.Contains(allowed, id) {
			c.Next()
			return
		}
		events.Emit(c.Request.Context(), secevent.Event{
			Type: secevent.MTLSRejected, Reason: secevent.ReasonIdentityNotAllowed,
			ClientIP: c.ClientIP(), Route: c.FullPath(), RequestID: server.RequestID(c),
		})
		server.Fail(c, problem.New(problem.Forbidden, "this caller may not use this route"))
	}
}

// RawToken returns the access token Middleware verified, for a service that
// exchanges it for a token to call another service on the user's behalf.
func RawToken(c *gin.Context) string { return c.GetString(ctxRaw) }

// Claims returns the verified claims Middleware stored; nil if none.
func Claims(c *gin.Context) *tokens.Claims {
	v, ok := c.Get(ctxClaims)
	if !ok {
		return nil
	}
	claims, _ := v.(*tokens.Claims)
	return claims
}

// Require answers 403 unless the verified token satisfies rule (roles ∧
// scopes), emitting access.denied with reason role or scope. It must run
// after Middleware.
func Require(rule policy.Rule, events Emitter) gin.HandlerFunc {
	return func(c *gin.Context) {
		claims := Claims(c)
		if claims == nil {
			// A route wired without Middleware is a programming error; fail
			// closed rather than serve it unauthenticated.
			server.Fail(c, problem.New(problem.Internal, "route is missing authentication"))
			return
		}
		d := policy.Check(claims, rule)
		if d.Allowed {
			c.Next()
			return
		}
		Deny(c, events, secevent.Reason(d.Reason))
	}
}

// Deny emits access.denied with reason and answers 403, or 404 for the
// ownership reason: an object the caller may not see does not exist for it
// (no enumeration).
func Deny(c *gin.Context, events Emitter, reason secevent.Reason) {
	ev := secevent.Event{
		Type: secevent.AccessDenied, Reason: reason, ClientIP: c.ClientIP(),
		Route: c.FullPath(), RequestID: server.RequestID(c),
	}
	if claims := Claims(c); claims != nil {
		ev.Subject, ev.ClientID = claims.Subject, claims.ClientID
	}
	events.Emit(c.Request.Context(), ev)
	if reason == secevent.ReasonOwnership {
		server.Fail(c, problem.New(problem.NotFound, "no such resource"))
		return
	}
	server.Fail(c, problem.New(problem.Forbidden, "not allowed"))
}
