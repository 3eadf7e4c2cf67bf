package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/rampart-go/rampart/order-service/internal/order"
	"github.com/rampart-go/rampart/shared/dbx/dbxtest"
	"github.com/rampart-go/rampart/shared/outbox"
)

// open migrates a fresh database at url.
func open(t testing.TB, url string) (*gorm.DB, *Store) {
	t.Helper()
	db := dbxtest.Open(t, url, Migrations)
	return db, New(db, nil)
}

func newOrder(user string, qty int) order.Order {
	return order.Order{
		UserID: user, Items: []order.Item{{SKU: "RMP-MUG", Quantity: qty, PriceCents: 1450}},
		TotalCents: int64(qty) * 1450, Currency: "EUR", ShippingAddress: "1 Main St",
	}
}

func outboxSubjects(t testing.TB, db *gorm.DB) map[string]int {
	t.Helper()
	var rows []outbox.Row
	if err := db.Find(&rows).Error; err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, r := range rows {
		out[r.Subject]++
	}
	return out
}

func TestCreateGetAndOutbox(t *testing.T) {
	dbxtest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, s := open(t, url)
		user := uuid.NewString()
		o, replayed, err := s.Create(ctx, newOrder(user, 3), Idempotency{})
		if err != nil || replayed {
			t.Fatal(err, replayed)
		}
		if u, err := uuid.Parse(o.ID); err != nil || u.Version() != 7 {
			t.Errorf("id %s is not a UUIDv7", o.ID)
		}
		got, err := s.Get(ctx, o.ID)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(o) {
			t.Errorf("read back\n%+v\nwrote\n%+v", got, o)
		}
		if got.Status != order.Pending || got.TotalCents != 4350 || got.Version != 1 {
			t.Errorf("%+v", got)
		}
		if _, err := s.Get(ctx, uuid.NewString()); !errors.Is(err, order.ErrNotFound) {
			t.Errorf("missing order: %v", err)
		}
		if n := outboxSubjects(t, db)[SubjectCreated]; n != 1 {
			t.Errorf("%d order.created in the outbox", n)
		}
		// An unknown SKU violates the catalogue foreign key on PostgreSQL
		// and is refused by the domain before it gets here anyway; what
		// matters is that a failed create leaves nothing behind.
		bad := newOrder(user, 1)
		bad.Items = append(bad.Items, order.Item{SKU: "RMP-MUG", Quantity: 0, PriceCents: 1})
		if _, _, err := s.Create(ctx, bad, Idempotency{}); err == nil {
			t.Fatal("a line with quantity 0 was stored")
		}
		var n int64
		db.Model(&orderRow{}).Count(&n)
		if n != 1 || outboxSubjects(t, db)[SubjectCreated] != 1 {
			t.Errorf("a failed create left %d orders / %v outbox rows", n, outboxSubjects(t, db))
		}
	})
}

func TestIdempotency(t *testing.T) {
	dbxtest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, s := open(t, url)
		alice, bob := uuid.NewString(), uuid.NewString()
		key := Idempotency{Key: "k-1", Hash: "aaaa"}
		first, _, err := s.Create(ctx, newOrder(alice, 1), key)
		if err != nil {
			t.Fatal(err)
		}
		again, replayed, err := s.Create(ctx, newOrder(alice, 1), key)
		if err != nil || !replayed || again.ID != first.ID {
			t.Fatalf("replay: %v %v %s vs %s", err, replayed, again.ID, first.ID)
		}
		if o, found, err := s.Replay(ctx, alice, key); err != nil || !found || o.ID != first.ID {
			t.Fatalf("Replay: %v %v %s", err, found, o.ID)
		}
		if _, _, err := s.Create(ctx, newOrder(alice, 2), Idempotency{Key: "k-1", Hash: "bbbb"}); !errors.Is(err, order.ErrIdempotencyMismatch) {
			t.Fatalf("same key, other body: %v", err)
		}
		// Keys are per customer: bob's k-1 is a different request.
		other, replayed, err := s.Create(ctx, newOrder(bob, 1), key)
		if err != nil || replayed || other.ID == first.ID {
			t.Fatalf("other user's key: %v %v", err, replayed)
		}
		if n := outboxSubjects(t, db)[SubjectCreated]; n != 2 {
			t.Errorf("%d order.created for two orders", n)
		}
	})
}

