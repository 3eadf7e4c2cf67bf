package order

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rampart-go/rampart/shared/policy"
	"github.com/rampart-go/rampart/shared/problem"
	"github.com/rampart-go/rampart/shared/tokens"
)

// Status is where an order is in its life.
type Status string

// The statuses of CONTRACT §2.
const (
	Pending   Status = "pending"
	Paid      Status = "paid"
	Shipped   Status = "shipped"
	Delivered Status = "delivered"
	Cancelled Status = "cancelled"
)

// Statuses lists every status, in life order.
func Statuses() []Status { return []Status{Pending, Paid, Shipped, Delivered, Cancelled} }

// transitions is the whole state machine: pending → paid → shipped →
// delivered, and cancelled from pending or paid. Delivered and cancelled
// are final. Anything not listed is refused.
var transitions = map[Status][]Status{
	Pending: {Paid, Cancelled},
	Paid:    {Shipped, Cancelled},
	Shipped: {Delivered},
}

// CanTransition reports whether an order may go from one status to another.
// Staying put is not a transition.
func CanTransition(from, to Status) bool {
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// ParseStatus accepts exactly the statuses of the contract.
func ParseStatus(s string) (Status, bool) {
	for _, st := range Statuses() {
		if string(st) == s {
			return st, true
		}
	}
	return "", false
}

// Item is one line of an order. PriceCents is the catalogue's unit price
// when the order was placed: later price changes do not rewrite history.
type Item struct {
	SKU        string `json:"sku"`
	Quantity   int    `json:"quantity"`
	PriceCents int64  `json:"price_cents"`
}

// Order is a customer's order as the API shows it. ShippingAddress is the
// snapshot taken from the customer's profile when the order was placed; it
// is personal data and is dropped when the customer is erased.
type Order struct {
	ID              string    `json:"id"`
	UserID          string    `json:"user_id"`
	Status          Status    `json:"status"`
	Items           []Item    `json:"items"`
	TotalCents      int64     `json:"total_cents"`
	Currency        string    `json:"currency"`
	ShippingAddress string    `json:"shipping_address"`
	CreatedAt       time.Time `json:"created_at"`
	UpdatedAt       time.Time `json:"updated_at"`
	// Version counts changes, for optimistic locking; not part of the API.
	Version int `json:"-"`
}

// AnonymousUser is the owner of an erased customer's orders: the orders
// stay for the books, the link to the person does not.
const AnonymousUser = "00000000-0000-0000-0000-000000000000"

// Limits on an order (API4: a request cannot make us do unbounded work).
const (
	MaxItems    = 100
	MaxQuantity = 1000
	maxSKULen   = 64
)

// Errors the store and the handlers map to statuses.
var (
	ErrNotFound = errors.New("order not found")
	// ErrConflict: the order changed between read and write more often than
	// the store retries.
	ErrConflict = errors.New("order changed concurrently")
	// ErrIdempotencyMismatch: the Idempotency-Key was used before with a
	// different request.
	ErrIdempotencyMismatch = errors.New("idempotency key reused with a different request")
	// ErrCustomerErased: the customer was erased (user.deleted applied);
	// nothing may be ordered in their name any more.
	ErrCustomerErased = errors.New("customer erased")
)

// LineRequest is one requested line: the client names a SKU and a quantity
// and nothing else — no price, no total (CONTRACT §2).
type LineRequest struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

// CreateRequest is the body of POST /orders. The strict decoder refuses
// any other field (user_id, status, price_cents, total_cents…), so a client
// cannot assign them.
type CreateRequest struct {
	Items []LineRequest `json:"items"`
}

// Validate checks the shape of the request against the limits, reporting
// every problem at once. Whether each SKU exists is Price's job.
func (r CreateRequest) Validate() []problem.FieldError {
	var errs []problem.FieldError
	if len(r.Items) < 1 || len(r.Items) > MaxItems {
		return []problem.FieldError{{Field: "items", Message: fmt.Sprintf("must hold 1 to %d lines", MaxItems)}}
	}
	seen := make(map[string]bool, len(r.Items))
	for i, l := range r.Items {
		at := fmt.Sprintf("items[%d]", i)
		switch {
		case l.SKU == "" || len(l.SKU) > maxSKULen || !skuChars(l.SKU):
			errs = append(errs, problem.FieldError{Field: at + ".sku", Message: "must be a catalogue SKU"})
		case seen[l.SKU]:
			errs = append(errs, problem.FieldError{Field: at + ".sku", Message: "appears twice: use one line with the total quantity"})
		}
		seen[l.SKU] = true
		if l.Quantity < 1 || l.Quantity > MaxQuantity {
			errs = append(errs, problem.FieldError{Field: at + ".quantity", Message: fmt.Sprintf("must be 1 to %d", MaxQuantity)})
		}
	}
	return errs
}

// skuChars: SKUs are upper-case letters, digits and dashes; anything else
// cannot be one and is not worth a database lookup.
func skuChars(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool {
		return (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '-'
	})
}

// Price turns a validated request into order lines at catalogue prices and
// the total, in integer minor units. Every SKU must be in the catalogue,
// and an order has one currency.
func Price(r CreateRequest, catalog map[string]CatalogItem) ([]Item, int64, string, []problem.FieldError) {
	var errs []problem.FieldError
	items := make([]Item, 0, len(r.Items))
	var total int64
	currency := ""
	for i, l := range r.Items {
		c, ok := catalog[l.SKU]
		if !ok {
			errs = append(errs, problem.FieldError{Field: fmt.Sprintf("items[%d].sku", i), Message: "is not in the catalogue"})
			continue
		}
		if currency == "" {
			currency = c.Currency
		} else if c.Currency != currency {
			errs = append(errs, problem.FieldError{Field: fmt.Sprintf("items[%d].sku", i), Message: "is priced in another currency than the rest of the order"})
			continue
		}
		items = append(items, Item{SKU: l.SKU, Quantity: l.Quantity, PriceCents: c.PriceCents})
		// At most 100 lines × 1000 units, so overflow needs a unit price
		// above 9×10^13 cents; the catalogue is ours, but check anyway.
		line := c.PriceCents * int64(l.Quantity)
		if c.PriceCents < 0 || line/int64(l.Quantity) != c.PriceCents || total+line < total {
			errs = append(errs, problem.FieldError{Field: fmt.Sprintf("items[%d]", i), Message: "total out of range"})
			continue
		}
		total += line
	}
	if len(errs) > 0 {
		return nil, 0, "", errs
	}
	return items, total, currency, nil
}

// Who may do what. Roles and scopes are checked by the route; these are the
// object-level rules (API1).

// IsStaff reports whether the holder sees every order.
func IsStaff(c *tokens.Claims) bool {
	return c != nil && (c.HasRole(policy.RoleManager) || c.HasRole(policy.RoleAdmin))
}

// CanView reports whether the holder may read o: its owner or staff.
func CanView(c *tokens.Claims, o Order) bool {
	return c != nil && (o.UserID == c.Subject || IsStaff(c))
}

// CanCancel reports whether the holder may cancel o as it is now: staff
// whenever the state machine allows it, the owner only while it is pending
// (once paid, a refund is a staff decision).
func CanCancel(c *tokens.Claims, o Order) bool {
	if IsStaff(c) {
		return true
	}
	return c != nil && o.UserID == c.Subject && o.Status == Pending
}

// Created is the data of order.created.
type Created struct {
	OrderID    string    `json:"order_id"`
	UserID     string    `json:"user_id"`
	TotalCents int64     `json:"total_cents"`
	Currency   string    `json:"currency"`
	Items      []Item    `json:"items"`
	Time       time.Time `json:"time"`
}

// StatusChanged is the data of order.status_changed.
type StatusChanged struct {
	OrderID string    `json:"order_id"`
	UserID  string    `json:"user_id"`
	From    Status    `json:"from"`
	To      Status    `json:"to"`
	By      string    `json:"by"`
	Time    time.Time `json:"time"`
}

// UserDeleted is the part of user-service's user.deleted order-service needs.
type UserDeleted struct {
	UserID string `json:"user_id"`
}
