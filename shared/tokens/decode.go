package tokens

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

// object decodes one JSON object into its members, refusing what
// encoding/json lets through silently. Duplicate member names: RFC 7515 §4
// and RFC 7519 §4 allow a parser to refuse them, and two parsers in a chain
// disagreeing on which duplicate wins is a classic JWT bypass. Invalid UTF-8:
// encoding/json would replace it, so the bytes we verified would not be the
// text we act on. Member names are matched exactly afterwards (a map, not
// struct tags), so "ISS" is an unknown claim, never the issuer.
func object(data []byte) (map[string]json.RawMessage, error) {
	if !utf8.Valid(data) {
		return nil, errors.New("not UTF-8")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("not a JSON object") // the literal null
	}
	// The map holds one entry per distinct (unescaped) name, so fewer
	// entries than members in the text means a name was repeated, even
	// when spelt differently ("alg" and "\u0061lg").
	if members(data) != len(m) {
		return nil, errors.New("duplicate member name")
	}
	return m, nil
}

// members counts the members of the JSON object data, which json.Unmarshal
// has already accepted: the commas at nesting depth one, outside strings,
// plus one unless the object is empty. One pass, no allocation: cheaper
// than a token-by-token json.Decoder, which cost a fifth of Verify.
func members(data []byte) int {
	depth, commas, nonEmpty, inString, escaped := 0, 0, false, false, false
	for _, c := range data {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
			nonEmpty = nonEmpty || depth == 1
		case '{', '[':
			depth++
		case '}', ']':
			depth--
		case ',':
			if depth == 1 {
				commas++
			}
		}
	}
	if !nonEmpty {
		return 0
	}
	return commas + 1
}

// header is the part of the JOSE header we act on. jku, x5u, jwk and x5c
// are deliberately not read: a token never gets to name its own key.
type header struct {
	alg, typ, kid string
	crit          bool
}

func parseHeader(b []byte) (header, error) {
	m, err := object(b)
	if err != nil {
		return header{}, err
	}
	var h header
	if h.alg, err = str(m, "alg"); err != nil {
		return header{}, err
	}
	if h.typ, err = str(m, "typ"); err != nil {
		return header{}, err
	}
	if h.kid, err = str(m, "kid"); err != nil {
		return header{}, err
	}
	// Any crit member at all, even an empty or null one, is refused: we
	// understand no extension, and RFC 7515 §4.1.11 forbids an empty list.
	_, h.crit = m["crit"]
	return h, nil
}

// parseClaims decodes a verified payload into Claims, plus the registered
// claims golang-jwt's validator checks. Every claim we use must have its
// JSON type; iss, sub, aud, exp, iat and jti must be present.
func parseClaims(b []byte) (*Claims, jwt.RegisteredClaims, error) {
	var rc jwt.RegisteredClaims
	m, err := object(b)
	if err != nil {
		return nil, rc, err
	}
	c := &Claims{}
	var scope string
	for _, f := range []struct {
		name string
		dst  *string
	}{
		{"iss", &c.Issuer}, {"sub", &c.Subject}, {"jti", &c.ID},
		{"client_id", &c.ClientID}, {"scope", &scope},
	} {
		if *f.dst, err = str(m, f.name); err != nil {
			return nil, rc, err
		}
	}
	if c.Audience, err = audience(m["aud"]); err != nil {
		return nil, rc, err
	}
	var exp, iat, nbf *jwt.NumericDate
	if exp, err = numericDate(m, "exp"); err != nil {
		return nil, rc, err
	}
	if iat, err = numericDate(m, "iat"); err != nil {
		return nil, rc, err
	}
	if nbf, err = numericDate(m, "nbf"); err != nil {
		return nil, rc, err
	}
	if c.Roles, err = stringList(m, "roles"); err != nil {
		return nil, rc, err
	}
	if c.CertThumbprint, err = nested(m, "cnf", "x5t#S256"); err != nil {
		return nil, rc, err
	}
	if c.Actor, err = nested(m, "act", "sub"); err != nil {
		return nil, rc, err
	}

	var missing []string
	for _, r := range []struct {
		name string
		ok   bool
	}{
		{"iss", c.Issuer != ""}, {"sub", c.Subject != ""}, {"aud", len(c.Audience) > 0},
		{"exp", exp != nil}, {"iat", iat != nil}, {"jti", c.ID != ""},
	} {
		if !r.ok {
			missing = append(missing, r.name)
		}
	}
	if len(missing) > 0 {
		return nil, rc, fmt.Errorf("required claims missing: %s", strings.Join(missing, ", "))
	}

	c.Scopes = strings.Fields(scope)
	c.ExpiresAt, c.IssuedAt = exp.Time, iat.Time
	if nbf != nil {
		c.NotBefore = nbf.Time
	}
	rc = jwt.RegisteredClaims{
		Issuer: c.Issuer, Subject: c.Subject, Audience: jwt.ClaimStrings(c.Audience), ID: c.ID,
		ExpiresAt: exp, IssuedAt: iat, NotBefore: nbf,
	}
	return c, rc, nil
}

