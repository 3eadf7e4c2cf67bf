package account

import (
	"context"
	"errors"
	"fmt"

	"gorm.io/gorm"

	"github.com/rampart-go/rampart/auth-service/internal/password"
	"github.com/rampart-go/rampart/auth-service/internal/store"
	"github.com/rampart-go/rampart/shared/consumer"
	"github.com/rampart-go/rampart/shared/natsx"
	"github.com/rampart-go/rampart/shared/outbox"
	"github.com/rampart-go/rampart/shared/secevent"
)

// Erase applies a user's erasure (user.deleted) to their account, once per
// event: the account is disabled and its personal data scrubbed — the
// email becomes an undeliverable placeholder, so the address can register
// again, the name is cleared and the password hash burnt. The row itself
// stays, so the id is never reused and audit records keep pointing at
// something. It reports whether this call did the erasure (false for a
// replayed event or an unknown account).
func (s *Service) Erase(ctx context.Context, consumerName, eventID, id string) (bool, error) {
	done := false
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		first, err := consumer.Once(tx, consumerName, eventID)
		if err != nil || !first {
			return err
		}
		var a store.Account
		if err := tx.Where("id = ?", id).Take(&a).Error; err != nil {
			if errors.Is(err, gorm.ErrRecordNotFound) {
				return nil // never existed here: nothing to erase
			}
			return err
		}
		// A hash of a random password nobody knows: no login can succeed,
		// and the column keeps its format.
		secret, err := password.Generate()
		if err != nil {
			return err
		}
		burnt, err := s.hasher.Hash(ctx, secret)
		if err != nil {
			return err
		}
		now := s.now().UTC()
		if err := tx.Model(&store.Account{}).Where("id = ?", id).Updates(map[string]any{
			"email": "erased-" + id + "@erased.invalid", "display_name": "", "password_hash": burnt,
			"disabled": true, "failed_logins": 0, "locked_until": nil, "updated_at": now,
		}).Error; err != nil {
			return fmt.Errorf("erase account: %w", err)
		}
		if !a.Disabled {
			for _, typ := range []string{"account.changed", "account.disabled"} {
				ev, err := natsx.NewEvent(ctx, "auth-service", typ, id, Changed{
					ID: id, Change: string(secevent.ReasonDisabled), Roles: a.RoleList(), Disabled: true,
				})
				if err != nil {
					return err
				}
				if err := outbox.Add(tx, natsx.SubjectEventsPrefix+typ, ev); err != nil {
					return err
				}
			}
		}
		done = true
		return nil
	})
	if err != nil {
		return false, err
	}
	if done {
		s.notify()
	}
	return done, nil
}
