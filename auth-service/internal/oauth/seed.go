package oauth

import (
	"context"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/rampart-go/rampart/auth-service/internal/store"
	"github.com/rampart-go/rampart/shared/mtls"
)

// Every scope a client may be registered for.
var allScopes = "openid profile email offline_access users:read users:write orders:read orders:write admin"

// Demo client ids (CONTRACT §3).
const (
	DemoClientID    = "rampart-demo"
	MachineClientID = "rampart-machine"
)

// ClientSpec is a client registration as configuration states it.
type ClientSpec struct {
	ID, Name, Type string
	// Secret is the plain secret of a confidential client (hashed here).
	Secret                 string
	RedirectURIs           []string
	PostLogoutRedirectURIs []string
	GrantTypes             []string
	Scopes                 string
	// Audiences a client may ask tokens for besides the public API.
	Audiences []string
}

// DefaultClients are Rampart's registered clients: the demo public client
// (loopback redirects on any port, RFC 8252), a confidential machine client
// whose secret comes from the seed file, and one tls_client_auth client
// per service, which holds no secret at all.
func DefaultClients(machineSecret string) []ClientSpec {
	loopback := []string{"http://127.0.0.1/callback", "http://[::1]/callback"}
	specs := []ClientSpec{
		{
			ID: DemoClientID, Name: "Rampart demo", Type: store.ClientPublic, RedirectURIs: loopback,
			PostLogoutRedirectURIs: []string{"http://127.0.0.1/", "http://[::1]/"},
			GrantTypes:             []string{GrantCode, GrantRefresh}, Scopes: allScopes,
		},
		{
			ID: "gateway", Name: "gateway", Type: store.ClientTLS,
			GrantTypes: []string{GrantClientCredentials}, Scopes: "",
		},
		{
			ID: "user-service", Name: "user-service", Type: store.ClientTLS,
			GrantTypes: []string{GrantClientCredentials}, Scopes: "users:read",
		},
		{
			ID: "order-service", Name: "order-service", Type: store.ClientTLS,
			GrantTypes: []string{GrantClientCredentials, GrantTokenExchange},
			Scopes:     "users:read orders:read orders:write", Audiences: []string{"user-service"},
		},
	}
	if machineSecret != "" {
		specs = append(specs, ClientSpec{
			ID: MachineClientID, Name: "Rampart machine client", Type: store.ClientConfidential, Secret: machineSecret,
			GrantTypes: []string{GrantClientCredentials}, Scopes: "users:read orders:read",
		})
	}
	return specs
}

// RegisterClients upserts specs: the registration follows configuration
// on every start, so a changed scope or redirect takes effect on restart.
func RegisterClients(ctx context.Context, db *gorm.DB, specs []ClientSpec) error {
	now := time.Now().UTC()
	for _, sp := range specs {
		row := store.Client{
			ID: sp.ID, Name: sp.Name, Type: sp.Type,
			RedirectURIs: strings.Join(sp.RedirectURIs, " "), PostLogoutRedirectURIs: strings.Join(sp.PostLogoutRedirectURIs, " "),
			GrantTypes: strings.Join(sp.GrantTypes, " "), Scopes: sp.Scopes, Audiences: strings.Join(sp.Audiences, " "),
			IDTokenAlg: "RS256", CreatedAt: now,
		}
		if sp.Type == store.ClientConfidential {
			h := hash(sp.Secret)
			row.SecretHash = &h
		}
		if sp.Type == store.ClientTLS {
			id := mtls.ServiceID(sp.ID)
			row.TLSIdentity = &id
		}
		if err := db.WithContext(ctx).Clauses(clause.OnConflict{
			Columns:   []clause.Column{{Name: "id"}},
			DoUpdates: clause.AssignmentColumns([]string{"name", "type", "secret_hash", "tls_identity", "redirect_uris", "post_logout_redirect_uris", "grant_types", "scopes", "audiences", "id_token_alg"}),
		}).Create(&row).Error; err != nil {
			return err
		}
	}
	return nil
}
