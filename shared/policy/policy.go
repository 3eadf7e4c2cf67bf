// Package policy decides whether a verified token may use a route: it must
// hold one of the route's roles AND every one of its scopes. (Object
// ownership, the third part of every decision, belongs to the domain
// package that knows who owns what.)
package policy

import (
	"slices"

	"github.com/rampart-go/rampart/shared/tokens"
)

// The roles of CONTRACT §3, exactly as tokens carry them (case matters:
// "admin" is not ADMIN).
const (
	RoleAdmin   = "ADMIN"
	RoleManager = "MANAGER"
	RoleUser    = "USER"
)

// AnyRole lists every role: routes open to any signed-in user.
func AnyRole() []string { return []string{RoleUser, RoleManager, RoleAdmin} }

// Rule is what a route requires.
type Rule struct {
	// AnyRole: the token must carry at least one (empty: no role needed).
	AnyRole []string
	// AllScopes: the token must carry every one.
	AllScopes []string
}

// The access.denied reasons (CONTRACT §4) Check can give.
const (
	ReasonRole  = "role"
	ReasonScope = "scope"
)

// Decision is the outcome; Reason is the access.denied reason on refusal
// (ReasonRole or ReasonScope) and empty when Allowed.
type Decision struct {
	Allowed bool
	Reason  string
}

// Check applies r to c: roles first, then scopes, so a user without the
// role is told "role" even when scopes are also missing. It is pure: no
// I/O, no clock. A nil c (no verified token) is refused with "role" whatever
// the rule, so a route wired without authentication fails closed.
func Check(c *tokens.Claims, r Rule) Decision {
	if c == nil {
		return Decision{Reason: ReasonRole}
	}
	if len(r.AnyRole) > 0 && !slices.ContainsFunc(r.AnyRole, c.HasRole) {
		return Decision{Reason: ReasonRole}
	}
	for _, s := range r.AllScopes {
		if !c.HasScope(s) {
			return Decision{Reason: ReasonScope}
		}
	}
	return Decision{Allowed: true}
}
