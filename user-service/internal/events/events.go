// Package events is the user service's side of the event stream: the
// handlers of the domain events it consumes.
package events

import (
	"context"
	"log/slog"

	"github.com/google/uuid"

	"github.com/rampart-go/rampart/shared/consumer"
	"github.com/rampart-go/rampart/shared/natsx"
	"github.com/rampart-go/rampart/user-service/internal/profile"
)

// AccountCreated is the durable consumer that makes a profile for every new
// account. Its name is also its key in processed_events.
const AccountCreated = "user-service-account-created"

// AccountCreatedSubject is what it consumes.
const AccountCreatedSubject = natsx.SubjectEventsPrefix + "account.created"

// Creator makes a profile once per event.
type Creator interface {
	CreateFromAccount(ctx context.Context, consumerName, eventID string, a profile.Created) (bool, error)
}

// OnAccountCreated returns the handler. A payload without a valid account id
// can never be applied and is terminated; a database error is retried.
func OnAccountCreated(store Creator, log *slog.Logger) consumer.Handler {
	return func(ctx context.Context, ev natsx.Event) error {
		var a profile.Created
		if err := consumer.Decode(ev, &a); err != nil {
			return err
		}
		if u, err := uuid.Parse(a.ID); err != nil || u.String() != a.ID || a.Email == "" {
			return consumer.Permanent(errInvalid{ev.ID})
		}
		created, err := store.CreateFromAccount(ctx, AccountCreated, ev.ID, a)
		if err != nil {
			return err
		}
		if created {
			log.InfoContext(ctx, "profile created", slog.String("id", a.ID))
		}
		return nil
	}
}

type errInvalid struct{ id string }

func (e errInvalid) Error() string {
	return "account.created " + e.id + ": no valid account id or email"
}
