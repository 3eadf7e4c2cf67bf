// Package secevent turns every security decision into one security event:
// a Prometheus counter (with the trace id as exemplar), a span event on the
// current span, and a CloudEvent on NATS subject
// rampart.security.<service>.<type>. Emit never blocks and never fails a
// request: publishing is asynchronous and bounded, and what cannot be
// published is counted as dropped.
package secevent

import "regexp"

// Type is a security event type: the closed list of CONTRACT §4.
type Type string

// The event types.
const (
	LoginSucceeded    Type = "auth.login.succeeded"
	LoginFailed       Type = "auth.login.failed"
	AccountLocked     Type = "auth.account.locked"
	ClientFailed      Type = "auth.client.failed"
	GrantInvalid      Type = "auth.grant.invalid"
	RefreshReused     Type = "auth.refresh.reused"
	TokenRevoked      Type = "auth.token.revoked" //nolint:gosec // G101: an event type name, not a credential
	TokenRejected     Type = "token.rejected"
	AccessDenied      Type = "access.denied"
	RateLimitExceeded Type = "ratelimit.exceeded"
	RequestRejected   Type = "request.rejected"
	MTLSRejected      Type = "mtls.rejected"
	AccountChanged    Type = "account.changed"
)

// Refusal reports whether an event of type t records something refused
// (a failed login, a rejected token, a denied request…), as opposed to a
// fact worth auditing (a login, a revocation, an account change).
func (t Type) Refusal() bool {
	switch t {
	case LoginSucceeded, TokenRevoked, AccountChanged:
		return false
	}
	return true
}

// Reason qualifies a Type; each Type has a bounded set (Allowed), so the
// reason label of rampart_security_events_total stays low-cardinality.
type Reason string

// The reasons.
const (
	ReasonNone Reason = ""

	ReasonBadCredentials Reason = "bad_credentials"
	ReasonUnknownAccount Reason = "unknown_account"
	ReasonDisabled       Reason = "disabled"
	ReasonLocked         Reason = "locked"
	// ReasonCSRF is a login form (or the logout confirmation form) posted
	// without its CSRF token or browser binding: a login- or logout-CSRF
	// attempt, or a form that sat open too long.
	ReasonCSRF Reason = "csrf"

	ReasonBadSecret      Reason = "bad_secret"
	ReasonUnknownClient  Reason = "unknown_client"
	ReasonBadCertificate Reason = "bad_certificate"

	ReasonCodeInvalid      Reason = "code_invalid"
	ReasonCodeReused       Reason = "code_reused"
	ReasonPKCEMismatch     Reason = "pkce_mismatch"
	ReasonRedirectMismatch Reason = "redirect_mismatch"
	ReasonClientMismatch   Reason = "client_mismatch"
	ReasonGrantExpired     Reason = "expired"
	ReasonScope            Reason = "scope"

	ReasonUser    Reason = "user"
	ReasonAdmin   Reason = "admin"
	ReasonLogout  Reason = "logout"
	ReasonErasure Reason = "erasure"

	ReasonMissing     Reason = "missing"
	ReasonMalformed   Reason = "malformed"
	ReasonSignature   Reason = "signature"
	ReasonAlgorithm   Reason = "algorithm"
	ReasonExpired     Reason = "expired"
	ReasonNotYetValid Reason = "not_yet_valid"
	ReasonIssuer      Reason = "issuer"
	ReasonAudience    Reason = "audience"
	ReasonType        Reason = "type"
	ReasonUnknownKey  Reason = "unknown_key"
	ReasonRevoked     Reason = "revoked"
	ReasonTooLarge    Reason = "too_large"
	ReasonClaims      Reason = "claims"
	ReasonBinding     Reason = "binding"

	ReasonRole      Reason = "role"
	ReasonOwnership Reason = "ownership"

	ReasonBodyTooLarge    Reason = "body_too_large"
	ReasonHeadersTooLarge Reason = "headers_too_large"
	ReasonBadPath         Reason = "bad_path"
	ReasonBadMethod       Reason = "bad_method"
	ReasonSmuggling       Reason = "smuggling"
	ReasonURLTooLong      Reason = "url_too_long"
	ReasonTooManyHeaders  Reason = "too_many_headers"
	ReasonBadHeader       Reason = "bad_header"
	ReasonUpgrade         Reason = "upgrade"

	ReasonNoCertificate      Reason = "no_certificate"
	ReasonUntrusted          Reason = "untrusted"
	ReasonIdentityNotAllowed Reason = "identity_not_allowed"

	ReasonRoles   Reason = "roles"
	ReasonCreated Reason = "created"
	ReasonEnabled Reason = "enabled"

	// ReasonOther replaces a reason that is not in its type's set.
	ReasonOther Reason = "other"
)

