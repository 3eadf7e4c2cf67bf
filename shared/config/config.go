// Package config reads Rampart's RAMPART_* environment once, at start-up,
// into typed values. A Reader collects every problem instead of stopping at
// the first, so an operator fixes a deployment in one pass; each problem is
// one line naming the variable. Settings that weaken security are refused
// unless RAMPART_INSECURE_DEV=1 — configuration fails closed.
package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Lookup has os.LookupEnv's signature: main passes os.LookupEnv, tests a map.
type Lookup func(string) (string, bool)

// MapLookup serves variables from m.
func MapLookup(m map[string]string) Lookup {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// InsecureDevVar is the one switch that allows insecure settings.
const InsecureDevVar = "RAMPART_INSECURE_DEV"

// Reader reads variables and accumulates problems.
type Reader struct {
	lookup   Lookup
	problems map[string]string
	warnings []string
	known    map[string]struct{}
	insecure bool
}

// NewReader returns a Reader over l.
func NewReader(l Lookup) *Reader {
	r := &Reader{lookup: l, problems: map[string]string{}, known: map[string]struct{}{}}
	r.insecure = r.Bool(InsecureDevVar, false)
	return r
}

// Error lists every configuration problem, one line per variable.
type Error struct {
	Problems []string
}

// Error implements error.
func (e *Error) Error() string { return strings.Join(e.Problems, "\n") }

func (r *Reader) get(name string) (string, bool) {
	r.known[name] = struct{}{}
	v, ok := r.lookup(name)
	if !ok {
		return "", false
	}
	v = strings.TrimSpace(v)
	return v, v != ""
}

// Fail records a problem with name; the first problem per variable wins.
func (r *Reader) Fail(name, msg string) {
	if _, ok := r.problems[name]; !ok {
		r.problems[name] = msg
	}
}

// secret reports whether a variable's value must never be echoed.
func secret(name string) bool {
	for _, s := range []string{"PASSWORD", "SECRET", "KEY", "TOKEN", "DSN", "CREDENTIALS"} {
		if strings.Contains(name, s) {
			return true
		}
	}
	return strings.HasSuffix(name, "DATABASE_URL")
}

func (r *Reader) bad(name, value, want string) {
	if secret(name) {
		r.Fail(name, want)
		return
	}
	// A URL variable whose name looks harmless (RAMPART_NATS_URL,
	// RAMPART_REDIS_URL, OTEL_EXPORTER_OTLP_ENDPOINT) may still carry a
	// password in its userinfo (or a token as the user name, nats://token@),
	// and this line goes to the logs: show the URL with its userinfo
	// masked, or, when it does not even parse and has an '@', nothing of it.
	if u, err := url.Parse(value); err == nil && u.User != nil {
		masked := *u
		masked.User = url.User("xxxxx")
		value = masked.String()
	} else if err != nil && strings.Contains(value, "@") {
		r.Fail(name, want)
		return
	}
	r.Fail(name, fmt.Sprintf("%s (got %q)", want, value))
}

// String returns the variable, or def when unset or empty.
func (r *Reader) String(name, def string) string {
	if v, ok := r.get(name); ok {
		return v
	}
	return def
}

// Required returns the variable and records a problem when it is unset.
func (r *Reader) Required(name string) string {
	v, ok := r.get(name)
	if !ok {
		r.Fail(name, "required but not set")
	}
	return v
}

// Int parses an integer within [min, max].
func (r *Reader) Int(name string, def, lo, hi int) int {
	v, ok := r.get(name)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		r.bad(name, v, fmt.Sprintf("must be an integer from %d to %d", lo, hi))
		return def
	}
	return n
}

// Duration parses a Go duration ("15s", "10m") within [min, max].
func (r *Reader) Duration(name string, def, lo, hi time.Duration) time.Duration {
	v, ok := r.get(name)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < lo || d > hi {
		r.bad(name, v, fmt.Sprintf("must be a duration from %s to %s", lo, hi))
		return def
	}
	return d
}

// Bool accepts 1, 0, true and false only: "yes" or "on" are more likely a
// mistake than a wish.
func (r *Reader) Bool(name string, def bool) bool {
	v, ok := r.get(name)
	if !ok {
		return def
	}
	switch strings.ToLower(v) {
	case "1", "true":
		return true
	case "0", "false":
		return false
	}
	r.bad(name, v, "must be 1, 0, true or false")
	return def
}

