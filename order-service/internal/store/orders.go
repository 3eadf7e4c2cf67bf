package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/rampart-go/rampart/order-service/internal/order"
	"github.com/rampart-go/rampart/shared/consumer"
	"github.com/rampart-go/rampart/shared/dbx"
	"github.com/rampart-go/rampart/shared/natsx"
	"github.com/rampart-go/rampart/shared/outbox"
)

// source is the CloudEvents source of this service's events.
const source = "order-service"

// Event subjects (CONTRACT §5).
const (
	SubjectCreated       = natsx.SubjectEventsPrefix + "order.created"
	SubjectStatusChanged = natsx.SubjectEventsPrefix + "order.status_changed"
)

// maxRetries bounds how often Transition re-reads an order that changed
// under it before giving up with order.ErrConflict.
const maxRetries = 3

// IdempotencyWindow is how long an Idempotency-Key is honoured: within it
// a retry gets the first request's order; after it the key is forgotten,
// and the same key makes a new order. 24 hours, as Stripe's API: long
// enough for any client retry, short enough that the table stays small.
// PruneIdempotencyKeys deletes the expired keys.
const IdempotencyWindow = 24 * time.Hour

// PruneInterval is how often RunPruner deletes expired idempotency keys.
const PruneInterval = 10 * time.Minute

// errKeyTaken rolls back a create whose idempotency key a concurrent
// request stored first; Create then answers with that request's order.
var errKeyTaken = errors.New("idempotency key stored by a concurrent request")

type orderRow struct {
	ID              string     `gorm:"column:id;primaryKey"`
	UserID          string     `gorm:"column:user_id"`
	Status          string     `gorm:"column:status"`
	TotalCents      int64      `gorm:"column:total_cents"`
	Currency        string     `gorm:"column:currency"`
	ShippingAddress string     `gorm:"column:shipping_address"`
	Version         int        `gorm:"column:version"`
	CreatedAt       time.Time  `gorm:"column:created_at"`
	UpdatedAt       time.Time  `gorm:"column:updated_at"`
	AnonymisedAt    *time.Time `gorm:"column:anonymised_at"`
}

func (orderRow) TableName() string { return "orders" }

type itemRow struct {
	OrderID    string `gorm:"column:order_id;primaryKey"`
	Line       int    `gorm:"column:line;primaryKey"`
	SKU        string `gorm:"column:sku"`
	Quantity   int    `gorm:"column:quantity"`
	PriceCents int64  `gorm:"column:price_cents"`
}

func (itemRow) TableName() string { return "order_items" }

type idemRow struct {
	UserID      string    `gorm:"column:user_id;primaryKey"`
	Key         string    `gorm:"column:idem_key;primaryKey"`
	RequestHash string    `gorm:"column:request_hash"`
	OrderID     string    `gorm:"column:order_id"`
	CreatedAt   time.Time `gorm:"column:created_at"`
}

func (idemRow) TableName() string { return "idempotency_keys" }

type erasedRow struct {
	UserID   string    `gorm:"column:user_id;primaryKey"`
	ErasedAt time.Time `gorm:"column:erased_at"`
}

func (erasedRow) TableName() string { return "erased_customers" }

// lockCustomer serialises, per customer, the transactions of Create and
// Anonymise, so that one always sees the other's commit: without it, on
// PostgreSQL (READ COMMITTED) a create could check erased_customers before
// the erasure commits while the erasure's UPDATE misses the create's
// uncommitted order, and the order would keep the erased user's data.
// SQLite needs nothing: dbx opens its transactions IMMEDIATE, one writer
// at a time.
func lockCustomer(tx *gorm.DB, userID string) error {
	if tx.Name() != "postgres" {
		return nil
	}
	if err := tx.Exec("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", userID).Error; err != nil {
		return fmt.Errorf("lock customer: %w", err)
	}
	return nil
}

func (r orderRow) order(items []order.Item) order.Order {
	if items == nil {
		items = []order.Item{}
	}
	return order.Order{
		ID: r.ID, UserID: r.UserID, Status: order.Status(r.Status), Items: items,
		TotalCents: r.TotalCents, Currency: r.Currency, ShippingAddress: r.ShippingAddress,
		CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(), Version: r.Version,
	}
}

