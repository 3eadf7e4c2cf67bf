// Package problem is Rampart's one error vocabulary: a domain error type
// with a machine code, one table mapping codes to HTTP statuses, and RFC 9457
// problem+json rendering. Handlers and domain packages return *Error; one
// place (server.Fail) renders it, with the request id, so a client's error
// and the operator's log line can be matched.
package problem

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// Code is a machine-readable error code. Every code maps to exactly one
// HTTP status (Status).
type Code string

// The codes, with their statuses.
const (
	Invalid          Code = "invalid"            // 400
	Unauthenticated  Code = "unauthenticated"    // 401
	Forbidden        Code = "forbidden"          // 403
	NotFound         Code = "not_found"          // 404
	MethodNotAllowed Code = "method_not_allowed" // 405
	Conflict         Code = "conflict"           // 409
	TooLarge         Code = "too_large"          // 413
	URITooLong       Code = "uri_too_long"       // 414
	Unprocessable    Code = "unprocessable"      // 422
	RateLimited      Code = "rate_limited"       // 429
	HeadersTooLarge  Code = "headers_too_large"  // 431
	Internal         Code = "internal"           // 500
	BadGateway       Code = "bad_gateway"        // 502
	Unavailable      Code = "unavailable"        // 503
	Timeout          Code = "timeout"            // 504
)

var statuses = map[Code]int{
	Invalid:          http.StatusBadRequest,
	Unauthenticated:  http.StatusUnauthorized,
	Forbidden:        http.StatusForbidden,
	NotFound:         http.StatusNotFound,
	MethodNotAllowed: http.StatusMethodNotAllowed,
	Conflict:         http.StatusConflict,
	TooLarge:         http.StatusRequestEntityTooLarge,
	URITooLong:       http.StatusRequestURITooLong,
	Unprocessable:    http.StatusUnprocessableEntity,
	RateLimited:      http.StatusTooManyRequests,
	HeadersTooLarge:  http.StatusRequestHeaderFieldsTooLarge,
	Internal:         http.StatusInternalServerError,
	BadGateway:       http.StatusBadGateway,
	Unavailable:      http.StatusServiceUnavailable,
	Timeout:          http.StatusGatewayTimeout,
}

// Status returns the HTTP status of code; an unknown code is a 500, so a
// typo can never turn a failure into a success.
func Status(code Code) int {
	if s, ok := statuses[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// FieldError names one invalid input field.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error is the domain error type.
type Error struct {
	Code Code
	// Message is safe to show to the client.
	Message string
	// Fields lists per-field validation failures.
	Fields []FieldError
	// Err is the internal cause: logged, never shown.
	Err error
}

// Error implements error.
func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Unwrap returns the internal cause.
func (e *Error) Unwrap() error { return e.Err }

// New returns an error with a code and a client-safe message.
func New(code Code, msg string) *Error { return &Error{Code: code, Message: msg} }

// Errorf is New with formatting. The result must be safe to show.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrap keeps err as the internal cause behind a client-safe message.
func Wrap(code Code, msg string, err error) *Error { return &Error{Code: code, Message: msg, Err: err} }

// From converts any error into an *Error: one found in err's chain keeps its
// code; anything else is Internal with a generic message and err as cause.
func From(err error) *Error {
	var pe *Error
	if errors.As(err, &pe) {
		return pe
	}
	return &Error{Code: Internal, Message: "internal error", Err: err}
}

// Problem is an RFC 9457 problem details body.
type Problem struct {
	Type      string       `json:"type"`
	Title     string       `json:"title"`
	Status    int          `json:"status"`
	Detail    string       `json:"detail,omitempty"`
	Instance  string       `json:"instance,omitempty"`
	RequestID string       `json:"request_id,omitempty"`
	Errors    []FieldError `json:"errors,omitempty"`
}

// TypeBase prefixes every problem type URI. The URIs identify the code
// (RFC 9457 §3.1.1 says a type should be a stable identifier, which
// about:blank is not once clients branch on it); they need not resolve.
const TypeBase = "https://rampart.dev/problems/"

// Problem renders e as a problem body. Internal errors get a generic detail
// whatever Message says: the cause is for the logs.
func (e *Error) Problem(requestID, instance string) Problem {
	status := Status(e.Code)
	detail := e.Message
	if status >= 500 && e.Code == Internal {
		detail = "internal error"
	}
	return Problem{
		Type:      TypeBase + string(e.Code),
		Title:     http.StatusText(status),
		Status:    status,
		Detail:    detail,
		Instance:  instance,
		RequestID: requestID,
		Errors:    e.Fields,
	}
}

// ContentType is the RFC 9457 media type.
const ContentType = "application/problem+json"

// Write sends p with its status. Problems are never cached and never
// sniffed as another type.
func Write(w http.ResponseWriter, p Problem) {
	h := w.Header()
	h.Set("Content-Type", ContentType)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}
