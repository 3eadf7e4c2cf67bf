package loadtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
)

// CatalogItem is CONTRACT §2's catalogue item.
type CatalogItem struct {
	SKU        string `json:"sku"`
	Name       string `json:"name"`
	PriceCents int64  `json:"price_cents"`
	Currency   string `json:"currency"`
}

// OrderItem is one line of an order.
type OrderItem struct {
	SKU        string `json:"sku"`
	Quantity   int    `json:"quantity"`
	PriceCents int64  `json:"price_cents,omitempty"`
}

// Order is CONTRACT §2's order.
type Order struct {
	ID         string      `json:"id"`
	UserID     string      `json:"user_id"`
	Status     string      `json:"status"`
	Items      []OrderItem `json:"items"`
	TotalCents int64       `json:"total_cents"`
	Currency   string      `json:"currency"`
	CreatedAt  string      `json:"created_at"`
	UpdatedAt  string      `json:"updated_at"`
}

// page is CONTRACT §2's list shape.
type page[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor,omitempty"`
}

var jsonHeader = http.Header{"Content-Type": {"application/json"}}

func jsonBody(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// register creates an account (201).
func register(ctx context.Context, c *Client, email, password string) (*Response, error) {
	resp, err := c.Do(ctx, Request{
		Tag: "register", Method: http.MethodPost, Path: "/api/v1/auth/register", Header: jsonHeader,
		Body:   jsonBody(map[string]string{"email": email, "password": password, "display_name": "Load Test"}),
		Expect: []int{http.StatusCreated},
	})
	if err != nil {
		return nil, err
	}
	if !resp.OK {
		return resp, fmt.Errorf("register %s: status %d: %s", email, resp.StatusCode, resp.Body)
	}
	return resp, nil
}

// catalog fetches the catalogue anonymously.
func catalog(ctx context.Context, c *Client) ([]CatalogItem, *Response, error) {
	resp, err := c.Do(ctx, Request{Tag: "catalog", Method: http.MethodGet, Path: "/api/v1/catalog"})
	if err != nil {
		return nil, nil, err
	}
	var p page[CatalogItem]
	if resp.OK {
		if err := resp.JSON(&p); err != nil {
			return nil, resp, fmt.Errorf("decode catalogue: %w", err)
		}
	}
	return p.Items, resp, nil
}

// createOrder posts an order with an Idempotency-Key (201).
func createOrder(ctx context.Context, s *Session, key string, items []OrderItem) (*Order, *Response, error) {
	resp, err := s.Do(ctx, Request{
		Tag: "orders_create", Method: http.MethodPost, Path: "/api/v1/orders",
		Header: http.Header{"Content-Type": {"application/json"}, "Idempotency-Key": {key}},
		Body:   jsonBody(map[string]any{"items": items}), Expect: []int{http.StatusCreated, http.StatusOK},
	})
	if err != nil {
		return nil, nil, err
	}
	var o Order
	if resp.OK {
		if err := resp.JSON(&o); err != nil {
			return nil, resp, fmt.Errorf("decode order: %w", err)
		}
	}
	return &o, resp, nil
}

// listOrders lists the caller's orders (first page).
func listOrders(ctx context.Context, s *Session, limit int) ([]Order, *Response, error) {
	resp, err := s.Do(ctx, Request{Tag: "orders_list", Method: http.MethodGet, Path: "/api/v1/orders?" + url.Values{"limit": {fmt.Sprint(limit)}}.Encode()})
	if err != nil {
		return nil, nil, err
	}
	var p page[Order]
	if resp.OK {
		if err := resp.JSON(&p); err != nil {
			return nil, resp, fmt.Errorf("decode orders: %w", err)
		}
	}
	return p.Items, resp, nil
}

// getOrder reads one order; expect lists the acceptable statuses.
func getOrder(ctx context.Context, s *Session, tag, id string, expect ...int) (*Order, *Response, error) {
	resp, err := s.Do(ctx, Request{Tag: tag, Method: http.MethodGet, Path: "/api/v1/orders/" + url.PathEscape(id), Expect: expect})
	if err != nil {
		return nil, nil, err
	}
	var o Order
	if resp.StatusCode == http.StatusOK {
		_ = resp.JSON(&o)
	}
	return &o, resp, nil
}