// now is the database's precision (microseconds on PostgreSQL), so what a
// create returns is exactly what a later read returns.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// Prices returns the catalogue entries of skus (unknown ones are absent).
func (s *Store) Prices(ctx context.Context, skus []string) (map[string]order.CatalogItem, error) {
	var rows []catalogRow
	if err := s.db.WithContext(ctx).Where("sku IN ?", skus).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("look up prices: %w", err)
	}
	out := make(map[string]order.CatalogItem, len(rows))
	for _, r := range rows {
		out[r.SKU] = order.CatalogItem{SKU: r.SKU, Name: r.Name, PriceCents: r.PriceCents, Currency: r.Currency}
	}
	return out, nil
}

// Idempotency identifies a create request: the customer's key and the hash
// of the request's canonical form. A zero Key means the client sent none.
type Idempotency struct {
	Key, Hash string
}

// Replay returns the order an earlier request with the same key made
// within IdempotencyWindow: found is false when the key is new or older;
// order.ErrIdempotencyMismatch when the key was used for a different
// request.
func (s *Store) Replay(ctx context.Context, userID string, idem Idempotency) (order.Order, bool, error) {
	if idem.Key == "" {
		return order.Order{}, false, nil
	}
	return s.replay(s.db.WithContext(ctx), userID, idem)
}

func (s *Store) replay(tx *gorm.DB, userID string, idem Idempotency) (order.Order, bool, error) {
	var r idemRow
	err := tx.Where("user_id = ? AND idem_key = ? AND created_at >= ?", userID, idem.Key, now().Add(-IdempotencyWindow)).
		Take(&r).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return order.Order{}, false, nil
	}
	if err != nil {
		return order.Order{}, false, fmt.Errorf("look up idempotency key: %w", err)
	}
	if r.RequestHash != idem.Hash {
		return order.Order{}, true, order.ErrIdempotencyMismatch
	}
	o, err := s.get(tx, r.OrderID)
	return o, true, err
}

// Create stores a new pending order for o.UserID with its lines, its
// idempotency key and order.created, in one transaction. When another
// request with the same key won a race, Create returns that request's order
// and replayed = true (or order.ErrIdempotencyMismatch). A key older than
// IdempotencyWindow, not yet pruned, is replaced. A customer erased
// meanwhile (Anonymise) is order.ErrCustomerErased, and nothing is written.
func (s *Store) Create(ctx context.Context, o order.Order, idem Idempotency) (out order.Order, replayed bool, err error) {
	id, err := uuid.NewV7()
	if err != nil {
		return order.Order{}, false, fmt.Errorf("order id: %w", err)
	}
	t := now()
	o.ID, o.Status, o.CreatedAt, o.UpdatedAt, o.Version = id.String(), order.Pending, t, t, 1
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := lockCustomer(tx, o.UserID); err != nil {
			return err
		}
		var erased int64
		if err := tx.Model(&erasedRow{}).Where("user_id = ?", o.UserID).Count(&erased).Error; err != nil {
			return fmt.Errorf("check erasure: %w", err)
		}
		if erased > 0 {
			return order.ErrCustomerErased
		}
		if idem.Key != "" {
			prev, found, err := s.replay(tx, o.UserID, idem)
			if found || err != nil {
				out, replayed = prev, found
				return err
			}
		}
		row := orderRow{
			ID: o.ID, UserID: o.UserID, Status: string(o.Status), TotalCents: o.TotalCents, Currency: o.Currency,
			ShippingAddress: o.ShippingAddress, Version: o.Version, CreatedAt: t, UpdatedAt: t,
		}
		if err := tx.Create(&row).Error; err != nil {
			return fmt.Errorf("insert order: %w", err)
		}
		items := make([]itemRow, len(o.Items))
		for i, it := range o.Items {
			items[i] = itemRow{OrderID: o.ID, Line: i + 1, SKU: it.SKU, Quantity: it.Quantity, PriceCents: it.PriceCents}
		}
		if err := tx.Create(&items).Error; err != nil {
			return fmt.Errorf("insert order lines: %w", err)
		}
		if idem.Key != "" {
			// An expired key may still be there (the retention pass runs
			// every PruneInterval): take its place, and only its place. A
			// live key here was stored by a concurrent request after our
			// replay check; then nothing is written and we roll back.
			res := tx.Clauses(clause.OnConflict{
				Columns:   []clause.Column{{Name: "user_id"}, {Name: "idem_key"}},
				DoUpdates: clause.AssignmentColumns([]string{"request_hash", "order_id", "created_at"}),
				Where: clause.Where{Exprs: []clause.Expression{
					clause.Expr{SQL: "idempotency_keys.created_at < ?", Vars: []any{t.Add(-IdempotencyWindow)}},
				}},
			}).Create(&idemRow{UserID: o.UserID, Key: idem.Key, RequestHash: idem.Hash, OrderID: o.ID, CreatedAt: t})
			if res.Error != nil {
				return fmt.Errorf("insert idempotency key: %w", res.Error)
			}
			if res.RowsAffected == 0 {
				return errKeyTaken
			}
		}
		ev, err := natsx.NewEvent(ctx, source, "order.created", o.ID, order.Created{
			OrderID: o.ID, UserID: o.UserID, TotalCents: o.TotalCents, Currency: o.Currency, Items: o.Items, Time: t,
		})
		if err != nil {
			return err
		}
		out = o
		return outbox.Add(tx, SubjectCreated, ev)
	})
	if err != nil && idem.Key != "" && !errors.Is(err, order.ErrIdempotencyMismatch) && !errors.Is(err, order.ErrCustomerErased) {
		// A concurrent request with the same key committed first and our
		// insert hit the key's primary key: answer as its replay.
		if prev, found, rerr := s.Replay(ctx, o.UserID, idem); found {
			return prev, true, rerr
		}
	}
	if err != nil {
		return order.Order{}, false, err
	}
	if !replayed {
		s.notify()
	}
	return out, replayed, nil
}

