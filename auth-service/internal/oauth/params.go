package oauth

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
)

// Params are request parameters with each name present at most once: RFC
// 6749 §3.1 and §3.2 say parameters "MUST NOT be included more than once",
// and a repeated one is how parameter-pollution attacks make two parsers
// disagree about a request.
type Params map[string]string

// Get returns the parameter (empty when absent).
func (p Params) Get(name string) string { return p[name] }

// Limits on what a parameter set may hold.
const (
	maxFormBytes  = 16 << 10
	maxParams     = 32
	maxParamBytes = 4096
)

// errParams is every malformed-parameters failure; the message is safe to
// return as error_description.
type errParams string

func (e errParams) Error() string { return string(e) }

// ParseValues checks a decoded query or form: no repeated names, bounded
// count and sizes, valid UTF-8, no control characters.
func ParseValues(v url.Values) (Params, error) {
	if len(v) > maxParams {
		return nil, errParams("too many parameters")
	}
	p := make(Params, len(v))
	for k, vs := range v {
		if len(vs) != 1 {
			return nil, errParams("parameter " + safeName(k) + " is repeated")
		}
		val := vs[0]
		if len(k) > 64 || len(val) > maxParamBytes {
			return nil, errParams("parameter " + safeName(k) + " is too long")
		}
		if !utf8.ValidString(k) || !utf8.ValidString(val) || hasControl(k) || hasControl(val) {
			return nil, errParams("parameter " + safeName(k) + " is not valid text")
		}
		p[k] = val
	}
	return p, nil
}

// ParseQuery parses r's query string like ParseValues. It parses the raw
// query itself: url.URL.Query drops the pairs it cannot parse (a ";"
// separator, a bad escape) without a word, so "state=a;b" would arrive as
// no state and a repeated parameter could hide behind a malformed pair.
func ParseQuery(r *http.Request) (Params, error) {
	v, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, errParams("the query string is not valid form encoding")
	}
	return ParseValues(v)
}

// ParseForm reads a POST body that must be application/x-www-form-urlencoded
// (RFC 6749 §3.2), bounded in size, and checks it like ParseValues. Query
// parameters on a POST to the token endpoint are refused rather than merged.
func ParseForm(r *http.Request) (Params, error) {
	if r.URL.RawQuery != "" {
		return nil, errParams("parameters must be sent in the request body")
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, errParams("the body must be application/x-www-form-urlencoded")
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxFormBytes+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errParams("the body is too large")
		}
		return nil, errParams("the body could not be read")
	}
	if len(body) > maxFormBytes {
		return nil, errParams("the body is too large")
	}
	return ParseFormBody(string(body))
}

// ParseFormBody parses an urlencoded body (the fuzzed part of ParseForm).
func ParseFormBody(body string) (Params, error) {
	v, err := url.ParseQuery(body)
	if err != nil {
		return nil, errParams("the body is not valid form encoding")
	}
	return ParseValues(v)
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// safeName keeps an attacker-chosen parameter name out of responses unless
// it is short and plain.
func safeName(k string) string {
	plain := func(r rune) bool {
		return r == '_' || r == '-' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
	}
	if len(k) > 40 || strings.ContainsFunc(k, func(r rune) bool { return !plain(r) }) {
		return "(name withheld)"
	}
	return k
}

// oauthError is an RFC 6749 §5.2 error response.
type oauthError struct {
	Code        string `json:"error"`
	Description string `json:"error_description,omitempty"`
	status      int
}

// The errors the token, revocation and introspection endpoints return.
func errInvalidRequest(desc string) *oauthError {
	return &oauthError{Code: "invalid_request", Description: desc, status: http.StatusBadRequest}
}

func errInvalidClient(desc string) *oauthError {
	return &oauthError{Code: "invalid_client", Description: desc, status: http.StatusUnauthorized}
}

func errInvalidGrant(desc string) *oauthError {
	return &oauthError{Code: "invalid_grant", Description: desc, status: http.StatusBadRequest}
}

func errUnauthorizedClient(desc string) *oauthError {
	return &oauthError{Code: "unauthorized_client", Description: desc, status: http.StatusBadRequest}
}

func errUnsupportedGrant(desc string) *oauthError {
	return &oauthError{Code: "unsupported_grant_type", Description: desc, status: http.StatusBadRequest}
}

func errInvalidScope(desc string) *oauthError {
	return &oauthError{Code: "invalid_scope", Description: desc, status: http.StatusBadRequest}
}

func errInvalidTarget(desc string) *oauthError {
	return &oauthError{Code: "invalid_target", Description: desc, status: http.StatusBadRequest}
}

func errServer() *oauthError {
	return &oauthError{Code: "server_error", Description: "the request could not be completed", status: http.StatusInternalServerError}
}

// writeError sends e. invalid_client with HTTP authentication attempted gets
// the WWW-Authenticate challenge RFC 6749 §5.2 asks for.
func writeError(c *gin.Context, e *oauthError) {
	noStore(c)
	if e.status == http.StatusUnauthorized {
		c.Header("WWW-Authenticate", `Basic realm="rampart", charset="UTF-8"`)
	}
	c.AbortWithStatusJSON(e.status, e)
}
