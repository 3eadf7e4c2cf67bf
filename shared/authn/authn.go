// Package authn is the gin side of token checking, used by every service:
// a middleware that verifies the bearer token with the shared verifier and
// answers RFC 6750 401s, and a policy guard that answers 403s. Each refusal
// emits exactly one security event.
package authn

import (
	"context"

	"github.com/gin-gonic/gin"

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

const ctxClaims = "rampart.claims"

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
				c.Set(ctxClaims, claims)
				c.Next()
				return
			}
		}
		reason := tokens.ReasonOf(err)
		events.Emit(ctx, secevent.Event{
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
}

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