// Get returns the order with id and its lines, or order.ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (order.Order, error) {
	return s.get(s.db.WithContext(ctx), id)
}

func (s *Store) get(tx *gorm.DB, id string) (order.Order, error) {
	var r orderRow
	err := tx.Where("id = ?", id).Take(&r).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return order.Order{}, order.ErrNotFound
	}
	if err != nil {
		return order.Order{}, fmt.Errorf("get order: %w", err)
	}
	items, err := s.items(tx, []string{id})
	if err != nil {
		return order.Order{}, err
	}
	return r.order(items[id]), nil
}

// items loads the lines of several orders in one query.
func (s *Store) items(tx *gorm.DB, ids []string) (map[string][]order.Item, error) {
	var rows []itemRow
	if err := tx.Where("order_id IN ?", ids).Order("order_id, line").Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("get order lines: %w", err)
	}
	out := make(map[string][]order.Item, len(ids))
	for _, r := range rows {
		out[r.OrderID] = append(out[r.OrderID], order.Item{SKU: r.SKU, Quantity: r.Quantity, PriceCents: r.PriceCents})
	}
	return out, nil
}

// List returns up to limit orders, newest first, starting after the order
// id before (a cursor; "" for the first page), and the id to continue from
// ("" on the last page). userID "" lists everyone's orders (staff only —
// the handler decides).
func (s *Store) List(ctx context.Context, userID, before string, limit int) ([]order.Order, string, error) {
	db := s.db.WithContext(ctx)
	q := db.Order("id DESC").Limit(limit + 1)
	if userID != "" {
		q = q.Where("user_id = ?", userID)
	}
	if before != "" {
		q = q.Where("id < ?", before)
	}
	var rows []orderRow
	if err := q.Find(&rows).Error; err != nil {
		return nil, "", fmt.Errorf("list orders: %w", err)
	}
	next := ""
	if len(rows) > limit {
		rows = rows[:limit]
		next = rows[limit-1].ID
	}
	out := make([]order.Order, len(rows))
	if len(rows) == 0 {
		return out, "", nil
	}
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.ID
	}
	items, err := s.items(db, ids)
	if err != nil {
		return nil, "", err
	}
	for i, r := range rows {
		out[i] = r.order(items[r.ID])
	}
	return out, next, nil
}

// Decide chooses an order's next status from its current state, or refuses
// with an error that Transition returns unchanged. It may be called more
// than once when the order changes concurrently, each time with fresh data.
type Decide func(order.Order) (order.Status, error)