// reasons is the bounded reason set of each type. An empty set means the
// type takes no reason.
var reasons = map[Type][]Reason{
	LoginSucceeded: {ReasonNone},
	LoginFailed:    {ReasonBadCredentials, ReasonUnknownAccount, ReasonDisabled, ReasonLocked, ReasonCSRF},
	AccountLocked:  {ReasonNone},
	ClientFailed:   {ReasonBadSecret, ReasonUnknownClient, ReasonBadCertificate},
	GrantInvalid:   {ReasonCodeInvalid, ReasonCodeReused, ReasonPKCEMismatch, ReasonRedirectMismatch, ReasonClientMismatch, ReasonGrantExpired, ReasonScope},
	RefreshReused:  {ReasonNone},
	TokenRevoked:   {ReasonUser, ReasonAdmin, ReasonLogout, ReasonErasure},
	TokenRejected: {ReasonMissing, ReasonMalformed, ReasonSignature, ReasonAlgorithm, ReasonExpired, ReasonNotYetValid,
		ReasonIssuer, ReasonAudience, ReasonType, ReasonUnknownKey, ReasonRevoked, ReasonTooLarge, ReasonClaims, ReasonBinding},
	AccessDenied: {ReasonRole, ReasonScope, ReasonOwnership},
	RequestRejected: {ReasonBodyTooLarge, ReasonHeadersTooLarge, ReasonBadPath, ReasonBadMethod, ReasonSmuggling,
		ReasonURLTooLong, ReasonTooManyHeaders, ReasonBadHeader, ReasonUpgrade},
	MTLSRejected:   {ReasonNoCertificate, ReasonUntrusted, ReasonIdentityNotAllowed},
	AccountChanged: {ReasonRoles, ReasonDisabled, ReasonCreated, ReasonEnabled},
}

// limitName is what a rate limit may be called: its name is the reason of
// ratelimit.exceeded, and the set of limits is fixed in configuration.
var limitName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)

// Types lists every type, for documentation and tests.
func Types() []Type {
	out := make([]Type, 0, len(reasons)+1)
	for t := range reasons {
		out = append(out, t)
	}
	return append(out, RateLimitExceeded)
}

// Reasons lists t's reasons (nil for ratelimit.exceeded, whose reasons are
// limit names).
func Reasons(t Type) []Reason { return append([]Reason(nil), reasons[t]...) }

// Allowed reports whether r is a reason of t.
func Allowed(t Type, r Reason) bool {
	if t == RateLimitExceeded {
		return limitName.MatchString(string(r))
	}
	for _, x := range reasons[t] {
		if x == r {
			return true
		}
	}
	return false
}

// Severity ranks events for alerting and display.
type Severity string

// The severities.
const (
	SeverityInfo     Severity = "info"
	SeverityLow      Severity = "low"
	SeverityMedium   Severity = "medium"
	SeverityHigh     Severity = "high"
	SeverityCritical Severity = "critical"
)

// DefaultSeverity is the severity of t when an event does not say.
func DefaultSeverity(t Type) Severity {
	switch t {
	case LoginSucceeded, AccountChanged, TokenRevoked:
		return SeverityInfo
	case LoginFailed, TokenRejected, RequestRejected, RateLimitExceeded:
		return SeverityLow
	case AccessDenied, ClientFailed, GrantInvalid, AccountLocked:
		return SeverityMedium
	case RefreshReused, MTLSRejected:
		return SeverityHigh
	}
	return SeverityMedium
}