// URL parses an absolute URL whose scheme is one of schemes. It returns nil
// when the variable is unset and def is empty.
func (r *Reader) URL(name, def string, schemes ...string) *url.URL {
	v, ok := r.get(name)
	if !ok {
		v = def
	}
	if v == "" {
		return nil
	}
	u, err := url.Parse(v)
	if err != nil || u.Host == "" || !slices.Contains(schemes, u.Scheme) {
		r.bad(name, v, fmt.Sprintf("must be an absolute %s URL", strings.Join(schemes, " or ")))
		return nil
	}
	return u
}

// List splits a comma-separated value, trimming blanks and dropping empties.
func (r *Reader) List(name string, def []string) []string {
	v, ok := r.get(name)
	if !ok {
		return def
	}
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// File returns a path that must name a readable regular file (checked when
// the result is not empty).
func (r *Reader) File(name, def string) string {
	v, ok := r.get(name)
	if !ok {
		v = def
	}
	if v == "" {
		return ""
	}
	fi, err := os.Stat(v)
	switch {
	case err != nil:
		r.Fail(name, fmt.Sprintf("cannot read %s: %v", v, unwrapPathErr(err)))
	case !fi.Mode().IsRegular():
		r.Fail(name, fmt.Sprintf("%s is not a regular file", v))
	default:
		f, err := os.Open(v) //nolint:gosec // the operator names the file
		if err != nil {
			r.Fail(name, fmt.Sprintf("cannot read %s: %v", v, unwrapPathErr(err)))
			return v
		}
		_ = f.Close()
	}
	return v
}

func unwrapPathErr(err error) error {
	if pe, ok := err.(*os.PathError); ok { //nolint:errorlint // os.Stat returns *PathError directly
		return pe.Err
	}
	return err
}

// CIDRs parses a comma-separated list of CIDR prefixes.
func (r *Reader) CIDRs(name string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range r.List(name, nil) {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			r.bad(name, s, "must be a comma-separated list of CIDR prefixes")
			return nil
		}
		out = append(out, p.Masked())
	}
	return out
}

// Addr parses host:port with a port from 0 to 65535.
func (r *Reader) Addr(name, def string) string {
	v, ok := r.get(name)
	if !ok {
		v = def
	}
	_, port, err := net.SplitHostPort(v)
	if err == nil {
		var n int
		n, err = strconv.Atoi(port)
		if err == nil && (n < 0 || n > 65535) {
			err = fmt.Errorf("port out of range")
		}
	}
	if err != nil {
		r.bad(name, v, "must be host:port")
	}
	return v
}

// Insecure refuses an insecure setting of name unless RAMPART_INSECURE_DEV=1,
// in which case it is allowed and recorded in Warnings.
func (r *Reader) Insecure(name string, insecure bool, what string) {
	if !insecure {
		return
	}
	if r.insecure {
		r.warnings = append(r.warnings, fmt.Sprintf("%s: %s allowed by %s=1", name, what, InsecureDevVar))
		return
	}
	r.Fail(name, fmt.Sprintf("%s refused (set %s=1 for local development only)", what, InsecureDevVar))
}

// InsecureDev reports whether RAMPART_INSECURE_DEV=1.
func (r *Reader) InsecureDev() bool { return r.insecure }

// Err returns nil, or an *Error listing every problem sorted by variable.
func (r *Reader) Err() error {
	if len(r.problems) == 0 {
		return nil
	}
	names := make([]string, 0, len(r.problems))
	for n := range r.problems {
		names = append(names, n)
	}
	sort.Strings(names)
	e := &Error{}
	for _, n := range names {
		e.Problems = append(e.Problems, n+": "+r.problems[n])
	}
	return e
}

// Warnings lists insecure settings that RAMPART_INSECURE_DEV=1 allowed.
func (r *Reader) Warnings() []string { return r.warnings }

// Known returns every variable name read through this Reader, sorted.
func (r *Reader) Known() []string {
	out := make([]string, 0, len(r.known))
	for k := range r.known {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