// Transition moves order id to the status decide picks, with optimistic
// locking: the update applies only if the order's version is still the one
// decide saw. If another writer got there first, the order is re-read and
// decide asked again, so a decision is never made on stale data (a cancel
// racing a shipment cannot both win). order.status_changed is queued in the
// same transaction. by is the subject making the change, for the event.
func (s *Store) Transition(ctx context.Context, id, by string, decide Decide) (order.Order, error) {
	for range maxRetries {
		cur, err := s.Get(ctx, id)
		if err != nil {
			return order.Order{}, err
		}
		to, err := decide(cur)
		if err != nil {
			return order.Order{}, err
		}
		t := now()
		won := false
		err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			res := tx.Model(&orderRow{}).Where("id = ? AND version = ?", id, cur.Version).
				Updates(map[string]any{"status": string(to), "version": cur.Version + 1, "updated_at": t})
			if res.Error != nil {
				return fmt.Errorf("update order: %w", res.Error)
			}
			if res.RowsAffected == 0 {
				return nil // lost the race: read again
			}
			won = true
			ev, err := natsx.NewEvent(ctx, source, "order.status_changed", id, order.StatusChanged{
				OrderID: id, UserID: cur.UserID, From: cur.Status, To: to, By: by, Time: t,
			})
			if err != nil {
				return err
			}
			return outbox.Add(tx, SubjectStatusChanged, ev)
		})
		if err != nil {
			return order.Order{}, err
		}
		if won {
			s.notify()
			cur.Status, cur.Version, cur.UpdatedAt = to, cur.Version+1, t
			return cur, nil
		}
	}
	return order.Order{}, order.ErrConflict
}

// Anonymise detaches every order of an erased user from them: the owner
// becomes order.AnonymousUser, the shipping address is dropped, the
// idempotency keys (scoped to the user) are deleted. Orders stay, for the
// books. The user is remembered as erased, so an order still being placed
// cannot be stored in their name afterwards (Create). It runs once per
// event (consumer.Once) and reports how many orders it changed.
func (s *Store) Anonymise(ctx context.Context, consumerName, eventID, userID string) (int64, error) {
	var n int64
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		first, err := consumer.Once(tx, consumerName, eventID)
		if err != nil || !first {
			return err
		}
		if err := lockCustomer(tx, userID); err != nil {
			return err
		}
		t := now()
		if err := tx.Clauses(clause.OnConflict{DoNothing: true}).Create(&erasedRow{UserID: userID, ErasedAt: t}).Error; err != nil {
			return fmt.Errorf("record erasure: %w", err)
		}
		if err := tx.Where("user_id = ?", userID).Delete(&idemRow{}).Error; err != nil {
			return fmt.Errorf("delete idempotency keys: %w", err)
		}
		res := tx.Model(&orderRow{}).Where("user_id = ?", userID).Updates(map[string]any{
			"user_id": order.AnonymousUser, "shipping_address": "", "anonymised_at": t, "updated_at": t,
			"version": gorm.Expr("version + 1"),
		})
		n = res.RowsAffected
		if res.Error != nil {
			return fmt.Errorf("anonymise orders: %w", res.Error)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// PruneIdempotencyKeys deletes the idempotency keys older than
// IdempotencyWindow, at most dbx.DefaultDeleteBatch per statement, and
// returns how many it deleted (also on error: "prune idempotency keys: …").
// Replay already ignores them; pruning keeps the table to a day of keys.
func (s *Store) PruneIdempotencyKeys(ctx context.Context) (int64, error) {
	n, err := dbx.DeleteBatched(ctx, s.db, dbx.Batch{
		Model: &idemRow{}, Key: "user_id, idem_key",
		Where: "created_at < ?", Args: []any{now().Add(-IdempotencyWindow)},
	})
	if err != nil {
		return n, fmt.Errorf("prune idempotency keys: %w", err)
	}
	return n, nil
}

// RunPruner prunes expired idempotency keys at start and every
// PruneInterval until ctx ends, logging failures to log.
func (s *Store) RunPruner(ctx context.Context, log *slog.Logger) {
	dbx.RunRetention(ctx, PruneInterval, log, "idempotency-key", s.PruneIdempotencyKeys)
}
