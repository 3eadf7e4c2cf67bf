package tokenstest_test

import (
	"context"
	"testing"

	"github.com/rampart-go/rampart/shared/tokens"
	"github.com/rampart-go/rampart/shared/tokens/tokenstest"
)

func TestIssuerTokensVerify(t *testing.T) {
	t.Parallel()
	iss := tokenstest.NewIssuer(t, "https://rampart.test", "rampart-api")
	c, err := iss.Verifier(t).Verify(context.Background(), iss.Sign(t, nil))
	if err != nil {
		t.Fatalf("default token refused: %v", err)
	}
	if c.Issuer != iss.IssuerURL || !c.HasRole("USER") || !c.HasScope("openid") {
		t.Fatalf("default claims %+v", c)
	}
	if _, err := iss.Verifier(t).Verify(context.Background(), iss.Sign(t, func(_, c map[string]any) { c["aud"] = "x" })); tokens.ReasonOf(err) != tokens.ReasonAudience {
		t.Fatalf("mutate ignored: %v", err)
	}
}

func TestServeJWKSPublishesCurrentAndPreviousKeys(t *testing.T) {
	t.Parallel()
	iss := tokenstest.NewIssuer(t, "https://rampart.test", "rampart-api")
	old := iss.KID
	srv := iss.ServeJWKS(t)
	j, err := tokens.NewJWKS(tokens.JWKSOptions{URL: srv.URL, Client: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	fresh := iss.Rotate(t)
	if err := j.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, kid := range []string{old, fresh} {
		if _, err := j.Key(context.Background(), kid); err != nil {
			t.Errorf("kid %q not served: %v", kid, err)
		}
	}
	if len(iss.Keys()) != 2 {
		t.Errorf("Keys() has %d keys, want 2", len(iss.Keys()))
	}
}
