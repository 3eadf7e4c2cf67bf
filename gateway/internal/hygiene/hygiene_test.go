package hygiene

import (
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestCanonicalPath: the rule's verdict for each kind of spelling.
func TestCanonicalPath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		raw, want string
		verdict   int
	}{
		{"/", "/", PathOK},
		{"/api/v1/catalog", "/api/v1/catalog", PathOK},
		{"/api/v1/users/caf%C3%A9", "/api/v1/users/café", PathOK},
		{"/a%20b", "/a b", PathOK},
		{"/a%3Fb", "/a?b", PathOK},
		{"api", "", PathNotOriginForm},
		{"", "", PathNotOriginForm},
		{"*", "", PathNotOriginForm},
		{"//a", "", PathEmptySegment},
		{"/a/", "", PathEmptySegment},
		{"/a/./b", "", PathDotSegment},
		{"/a/..", "", PathDotSegment},
		{"/a/...", "", PathDotSegment},
		{"/a/.b", "/a/.b", PathOK}, // a dot file is a name, not a dot segment
		{"/a%2e%2e", "", PathBadEscape},
		{"/a/%2E%2E", "", PathNeedlessEscape},
		{"/a%2Fb", "", PathEncodedDelimiter},
		{"/a%5Cb", "", PathEncodedDelimiter},
		{"/a%25", "", PathEncodedDelimiter},
		{"/a%3B", "", PathEncodedDelimiter},
		{"/a%00", "", PathBadByte},
		{"/a%7F", "", PathBadByte},
		{"/a%2", "", PathBadEscape},
		{"/a%", "", PathBadEscape},
		{"/a%GG", "", PathBadEscape},
		{"/a\\b", "", PathBadByte},
		{"/a;b", "", PathBadByte},
		{"/a b", "", PathBadByte},
		{"/caf\xc3\xa9", "", PathBadByte},
		{"/a%C0%AF", "", PathBadUTF8},
		{"/a%E0%80%AE", "", PathBadUTF8},
		{"/a%41", "", PathNeedlessEscape},
		{"/a%40", "", PathNeedlessEscape},
	}
	for _, tc := range tests {
		got, v := CanonicalPath(tc.raw)
		if v != tc.verdict || got != tc.want {
			t.Errorf("CanonicalPath(%q) = %q, %d; want %q, %d", tc.raw, got, v, tc.want, tc.verdict)
		}
	}
}

// TestCanonicalPathDoesNotAllocateForPlainPaths: the common case is free.
func TestCanonicalPathDoesNotAllocateForPlainPaths(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { CanonicalPath("/api/v1/orders/0b9c7f4e-5b7a-4c1e-9a53-3d2b4f1f0a11") }); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

// checkCanonical asserts the invariants every accepted path has; the fuzz
// target runs it on arbitrary input.
func checkCanonical(t *testing.T, raw string) {
	got, v := CanonicalPath(raw)
	if v != PathOK {
		if got != "" {
			t.Fatalf("refused %q but returned %q", raw, got)
		}
		return
	}
	if !strings.HasPrefix(got, "/") || !utf8.ValidString(got) {
		t.Fatalf("accepted %q as %q: not an absolute UTF-8 path", raw, got)
	}
	if got != "/" {
		for _, seg := range strings.Split(got[1:], "/") {
			if seg == "" || strings.Trim(seg, ".") == "" {
				t.Fatalf("accepted %q with segment %q", raw, seg)
			}
		}
	}
	if strings.ContainsAny(got, "\\\x00;%") {
		t.Fatalf("accepted %q decoding to %q", raw, got)
	}
	for _, c := range []byte(got) {
		if c < 0x20 || c == 0x7f {
			t.Fatalf("accepted %q with a control byte", raw)
		}
	}
	// net/url reads the same path out of the same bytes: gateway and
	// upstream cannot disagree.
	u, err := url.ParseRequestURI(raw)
	if err != nil || u.Path != got {
		t.Fatalf("accepted %q as %q, net/url reads %q (%v)", raw, got, u.Path, err)
	}
	// Idempotent on the plain spelling when nothing was escaped.
	if got == raw {
		if again, v := CanonicalPath(got); v != PathOK || again != got {
			t.Fatalf("not idempotent on %q", raw)
		}
	}
}

// FuzzCanonicalPath: no input panics, and every accepted path keeps the
// invariants of checkCanonical.
func FuzzCanonicalPath(f *testing.F) {
	for _, s := range []string{"/", "/api/v1/catalog", "/a/../b", "/a%2e%2e/b", "/a%2Fb", "//a", "/a\\b", "/a%00",
		"/a%C0%AF", "/caf%C3%A9", "/a;b", "/A/B", "/a%252e", "/%E0%80%AE", "/a%2", "/ab%"} {
		f.Add(s)
	}
	f.Fuzz(checkCanonical)
}

