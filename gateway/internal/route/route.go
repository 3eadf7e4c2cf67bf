// Package route is the gateway's route table: which public paths exist,
// which service answers them and with which methods. Anything not listed is
// 404 — deny by default — and nothing under /internal/ is ever listed.
package route

import "strings"

// Route maps a path (exact, or a prefix ending in "/") to an upstream.
type Route struct {
	// Name is the bounded metric label and log field for the route.
	Name string
	// Path is matched exactly, or as a prefix when it ends in "/".
	Path string
	// Upstream is the service name that answers.
	Upstream string
	// Methods allowed; others get 405 at the edge.
	Methods []string
	// Public routes need no access token at the edge.
	Public bool
	// Limit names the stricter rate limit of the route (LimitLogin,
	// LimitToken, LimitRegister); empty means the general limits.
	Limit string
	// Class picks the body-size limit: ClassForm for the authorization
	// server's small form posts, ClassAPI otherwise.
	Class Class
	// NoStore marks responses that carry credentials (the token endpoint):
	// the edge forces Cache-Control: no-store on them whatever the
	// upstream said (RFC 6749 §5.1).
	NoStore bool
}

// Class is a route's body-size class.
type Class uint8

// Body classes.
const (
	ClassAPI Class = iota
	ClassForm
)

// Named limits, which are also the ratelimit.exceeded reasons.
const (
	LimitLogin    = "login"
	LimitToken    = "token"
	LimitRegister = "register"
)

// Table is the public surface of Rampart (CONTRACT §2).
var Table = []Route{
	{Name: "discovery", Path: "/.well-known/", Upstream: "auth-service", Methods: []string{"GET", "HEAD"}, Public: true},
	{Name: "oauth2_token", Path: "/oauth2/token", Upstream: "auth-service", Methods: []string{"POST"}, Public: true, Limit: LimitToken, Class: ClassForm, NoStore: true},
	{Name: "oauth2", Path: "/oauth2/", Upstream: "auth-service", Methods: []string{"GET", "POST"}, Public: true, Class: ClassForm},
	{Name: "login", Path: "/login", Upstream: "auth-service", Methods: []string{"GET", "POST"}, Public: true, Limit: LimitLogin, Class: ClassForm},
	{Name: "register", Path: "/api/v1/auth/register", Upstream: "auth-service", Methods: []string{"POST"}, Public: true, Limit: LimitRegister, Class: ClassForm},
	{Name: "auth_admin", Path: "/api/v1/auth/", Upstream: "auth-service", Methods: []string{"GET", "PATCH", "POST"}},
	{Name: "users", Path: "/api/v1/users", Upstream: "user-service", Methods: []string{"GET"}},
	{Name: "users_item", Path: "/api/v1/users/", Upstream: "user-service", Methods: []string{"GET", "PATCH", "DELETE"}},
	{Name: "catalog", Path: "/api/v1/catalog", Upstream: "order-service", Methods: []string{"GET", "HEAD"}, Public: true},
	{Name: "orders", Path: "/api/v1/orders", Upstream: "order-service", Methods: []string{"GET", "POST"}},
	{Name: "orders_item", Path: "/api/v1/orders/", Upstream: "order-service", Methods: []string{"GET", "PATCH", "POST"}},
}

// Match returns the most specific route for an already normalised path:
// exact matches win over prefixes, longer prefixes over shorter ones.
func Match(table []Route, path string) (*Route, bool) {
	var best *Route
	for i := range table {
		r := &table[i]
		switch {
		case r.Path == path:
			return r, true
		case strings.HasSuffix(r.Path, "/") && strings.HasPrefix(path, r.Path) && len(path) > len(r.Path):
			if best == nil || len(r.Path) > len(best.Path) {
				best = r
			}
		}
	}
	return best, best != nil
}

// MatchesFolded reports whether path would match a route, or the internal
// prefix, if letter case were ignored. The gateway refuses such a path as a
// case trick (400) rather than answering 404: an upstream or a file system
// that folds case would read it as the route it imitates.
func MatchesFolded(table []Route, path string) bool {
	if strings.EqualFold(path, "/internal") ||
		len(path) > len("/internal/") && strings.EqualFold(path[:len("/internal/")], "/internal/") {
		return true
	}
	for i := range table {
		r := &table[i]
		if strings.EqualFold(r.Path, path) ||
			strings.HasSuffix(r.Path, "/") && len(path) > len(r.Path) && strings.EqualFold(path[:len(r.Path)], r.Path) {
			return true
		}
	}
	return false
}

// Allows reports whether the route accepts method.
func (r *Route) Allows(method string) bool {
	for _, m := range r.Methods {
		if m == method {
			return true
		}
	}
	return false
}
