package oauth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/rampart-go/rampart/auth-service/internal/keys"
	"github.com/rampart-go/rampart/auth-service/internal/store"
	"github.com/rampart-go/rampart/shared/dbx/dbxtest"
	"github.com/rampart-go/rampart/shared/secevent"
)

type nopEvents struct{}

func (nopEvents) Emit(context.Context, secevent.Event) {}

// BenchmarkClientCredentialsIssuance measures the token endpoint's whole
// client_credentials path in-process: form parsing, client lookup and
// SHA-256 secret check on SQLite, ES256 signing and the JSON response.
func BenchmarkClientCredentialsIssuance(b *testing.B) {
	ctx := context.Background()
	db := dbxtest.Open(b, dbxtest.SQLiteURL(b), store.Migrations)
	if err := RegisterClients(ctx, db, DefaultClients("s3cret-s3cret-s3cret")); err != nil {
		b.Fatal(err)
	}
	km, err := keys.Open(keys.Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	srv, err := New(Config{Issuer: "https://rampart.test", Throttle: ThrottleOptions{PerMinute: 1 << 30, Burst: 1 << 30}},
		Deps{DB: db, Keys: km, Events: nopEvents{}})
	if err != nil {
		b.Fatal(err)
	}
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	srv.Routes(e)
	body := url.Values{"grant_type": {"client_credentials"}, "scope": {"users:read"}}.Encode()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/oauth2/token", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(MachineClientID, "s3cret-s3cret-s3cret")
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
}
