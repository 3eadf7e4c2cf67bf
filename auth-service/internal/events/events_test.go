package events

import (
	"context"
	"log/slog"
	"slices"
	"testing"

	"github.com/google/uuid"

	"github.com/rampart-go/rampart/shared/natsx"
	"github.com/rampart-go/rampart/shared/secevent"
)

// steps records, in order, what the handler asked of the account store
// and the revoker.
type steps struct{ log []string }

func (s *steps) Erase(_ context.Context, _, _, _ string) (bool, error) {
	s.log = append(s.log, "erase")
	return true, nil
}

func (s *steps) RevokeSubject(_ context.Context, _, _ string) error {
	s.log = append(s.log, "revoke")
	return nil
}

func (s *steps) Emit(context.Context, secevent.Event) {}

// TestUserDeletedRevokesAfterDisabling: the account's tokens are revoked
// before the erasure (so a crash in between leaves nothing live on
// redelivery) and again after it. Revoked only before, a grant that
// completed in between — a login or a refresh while the account was not
// yet disabled — minted tokens after the not-before time, and they
// outlived the erasure.
func TestUserDeletedRevokesAfterDisabling(t *testing.T) {
	s := &steps{}
	h := OnUserDeleted(s, s, s, slog.New(slog.DiscardHandler))
	ev, err := natsx.NewEvent(context.Background(), "user-service", "user.deleted", "x", deleted{UserID: uuid.NewString()})
	if err != nil {
		t.Fatal(err)
	}
	if err := h(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	if want := []string{"revoke", "erase", "revoke"}; !slices.Equal(s.log, want) {
		t.Fatalf("steps %v, want %v", s.log, want)
	}
}
