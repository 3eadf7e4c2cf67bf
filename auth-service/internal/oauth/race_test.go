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
	dbxtest.Each(t, testConcurrentRefreshReuse)
}

func testConcurrentRefreshReuse(t *testing.T, dbURL string) {
	f := newRevocationFixtureOn(t, dbURL)
	for round := range 5 {
		rt := f.redeem(t, "openid offline_access")["refresh_token"].(string)
		const n = 6
		var wg sync.WaitGroup
		statuses := make([]int, n)
		outs := make([]map[string]any, n)
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				statuses[i], outs[i] = f.token(t, url.Values{"grant_type": {GrantRefresh}, "client_id": {DemoClientID}, "refresh_token": {rt}}, false)
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
				t.Fatalf("round %d: two concurrent refreshes with one token succeeded", round)
			case st != http.StatusBadRequest || outs[i]["error"] != "invalid_grant":
				t.Fatalf("round %d: %d %v, want 400 invalid_grant", round, st, outs[i])
			}
		}
		if winner == nil {
			// Reuse was detected before the first use committed: every
			// request refused is as good an outcome.
			f.events.Take()
			continue
		}
		_, err := f.srv.access.Verify(context.Background(), winner["access_token"].(string))
		var te *tokens.Error
		if !errors.As(err, &te) || te.Reason != tokens.ReasonRevoked {
			t.Errorf("round %d: the winner's access token outlived the family's revocation: %v", round, err)
		}
		st, out := f.token(t, url.Values{"grant_type": {GrantRefresh}, "client_id": {DemoClientID}, "refresh_token": {winner["refresh_token"].(string)}}, false)
		if st != http.StatusBadRequest {
			t.Errorf("round %d: the winner's refresh token outlived the family's revocation: %d %v", round, st, out)
		}
		f.events.Take()
	}
}

// TestConcurrentCodeReplay: one authorization code redeemed by several
// requests at once is honoured at most once, and the replay revokes what
// the first redemption issued even while that redemption is still being
// written. On SQLite and PostgreSQL.
func TestConcurrentCodeReplay(t *testing.T) {
	dbxtest.Each(t, testConcurrentCodeReplay)
}

func testConcurrentCodeReplay(t *testing.T, dbURL string) {
	f := newRevocationFixtureOn(t, dbURL)
	for round := range 5 {
		code, verifier := f.authCode(t, "openid offline_access")
		form := url.Values{
			"grant_type": {GrantCode}, "client_id": {DemoClientID}, "code": {code},
			"code_verifier": {verifier}, "redirect_uri": {"http://127.0.0.1:53682/callback"},
		}
		const n = 4
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
				t.Fatalf("round %d: two redemptions of one code succeeded", round)
			case st != http.StatusBadRequest || outs[i]["error"] != "invalid_grant":
				t.Fatalf("round %d: %d %v, want 400 invalid_grant", round, st, outs[i])
			}
		}
		f.events.Take()
		if winner == nil {
			continue
		}
		_, err := f.srv.access.Verify(context.Background(), winner["access_token"].(string))
		var te *tokens.Error
		if !errors.As(err, &te) || te.Reason != tokens.ReasonRevoked {
			t.Errorf("round %d: the first redemption's access token outlived the replay: %v", round, err)
		}
		st, out := f.token(t, url.Values{"grant_type": {GrantRefresh}, "client_id": {DemoClientID}, "refresh_token": {winner["refresh_token"].(string)}}, false)
		if st != http.StatusBadRequest {
			t.Errorf("round %d: the first redemption's refresh token outlived the replay: %d %v", round, st, out)
		}
		f.events.Take()
	}
}
