// Package events is the auth service's side of the event stream: the
// handlers of the domain events it consumes.
package events

import (
	"context"
	"log/slog"

	"github.com/google/uuid"

	"github.com/rampart-go/rampart/shared/consumer"
	"github.com/rampart-go/rampart/shared/natsx"
	"github.com/rampart-go/rampart/shared/secevent"
)

// UserDeleted is the durable consumer that applies erasures to accounts.
const UserDeleted = "auth-service-user-deleted"

// UserDeletedSubject is what it consumes.
const UserDeletedSubject = natsx.SubjectEventsPrefix + "user.deleted"

// Accounts erases an account once per event.
type Accounts interface {
	Erase(ctx context.Context, consumerName, eventID, id string) (bool, error)
}

// Revoker revokes every token of a subject.
type Revoker interface {
	RevokeSubject(ctx context.Context, subject, reason string) error
}

// Emitter records security events.
type Emitter interface {
	Emit(ctx context.Context, ev secevent.Event)
}

// deleted is the part of user.deleted this handler reads.
type deleted struct {
	UserID string `json:"user_id"`
}

// OnUserDeleted returns the handler. Tokens are revoked before the account
// is touched: the revocation is idempotent, so a crash in between only
// means it runs again on redelivery, whereas the other order could record
// the event as done with the tokens still live. They are revoked again
// after it, for what was issued in between. The security events are
// emitted once, by the delivery that did the erasure.
func OnUserDeleted(accounts Accounts, revoker Revoker, events Emitter, log *slog.Logger) consumer.Handler {
	return func(ctx context.Context, ev natsx.Event) error {
		var d deleted
		if err := consumer.Decode(ev, &d); err != nil {
			return err
		}
		if u, err := uuid.Parse(d.UserID); err != nil || u.String() != d.UserID {
			return consumer.Permanent(errInvalid(ev.ID))
		}
		if err := revoker.RevokeSubject(ctx, d.UserID, string(secevent.ReasonErasure)); err != nil {
			return err
		}
		erased, err := accounts.Erase(ctx, UserDeleted, ev.ID, d.UserID)
		if err != nil || !erased {
			return err
		}
		// And once more now that the account is disabled: a login or a
		// refresh that completed between the first revocation and the
		// erasure minted tokens after its not-before time. No grant
		// succeeds for a disabled account from here on.
		if err := revoker.RevokeSubject(ctx, d.UserID, string(secevent.ReasonErasure)); err != nil {
			return err
		}
		events.Emit(ctx, secevent.Event{Type: secevent.TokenRevoked, Reason: secevent.ReasonErasure, Subject: d.UserID})
		events.Emit(ctx, secevent.Event{Type: secevent.AccountChanged, Reason: secevent.ReasonDisabled, Subject: d.UserID})
		log.InfoContext(ctx, "account erased", slog.String("id", d.UserID))
		return nil
	}
}

type errInvalid string

func (e errInvalid) Error() string { return "user.deleted " + string(e) + ": no valid user id" }
