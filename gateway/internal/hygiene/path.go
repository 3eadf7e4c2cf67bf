// Package hygiene holds the gateway's request checks that run before
// routing: the canonical-path rule, header limits and framing checks, and
// the client-address rule. Each check is a pure function of the request so
// that it can be table-tested and fuzzed without a server.
package hygiene

import (
	"unicode/utf8"
)

// Path refusals. They all map to request.rejected/bad_path; the finer
// reason is for tests and debug logs only.
const (
	PathOK = iota
	PathNotOriginForm
	PathBadByte
	PathBadEscape
	PathNeedlessEscape
	PathEncodedDelimiter
	PathBadUTF8
	PathEmptySegment
	PathDotSegment
)

// CanonicalPath checks the path part of a request target exactly as the
// client sent it (RequestURI up to '?') and returns the decoded path.
//
// The rule is "one spelling per resource": a path is accepted only when it
// is already in the canonical form every upstream would also read it in,
// so that the gateway and a service can never disagree about which
// resource a request names (the family of bugs behind CVE-2021-41773,
// Tomcat's "/..;/" and nginx's merge_slashes). Concretely the raw path
//
//   - is in origin form (starts with "/"; no absolute form, no "*");
//   - contains only RFC 3986 pchar bytes and "/", with no ";" (path
//     parameters, the Tomcat bypass) — so no backslash, NUL, control,
//     space or raw non-ASCII byte;
//   - uses percent-escapes only where one is needed, with upper-case hex
//     (RFC 3986 §6.2.2.1): an escaped unreserved byte such as %2e or %41 is
//     a second spelling of a plain one and is refused, as are escaped "/",
//     "\", "%" (double encoding), ";", controls and NUL;
//   - decodes to valid, shortest-form UTF-8 (overlong "%c0%af" is refused);
//   - has no empty segment ("//", a trailing "/") and no segment made only
//     of dots ("." and "..", and "..." which some file systems fold).
//
// It allocates only when the path contains escapes.
func CanonicalPath(raw string) (string, int) {
	if raw == "" || raw[0] != '/' {
		return "", PathNotOriginForm
	}
	escapes := false
	segStart := 1
	dotsOnly := true
	for i := 1; i <= len(raw); i++ {
		if i == len(raw) || raw[i] == '/' {
			// End of a segment: raw[segStart:i].
			if i == segStart {
				if i == 1 && len(raw) == 1 {
					return raw, PathOK // "/" itself
				}
				return "", PathEmptySegment
			}
			if dotsOnly {
				return "", PathDotSegment
			}
			segStart, dotsOnly = i+1, true
			continue
		}
		c := raw[i]
		switch {
		case c == '%':
			if i+2 >= len(raw) {
				return "", PathBadEscape
			}
			h, okH := unhex(raw[i+1])
			l, okL := unhex(raw[i+2])
			if !okH || !okL || isLowerHex(raw[i+1]) || isLowerHex(raw[i+2]) {
				return "", PathBadEscape
			}
			b := h<<4 | l
			switch {
			case b == '/' || b == '\\' || b == '%' || b == ';':
				return "", PathEncodedDelimiter
			case b < 0x20 || b == 0x7f:
				return "", PathBadByte
			case b < 0x80 && unreserved(b):
				return "", PathNeedlessEscape
			case b < 0x80 && pathChar(b):
				// A sub-delim or ":" / "@" spelled with an escape: also a
				// second spelling of the plain byte.
				return "", PathNeedlessEscape
			}
			escapes = true
			dotsOnly = false
			i += 2
		case c == '.':
			// dotsOnly stays as it is.
		case c < 0x80 && pathChar(c):
			dotsOnly = false
		default:
			return "", PathBadByte
		}
	}
	if !escapes {
		return raw, PathOK
	}
	dec := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		if raw[i] == '%' {
			h, _ := unhex(raw[i+1])
			l, _ := unhex(raw[i+2])
			dec = append(dec, h<<4|l)
			i += 2
			continue
		}
		dec = append(dec, raw[i])
	}
	if !utf8.Valid(dec) {
		return "", PathBadUTF8
	}
	return string(dec), PathOK
}

// unreserved is RFC 3986 §2.3: ALPHA / DIGIT / "-" / "." / "_" / "~".
func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// pathChar is RFC 3986 pchar without pct-encoded and without ";" (see
// CanonicalPath): unreserved, the sub-delims other than ";", ":" and "@".
func pathChar(c byte) bool {
	if unreserved(c) {
		return true
	}
	switch c {
	case '!', '$', '&', '\'', '(', ')', '*', '+', ',', '=', ':', '@':
		return true
	}
	return false
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func isLowerHex(c byte) bool { return 'a' <= c && c <= 'f' }

// SplitTarget returns the path and query of a request target as sent.
// A '#' (fragment) never belongs in a request target; it is reported as
// bad so the caller refuses the request.
func SplitTarget(target string) (path, query string, ok bool) {
	for i := 0; i < len(target); i++ {
		switch target[i] {
		case '?':
			return target[:i], target[i+1:], validQuery(target[i+1:])
		case '#':
			return "", "", false
		}
	}
	return target, "", true
}

// validQuery allows RFC 3986 query bytes (pchar, "/", "?") and escapes;
// raw spaces, controls, non-ASCII bytes and '#' are refused. The query's
// meaning is the upstream's business; the gateway only keeps bytes out
// that parsers are known to disagree on.
func validQuery(q string) bool {
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case c == '%':
			if i+2 >= len(q) {
				return false
			}
			if _, ok := unhex(q[i+1]); !ok {
				return false
			}
			if _, ok := unhex(q[i+2]); !ok {
				return false
			}
			i += 2
		case c == '/' || c == '?' || c == ';':
		case c < 0x80 && pathChar(c):
		default:
			return false
		}
	}
	return true
}