// str returns member name as a string; "" when absent. Any other JSON type,
// null included, is an error: a claim we rely on is either right or the
// token is refused.
func str(m map[string]json.RawMessage, name string) (string, error) {
	raw, ok := m[name]
	if !ok {
		return "", nil
	}
	return jsonString(name, raw)
}

// jsonString decodes raw, a value from a document json.Unmarshal accepted,
// as a string; any other JSON type is an error.
func jsonString(name string, raw json.RawMessage) (string, error) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", fmt.Errorf("%s is not a string", name)
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		// No escapes: the bytes between the quotes are the string (the
		// document is valid JSON and valid UTF-8 already).
		return string(raw[1 : len(raw)-1]), nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return s, nil
}

// stringList returns member name as an array of strings; nil when absent.
func stringList(m map[string]json.RawMessage, name string) ([]string, error) {
	raw, ok := m[name]
	if !ok {
		return nil, nil
	}
	return stringArray(name, raw)
}

func stringArray(name string, raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || raw[0] != '[' {
		return nil, fmt.Errorf("%s is not an array", name)
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	out := make([]string, 0, len(items))
	for _, it := range items {
		s, err := jsonString(name+" item", it)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// audience decodes aud, a string or an array of strings (RFC 7519 §4.1.3).
// Empty strings are dropped so that "aud": "" counts as missing.
func audience(raw json.RawMessage) ([]string, error) {
	if raw == nil {
		return nil, nil
	}
	var aud []string
	if len(raw) > 0 && raw[0] == '"' {
		s, err := jsonString("aud", raw)
		if err != nil {
			return nil, err
		}
		aud = []string{s}
	} else {
		var err error
		if aud, err = stringArray("aud", raw); err != nil {
			return nil, err
		}
	}
	return slicesDeleteEmpty(aud), nil
}

func slicesDeleteEmpty(s []string) []string {
	out := s[:0]
	for _, v := range s {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}

// maxNumericDate is 9999-12-31T23:59:59Z: anything later is not a date a
// real issuer writes, and keeping seconds far below 2^63 keeps time.Unix
// exact.
const maxNumericDate = 253402300799

// numericDate returns member name as a NumericDate (RFC 7519 §2: seconds,
// fractions allowed); nil when absent. Strings, negatives and absurd values
// are errors.
func numericDate(m map[string]json.RawMessage, name string) (*jwt.NumericDate, error) {
	raw, ok := m[name]
	if !ok {
		return nil, nil
	}
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return nil, fmt.Errorf("%s is not a number", name)
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || f < 0 || f > maxNumericDate || math.IsNaN(f) {
		return nil, fmt.Errorf("%s is not a valid date", name)
	}
	sec, frac := math.Modf(f)
	return &jwt.NumericDate{Time: time.Unix(int64(sec), int64(frac*1e9))}, nil
}

// nested returns the string member inner of the object member outer ("" when
// outer is absent): cnf.x5t#S256 and act.sub. When outer is present, inner
// must be a non-empty string: a cnf with only a confirmation method we do
// not enforce (DPoP's jkt, say) must not pass as an unbound bearer token,
// and an act without a sub names no actor.
func nested(m map[string]json.RawMessage, outer, inner string) (string, error) {
	raw, ok := m[outer]
	if !ok {
		return "", nil
	}
	if len(raw) == 0 || raw[0] != '{' {
		return "", fmt.Errorf("%s is not an object", outer)
	}
	o, err := object(raw)
	if err != nil {
		return "", fmt.Errorf("%s: %w", outer, err)
	}
	s, err := str(o, inner)
	if err != nil {
		return "", fmt.Errorf("%s: %w", outer, err)
	}
	if s == "" {
		return "", fmt.Errorf("%s has no %s", outer, inner)
	}
	return s, nil
}
