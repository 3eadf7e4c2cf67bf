package oauth

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"sync"
	"testing"

	"github.com/rampart-go/rampart/shared/dbx/dbxtest"
	"github.com/rampart-go/rampart/shared/tokens"
)

// TestConcurrentRefreshReuse: the same refresh token presented by several
// requests at once — a thief racing the client — is honoured at most once;
// the rest are reuse, which revokes the family, and that revocation
// reaches what the winner was issued too: its refresh token and its access
// token, whichever request got to the database first. On SQLite and
// PostgreSQL.
func TestConcurrentRefreshReuse(t *testing.T) {
	dbxtest.Each(t, func(t *testing.T, dbURL string) {
		f := newRevocationFixtureOn(t, dbURL)
		for round := range 5 {
			rt := f.redeem(t, "openid offline_access")["refresh_token"].(string)
			form := url.Values{"grant_type": {GrantRefresh}, "client_id": {DemoClientID}, "refresh_token": {rt}}
			// Reuse may be detected before the first use commits: every
			// request refused is as good an outcome.
			if winner := f.race(t, round, 6, form); winner != nil {
				f.requireRevoked(t, round, winner)
			}
			f.events.Take()
		}
	})
}

// TestConcurrentCodeReplay: one authorization code redeemed by several
// requests at once is honoured at most once, and the replay revokes what
// the first redemption issued even while that redemption is still being
// written. On SQLite and PostgreSQL.
func TestConcurrentCodeReplay(t *testing.T) {
	dbxtest.Each(t, func(t *testing.T, dbURL string) {
		f := newRevocationFixtureOn(t, dbURL)
		for round := range 5 {
			code, verifier := f.authCode(t, "openid offline_access")
			form := url.Values{
				"grant_type": {GrantCode}, "client_id": {DemoClientID}, "code": {code},
				"code_verifier": {verifier}, "redirect_uri": {"http://127.0.0.1:53682/callback"},
			}
			if winner := f.race(t, round, 4, form); winner != nil {
				f.requireRevoked(t, round, winner)
			}
			f.events.Take()
		}
	})
}

// race sends form to the token endpoint from n requests released at once.
// At most one may succeed (its answer is returned, or nil); every other
// must be 400 invalid_grant.
func (f *exchangeFixture) race(t *testing.T, round, n int, form url.Values) map[string]any {
	t.Helper()
	var wg sync.WaitGroup
	statuses := make([]int, n)
	outs := make([]map[string]any, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			statuses[i], outs[i] = f.token(t, form, false)
		})
	}
	close(start)
	wg.Wait()
	var winner map[string]any
	for i, st := range statuses {
		switch {
		case st == http.StatusOK && winner == nil:
			winner = outs[i]
		case st == http.StatusOK:
			t.Fatalf("round %d: two of %d concurrent %s grants succeeded", round, n, form.Get("grant_type"))
		case st != http.StatusBadRequest || outs[i]["error"] != "invalid_grant":
			t.Fatalf("round %d: %d %v, want 400 invalid_grant", round, st, outs[i])
		}
	}
	return winner
}

// requireRevoked: the winner's access token is denied as revoked and its
// refresh token refused — the losers' reuse or replay reached them.
func (f *exchangeFixture) requireRevoked(t *testing.T, round int, winner map[string]any) {
	t.Helper()
	_, err := f.srv.access.Verify(context.Background(), winner["access_token"].(string))
	var te *tokens.Error
	if !errors.As(err, &te) || te.Reason != tokens.ReasonRevoked {
		t.Errorf("round %d: the winner's access token outlived the revocation: %v", round, err)
	}
	st, out := f.token(t, url.Values{"grant_type": {GrantRefresh}, "client_id": {DemoClientID}, "refresh_token": {winner["refresh_token"].(string)}}, false)
	if st != http.StatusBadRequest {
		t.Errorf("round %d: the winner's refresh token outlived the revocation: %d %v", round, st, out)
	}
}