// TestIdempotencyUnderConcurrency: many requests with one key at once make
// exactly one order, and every request is answered with it.
func TestIdempotencyUnderConcurrency(t *testing.T) {
	dbxtest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, s := open(t, url)
		user := uuid.NewString()
		key := Idempotency{Key: "race", Hash: "cccc"}
		const n = 8
		ids := make([]string, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				o, _, err := s.Create(ctx, newOrder(user, 1), key)
				ids[i], errs[i] = o.ID, err
			})
		}
		wg.Wait()
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("request %d: %v", i, errs[i])
			}
			if ids[i] != ids[0] {
				t.Errorf("request %d got order %s, request 0 got %s", i, ids[i], ids[0])
			}
		}
		var count int64
		db.Model(&orderRow{}).Where("user_id = ?", user).Count(&count)
		if count != 1 || outboxSubjects(t, db)[SubjectCreated] != 1 {
			t.Errorf("%d orders, outbox %v", count, outboxSubjects(t, db))
		}
	})
}

func TestListKeysetPages(t *testing.T) {
	dbxtest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		_, s := open(t, url)
		alice, bob := uuid.NewString(), uuid.NewString()
		var mine []string
		for i := range 7 {
			o, _, err := s.Create(ctx, newOrder(alice, i+1), Idempotency{})
			if err != nil {
				t.Fatal(err)
			}
			mine = append([]string{o.ID}, mine...) // newest first
			if _, _, err := s.Create(ctx, newOrder(bob, 1), Idempotency{}); err != nil {
				t.Fatal(err)
			}
		}
		var got []string
		cursor := ""
		for pages := 0; ; pages++ {
			if pages > 3 {
				t.Fatal("pagination does not end")
			}
			page, next, err := s.List(ctx, alice, cursor, 3)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range page {
				if o.UserID != alice || len(o.Items) != 1 {
					t.Errorf("foreign or incomplete order %+v", o)
				}
				got = append(got, o.ID)
			}
			if next == "" {
				break
			}
			cursor = next
		}
		if fmt.Sprint(got) != fmt.Sprint(mine) {
			t.Errorf("pages %v\nwant %v", got, mine)
		}
		all, next, err := s.List(ctx, "", "", 100)
		if err != nil || len(all) != 14 || next != "" {
			t.Errorf("staff list: %d orders, next %q, %v", len(all), next, err)
		}
	})
}

func TestTransition(t *testing.T) {
	dbxtest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, s := open(t, url)
		o, _, err := s.Create(ctx, newOrder(uuid.NewString(), 1), Idempotency{})
		if err != nil {
			t.Fatal(err)
		}
		to := func(st order.Status) Decide {
			return func(cur order.Order) (order.Status, error) {
				if !order.CanTransition(cur.Status, st) {
					return "", fmt.Errorf("%s → %s refused", cur.Status, st)
				}
				return st, nil
			}
		}
		for _, st := range []order.Status{order.Paid, order.Shipped, order.Delivered} {
			got, err := s.Transition(ctx, o.ID, "staff", to(st))
			if err != nil || got.Status != st {
				t.Fatalf("%s: %v %v", st, got.Status, err)
			}
		}
		if _, err := s.Transition(ctx, o.ID, "staff", to(order.Cancelled)); err == nil {
			t.Fatal("a delivered order was cancelled")
		}
		final, _ := s.Get(ctx, o.ID)
		if final.Status != order.Delivered || final.Version != 4 {
			t.Errorf("%+v", final)
		}
		if n := outboxSubjects(t, db)[SubjectStatusChanged]; n != 3 {
			t.Errorf("%d order.status_changed for 3 changes", n)
		}
		if _, err := s.Transition(ctx, uuid.NewString(), "staff", to(order.Paid)); !errors.Is(err, order.ErrNotFound) {
			t.Errorf("missing order: %v", err)
		}
	})
}

