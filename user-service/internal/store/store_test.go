package store

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/rampart-go/rampart/shared/dbx/dbxtest"
	"github.com/rampart-go/rampart/shared/natsx"
	"github.com/rampart-go/rampart/shared/outbox"
	"github.com/rampart-go/rampart/user-service/internal/profile"
)

func open(t *testing.T, url string) *gorm.DB { return dbxtest.Open(t, url, Migrations) }

func created(id string) profile.Created {
	return profile.Created{ID: id, Email: id[:8] + "@example.com", DisplayName: "User " + id[:4], CreatedAt: time.Now()}
}

// TestProfilesFromEventsAreIdempotent: the same account.created twice, or
// replayed after an erasure, makes at most one profile.
func TestProfilesFromEventsAreIdempotent(t *testing.T) {
	dbxtest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s := New(open(t, url), nil)
		id, evID := uuid.NewString(), uuid.NewString()
		for i, want := range []bool{true, false} {
			got, err := s.CreateFromAccount(ctx, "c", evID, created(id))
			if err != nil || got != want {
				t.Fatalf("delivery %d: created=%v err=%v, want %v", i+1, got, err, want)
			}
		}
		// A different event for the same account (a replay through another
		// consumer name, say) still cannot duplicate the row.
		if got, err := s.CreateFromAccount(ctx, "c", uuid.NewString(), created(id)); err != nil || got {
			t.Fatalf("second event for one account: created=%v err=%v", got, err)
		}
		p, err := s.Get(ctx, id)
		if err != nil || p.Email != id[:8]+"@example.com" {
			t.Fatalf("Get = %+v, %v", p, err)
		}

		if err := s.Erase(ctx, id, profile.ErasedBySelf); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, id); !errors.Is(err, profile.ErrNotFound) {
			t.Fatalf("profile survived erasure: %v", err)
		}
		if got, err := s.CreateFromAccount(ctx, "c2", uuid.NewString(), created(id)); err != nil || got {
			t.Fatalf("replayed account.created after erasure: created=%v err=%v", got, err)
		}
		if _, err := s.Get(ctx, id); !errors.Is(err, profile.ErrNotFound) {
			t.Fatal("erased profile came back")
		}
	})
}

// TestEraseQueuesOneEvent: the deletion and user.deleted commit together,
// once, even when the erasure is repeated or races with itself.
func TestEraseQueuesOneEvent(t *testing.T) {
	dbxtest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db := open(t, url)
		var notified atomic.Int32
		s := New(db, func() { notified.Add(1) })
		id := uuid.NewString()
		if _, err := s.CreateFromAccount(ctx, "c", uuid.NewString(), created(id)); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := s.Erase(ctx, id, profile.ErasedByAdmin); err != nil {
				t.Fatal(err)
			}
		}
		var rows []outbox.Row
		if err := db.Where("subject = ?", natsx.SubjectEventsPrefix+"user.deleted").Find(&rows).Error; err != nil {
			t.Fatal(err)
		}
		var mine []profile.Deleted
		for _, r := range rows {
			var ev natsx.Event
			if err := json.Unmarshal([]byte(r.Payload), &ev); err != nil {
				t.Fatal(err)
			}
			var d profile.Deleted
			if err := json.Unmarshal(ev.Data, &d); err != nil {
				t.Fatal(err)
			}
			if d.UserID == id {
				if ev.Type != "user.deleted" || ev.Subject != id {
					t.Errorf("envelope %+v", ev)
				}
				mine = append(mine, d)
			}
		}
		if len(mine) != 1 || mine[0].Reason != profile.ErasedByAdmin {
			t.Fatalf("user.deleted events for the user: %+v, want exactly one (admin)", mine)
		}
		if erased, err := s.Erased(ctx, id); err != nil || !erased {
			t.Fatalf("Erased = %v, %v", erased, err)
		}
		if notified.Load() == 0 {
			t.Fatal("relay was never notified")
		}
	})
}

func TestListPagesAndUpdate(t *testing.T) {
	dbxtest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s := New(open(t, url), nil)
		var ids []string
		for range 7 {
			id := uuid.NewString()
			ids = append(ids, id)
			if _, err := s.CreateFromAccount(ctx, "c", uuid.NewString(), created(id)); err != nil {
				t.Fatal(err)
			}
		}
		sort.Strings(ids)
		// Other tests share a PostgreSQL database: page through everything
		// and check ours come back once each, in order.
		var seen []string
		after, pages := "", 0
		for {
			items, next, err := s.List(ctx, after, 3)
			if err != nil {
				t.Fatal(err)
			}
			if len(items) > 3 {
				t.Fatalf("page of %d, limit 3", len(items))
			}
			for _, p := range items {
				if p.ID <= after {
					t.Fatalf("page out of order: %s after %s", p.ID, after)
				}
				after = p.ID
				for _, id := range ids {
					if p.ID == id {
						seen = append(seen, id)
					}
				}
			}
			pages++
			if next == "" {
				break
			}
			if next != after {
				t.Fatalf("next %s, last item %s", next, after)
			}
		}
		if len(seen) != len(ids) || pages < 3 {
			t.Fatalf("saw %d of %d profiles in %d pages", len(seen), len(ids), pages)
		}

		name, phone := "Ada", "+44 20 1234"
		got, err := s.Update(ctx, ids[0], profile.Patch{DisplayName: &name, Phone: &phone})
		if err != nil || got.DisplayName != "Ada" || got.Phone != phone {
			t.Fatalf("Update = %+v, %v", got, err)
		}
		reread, _ := s.Get(ctx, ids[0])
		if reread.DisplayName != "Ada" || reread.Phone != phone || reread.Email != got.Email {
			t.Fatalf("stored %+v", reread)
		}
		if _, err := s.Update(ctx, uuid.NewString(), profile.Patch{DisplayName: &name}); !errors.Is(err, profile.ErrNotFound) {
			t.Fatalf("Update of a missing profile: %v", err)
		}
	})
}

// TestErasureRacingTheProfilesCreation: an account erased while its
// account.created is being applied must end with no profile, whichever
// transaction commits first (Erase promises the profile never appears).
// On PostgreSQL, READ COMMITTED let each transaction miss the other's
// uncommitted row: Create saw no erasure, Erase deleted no profile yet.
func TestErasureRacingTheProfilesCreation(t *testing.T) {
	dbxtest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s := New(open(t, url), nil)
		for range 50 {
			id := uuid.NewString()
			errs := make(chan error, 2)
			go func() { _, err := s.CreateFromAccount(ctx, "c", uuid.NewString(), created(id)); errs <- err }()
			go func() { errs <- s.Erase(ctx, id, profile.ErasedBySelf) }()
			for range 2 {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			if p, err := s.Get(ctx, id); !errors.Is(err, profile.ErrNotFound) {
				t.Fatalf("erased account %s has a profile: %+v, %v", id, p, err)
			}
		}
	})
}
