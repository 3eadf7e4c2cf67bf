// Package events is the order service's side of the event stream: the
// handlers of the domain events it consumes.
package events

import (
	"context"
	"log/slog"

	"github.com/google/uuid"

	"github.com/rampart-go/rampart/order-service/internal/order"
	"github.com/rampart-go/rampart/shared/consumer"
	"github.com/rampart-go/rampart/shared/natsx"
)

// UserDeleted is the durable consumer that anonymises an erased user's
// orders: the last step of the erasure saga. Its name is also its key in
// processed_events.
const UserDeleted = "order-service-user-deleted"

// UserDeletedSubject is what it consumes.
const UserDeletedSubject = natsx.SubjectEventsPrefix + "user.deleted"

// Anonymiser detaches a user's orders from them, once per event.
type Anonymiser interface {
	Anonymise(ctx context.Context, consumerName, eventID, userID string) (int64, error)
}

// OnUserDeleted returns the handler. A payload without a valid user id can
// never be applied and is terminated; a database error is retried, so an
// erasure published while this service was down is applied when it is
// back (the consumer is durable).
func OnUserDeleted(store Anonymiser, log *slog.Logger) consumer.Handler {
	return func(ctx context.Context, ev natsx.Event) error {
		var d order.UserDeleted
		if err := consumer.Decode(ev, &d); err != nil {
			return err
		}
		if u, err := uuid.Parse(d.UserID); err != nil || u.String() != d.UserID || d.UserID == order.AnonymousUser {
			return consumer.Permanent(errInvalid{ev.ID})
		}
		n, err := store.Anonymise(ctx, UserDeleted, ev.ID, d.UserID)
		if err != nil {
			return err
		}
		log.InfoContext(ctx, "orders anonymised", slog.String("user_id", d.UserID), slog.Int64("orders", n))
		return nil
	}
}

type errInvalid struct{ id string }

func (e errInvalid) Error() string { return "user.deleted " + e.id + ": no valid user id" }
