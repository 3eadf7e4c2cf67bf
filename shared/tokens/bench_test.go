package tokens_test

import (
	"context"
	"testing"
)

// benchVerifier is a verifier over a JWKS already fetched over TLS, so the
// benchmarks measure the hot path: key found in the cache.
func benchVerifier(b *testing.B) (verify func() error) {
	b.Helper()
	iss := newIssuer(b)
	srv := newJWKSServer(b, iss)
	j := newJWKS(b, srv, newClock())
	if err := j.Refresh(context.Background()); err != nil {
		b.Fatal(err)
	}
	v := newVerifier(b, j, &denyList{}, nil)
	tok := iss.Sign(b, func(_, c map[string]any) {
		c["cnf"] = map[string]any{"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}
	})
	ctx := context.Background()
	verify = func() error {
		_, err := v.Verify(ctx, tok)
		return err
	}
	if err := verify(); err != nil {
		b.Fatal(err)
	}
	return verify
}

func BenchmarkVerify(b *testing.B) {
	verify := benchVerifier(b)
	b.ReportAllocs()
	for b.Loop() {
		if err := verify(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyParallel(b *testing.B) {
	verify := benchVerifier(b)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := verify(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