// TestFramingVerdicts: each framing rule on a whole head.
func TestFramingVerdicts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, stream string
		want         []int
	}{
		{"plain GET", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", []int{FrameOK}},
		{"leading empty line", "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", []int{FrameOK}},
		{"CL and TE", "POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", []int{FrameCLAndTE}},
		{"case-folded names", "POST / HTTP/1.1\r\ncontent-length: 1\r\nTRANSFER-ENCODING: chunked\r\n\r\n", []int{FrameCLAndTE}},
		{"duplicate CL", "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", []int{FrameDuplicateCL}},
		{"CL list", "POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\nx", []int{FrameDuplicateCL}},
		{"obs-fold", "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", []int{FrameObsFold}},
		{"bare LF", "GET / HTTP/1.1\nHost: a\r\n\r\n", []int{FrameBareLF}},
		{"stray CR", "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", []int{FrameBareLF}},
		{"TE on 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", []int{FrameBadTE}},
		{"TE list", "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", []int{FrameBadTE}},
		{"two TE fields", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", []int{FrameBadTE}},
		{"sized body then request", "POST / HTTP/1.1\r\nContent-Length: 14\r\n\r\nX: 1\r\nY: 2\r\n\r\nGET / HTTP/1.1\r\n\r\n", []int{FrameOK, FrameOK}},
		{"16-digit chunk size then request", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0000000000000002\r\nab\r\n0\r\n\r\nGET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", []int{FrameOK, FrameObsFold}},
		{"20-digit Content-Length then request", "POST / HTTP/1.1\r\nContent-Length: 00000000000000000004\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", []int{FrameOK, FrameObsFold}},
		{"chunked body with extension and trailer then request", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\na\r\n\r\n0\r\nT: 1\r\n\r\nGET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", []int{FrameOK, FrameObsFold}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// Whole, and one byte at a time: the verdicts must not depend
			// on how the bytes arrive.
			for _, step := range []int{len(tc.stream), 1, 7} {
				var f Framing
				for i := 0; i < len(tc.stream); i += step {
					f.Feed([]byte(tc.stream[i:min(i+step, len(tc.stream))]))
				}
				for i, want := range tc.want {
					if got := f.Next(); got != want {
						t.Fatalf("step %d: verdict %d = %d, want %d", step, i, got, want)
					}
				}
			}
		})
	}
}

// FuzzFraming: arbitrary streams never panic, and the verdicts do not
// depend on how the stream is split into reads.
func FuzzFraming(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;e\r\nhello\r\n0\r\nX: y\r\n\r\nGET / HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab",
	} {
		f.Add(s, uint8(1))
		f.Add(s, uint8(5))
	}
	f.Fuzz(func(t *testing.T, stream string, step uint8) {
		s := max(1, int(step))
		var whole, split Framing
		whole.Feed([]byte(stream))
		for i := 0; i < len(stream); i += s {
			split.Feed([]byte(stream[i:min(i+s, len(stream))]))
		}
		for range 64 {
			a, b := whole.Next(), split.Next()
			if a != b {
				t.Fatalf("verdicts differ by split: %d vs %d", a, b)
			}
		}
	})
}

// FuzzHeaderHygiene: whatever header set a client sends, no identity or
// routing header survives StripIdentityHeaders... (lives in httpapi); here
// CheckHeaders must never panic and must refuse every upgrade request.
func FuzzHeaderHygiene(f *testing.F) {
	f.Add("Connection", "Upgrade", "Upgrade", "websocket")
	f.Add("connection", "keep-alive, upgrade", "X-A", "b")
	f.Add("Http2-Settings", "AAMA", "Host", "x")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		h := http.Header{}
		h.Add(k1, v1)
		h.Add(k2, v2)
		v := CheckHeaders(h, HeaderLimits{MaxCount: 100, MaxBytes: 16 << 10})
		if len(h.Values("Upgrade")) > 0 && v == HeaderOK {
			t.Fatalf("Upgrade passed: %v", h)
		}
		for _, c := range h.Values("Connection") {
			for _, tok := range strings.Split(c, ",") {
				if strings.EqualFold(strings.Trim(tok, " \t"), "upgrade") && v == HeaderOK {
					t.Fatalf("Connection: upgrade passed: %v", h)
				}
			}
		}
	})
}

// TestClientIP: X-Forwarded-For is read only from trusted peers, from the
// right, and a malformed hop stops the walk.
func TestClientIP(t *testing.T) {
	t.Parallel()
	trusted := ClientIP{Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}}
	tests := []struct {
		name   string
		c      ClientIP
		remote string
		xff    []string
		want   string
	}{
		{"no trusted proxies: the peer", ClientIP{}, "192.0.2.1:5000", []string{"203.0.113.1"}, "192.0.2.1"},
		{"untrusted peer: the peer", trusted, "192.0.2.1:5000", []string{"203.0.113.1"}, "192.0.2.1"},
		{"trusted peer: the right-most untrusted hop", trusted, "10.0.0.2:5000", []string{"198.51.100.1, 203.0.113.1, 10.0.0.9"}, "203.0.113.1"},
		{"several fields are one list", trusted, "10.0.0.2:5000", []string{"198.51.100.1", "203.0.113.7"}, "203.0.113.7"},
		{"a malformed hop stops the walk", trusted, "10.0.0.2:5000", []string{"198.51.100.1, garbage, 10.0.0.3"}, "10.0.0.3"},
		{"all hops trusted: the left-most", trusted, "10.0.0.2:5000", []string{"10.0.0.7, 10.0.0.3"}, "10.0.0.7"},
		{"IPv6 peer", trusted, "[::1]:5000", []string{"2001:db8::1"}, "2001:db8::1"},
		{"no header from a trusted peer: the peer", trusted, "10.0.0.2:5000", nil, "10.0.0.2"},
	}
	for _, tc := range tests {
		r := &http.Request{RemoteAddr: tc.remote, Header: http.Header{}}
		for _, v := range tc.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got, _ := tc.c.Resolve(r); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func BenchmarkCanonicalPath(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		CanonicalPath("/api/v1/orders/0b9c7f4e-5b7a-4c1e-9a53-3d2b4f1f0a11")
	}
}

func BenchmarkCanonicalPathEscaped(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		CanonicalPath("/api/v1/users/caf%C3%A9")
	}
}
