// Package order holds the order service's business rules: the catalogue,
// orders, and who may do what to them. It knows nothing of HTTP, SQL or NATS.
package order

// CatalogItem is a product the shop sells. Prices live on the server only:
// an order's total is always computed from these, never taken from a client.
type CatalogItem struct {
	SKU        string `json:"sku"`
	Name       string `json:"name"`
	PriceCents int64  `json:"price_cents"`
	Currency   string `json:"currency"`
}