// TestTransitionRace interleaves two writers deterministically: the owner's
// cancel reads the paid order, then staff ships it before the cancel
// writes. The cancel must not overwrite the shipment: it re-reads, sees a
// shipped order, and is refused. Exactly one change wins and one event is
// queued for it.
func TestTransitionRace(t *testing.T) {
	dbxtest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, s := open(t, url)
		o, _, err := s.Create(ctx, newOrder(uuid.NewString(), 1), Idempotency{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Transition(ctx, o.ID, "staff", func(order.Order) (order.Status, error) { return order.Paid, nil }); err != nil {
			t.Fatal(err)
		}
		errRefused := errors.New("refused")
		readPaid, shipped := make(chan struct{}), make(chan struct{})
		calls := 0
		var cancelErr error
		var wg sync.WaitGroup
		wg.Go(func() {
			_, cancelErr = s.Transition(ctx, o.ID, "owner", func(cur order.Order) (order.Status, error) {
				calls++
				if calls == 1 {
					close(readPaid)
					<-shipped // the other writer commits between our read and our write
				}
				if !order.CanTransition(cur.Status, order.Cancelled) {
					return "", errRefused
				}
				return order.Cancelled, nil
			})
		})
		<-readPaid
		if _, err := s.Transition(ctx, o.ID, "staff", func(order.Order) (order.Status, error) { return order.Shipped, nil }); err != nil {
			t.Fatal(err)
		}
		close(shipped)
		wg.Wait()
		if !errors.Is(cancelErr, errRefused) || calls != 2 {
			t.Fatalf("cancel after the shipment: %v after %d decisions", cancelErr, calls)
		}
		final, _ := s.Get(ctx, o.ID)
		if final.Status != order.Shipped || final.Version != 3 {
			t.Errorf("%+v", final)
		}
		if n := outboxSubjects(t, db)[SubjectStatusChanged]; n != 2 {
			t.Errorf("%d order.status_changed for 2 changes", n)
		}
	})
}

// TestConcurrentTransitions: many writers at once on one order; every
// accepted change is one version step and one event — no lost updates.
func TestConcurrentTransitions(t *testing.T) {
	dbxtest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, s := open(t, url)
		o, _, err := s.Create(ctx, newOrder(uuid.NewString(), 1), Idempotency{})
		if err != nil {
			t.Fatal(err)
		}
		next := func(cur order.Order) (order.Status, error) {
			switch cur.Status {
			case order.Pending:
				return order.Paid, nil
			case order.Paid:
				return order.Shipped, nil
			case order.Shipped:
				return order.Delivered, nil
			}
			return "", errors.New("final")
		}
		var mu sync.Mutex
		won := 0
		var wg sync.WaitGroup
		for range 6 {
			wg.Go(func() {
				if _, err := s.Transition(ctx, o.ID, "staff", next); err == nil {
					mu.Lock()
					won++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		final, _ := s.Get(ctx, o.ID)
		if final.Version != won+1 || outboxSubjects(t, db)[SubjectStatusChanged] != won {
			t.Errorf("%d changes won, version %d, events %v", won, final.Version, outboxSubjects(t, db))
		}
		if won > 3 {
			t.Errorf("%d transitions from pending in a three-step machine", won)
		}
	})
}

func TestAnonymiseOncePerEvent(t *testing.T) {
	dbxtest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		_, s := open(t, url)
		gone, stays := uuid.NewString(), uuid.NewString()
		for range 2 {
			if _, _, err := s.Create(ctx, newOrder(gone, 1), Idempotency{Key: uuid.NewString(), Hash: "h"}); err != nil {
				t.Fatal(err)
			}
		}
		kept, _, err := s.Create(ctx, newOrder(stays, 1), Idempotency{})
		if err != nil {
			t.Fatal(err)
		}
		event := uuid.NewString()
		n, err := s.Anonymise(ctx, "c", event, gone)
		if err != nil || n != 2 {
			t.Fatalf("anonymised %d: %v", n, err)
		}
		if n, err := s.Anonymise(ctx, "c", event, gone); err != nil || n != 0 {
			t.Fatalf("replayed event changed %d orders: %v", n, err)
		}
		if left, _, _ := s.List(ctx, gone, "", 100); len(left) != 0 {
			t.Errorf("%d orders still linked to the erased user", len(left))
		}
		anon, _, _ := s.List(ctx, order.AnonymousUser, "", 100)
		if len(anon) != 2 {
			t.Fatalf("%d anonymous orders", len(anon))
		}
		for _, o := range anon {
			if o.ShippingAddress != "" || len(o.Items) != 1 || o.TotalCents != 1450 {
				t.Errorf("anonymised order %+v", o)
			}
		}
		if got, _ := s.Get(ctx, kept.ID); got.UserID != stays || got.ShippingAddress == "" {
			t.Errorf("another customer's order changed: %+v", got)
		}
	})
}

// TestNoOrderOutlivesTheErasure: an order whose creation was under way
// when the customer was erased (user-service confirmed the customer just
// before the erasure, the insert commits just after order-service applied
// user.deleted) must not keep the erased user's id and address: Anonymise
// ran once and will not run again. The late create is refused and leaves
// nothing behind — no order, no key, no order.created.
func TestNoOrderOutlivesTheErasure(t *testing.T) {
	dbxtest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db, s := open(t, url)
		gone := uuid.NewString()
		if _, err := s.Anonymise(ctx, "c", uuid.NewString(), gone); err != nil {
			t.Fatal(err)
		}
		_, _, err := s.Create(ctx, newOrder(gone, 1), Idempotency{Key: "k", Hash: "h"})
		if !errors.Is(err, order.ErrCustomerErased) {
			t.Fatalf("create after erasure: %v, want order.ErrCustomerErased", err)
		}
		if left, _, _ := s.List(ctx, gone, "", 100); len(left) != 0 {
			t.Errorf("%d orders of the erased user", len(left))
		}
		if n := outboxSubjects(t, db)[SubjectCreated]; n != 0 {
			t.Errorf("%d order.created for a refused order", n)
		}
		// Anyone else still orders.
		if _, _, err := s.Create(ctx, newOrder(uuid.NewString(), 1), Idempotency{}); err != nil {
			t.Fatal(err)
		}
	})
}

// TestErasureRacingAnOrder: the same as TestNoOrderOutlivesTheErasure with
// both transactions running at once. Whichever commits first, no order is
// left with the erased customer. On PostgreSQL, READ COMMITTED let the
// create miss the uncommitted erasure and the erasure's UPDATE miss the
// uncommitted order.
func TestErasureRacingAnOrder(t *testing.T) {
	dbxtest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		_, s := open(t, url)
		for range 50 {
			gone := uuid.NewString()
			errs := make(chan error, 2)
			go func() {
				_, _, err := s.Create(ctx, newOrder(gone, 1), Idempotency{})
				if errors.Is(err, order.ErrCustomerErased) {
					err = nil
				}
				errs <- err
			}()
			go func() { _, err := s.Anonymise(ctx, "c", uuid.NewString(), gone); errs <- err }()
			for range 2 {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			if left, _, err := s.List(ctx, gone, "", 10); err != nil || len(left) != 0 {
				t.Fatalf("%d orders still belong to the erased customer: %v", len(left), err)
			}
		}
	})
}
