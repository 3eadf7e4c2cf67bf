// @ts-check
// The order API and the catalogue (CONTRACT §2), as deploy/loadtest/api.go.
import { JSON_HEADERS, json, request } from './http.js';
import { randomB64 } from './auth.js';

/**
 * @typedef {object} CatalogItem
 * @property {string} sku
 * @property {string} name
 * @property {number} price_cents
 * @property {string} currency
 */

/**
 * @typedef {object} Order
 * @property {string} id
 * @property {string} user_id
 * @property {string} status
 * @property {{sku: string, quantity: number, price_cents?: number}[]} items
 * @property {number} total_cents
 * @property {string} currency
 */

/**
 * GET /api/v1/catalog, anonymously.
 * @returns {{res: import('k6/http').RefinedResponse<'text'>, items: CatalogItem[]}}
 */
export function catalog() {
  const res = request({ route: 'catalog', method: 'GET', path: '/api/v1/catalog' });
  const page = res.status === 200 ? json(res) : undefined;
  return { res, items: page && Array.isArray(page.items) ? page.items : [] };
}

/**
 * POST /api/v1/orders with an Idempotency-Key (201, or 200 for a replay).
 * @param {string} token
 * @param {{sku: string, quantity: number}[]} items
 * @param {string} [key]
 * @returns {{res: import('k6/http').RefinedResponse<'text'>, order: Order | undefined}}
 */
export function createOrder(token, items, key = randomB64(16)) {
  const res = request({
    route: 'orders_create',
    method: 'POST',
    path: '/api/v1/orders',
    token,
    headers: { ...JSON_HEADERS, 'Idempotency-Key': key },
    body: JSON.stringify({ items }),
    expect: [201, 200],
  });
  return { res, order: res.status === 201 || res.status === 200 ? json(res) : undefined };
}

/**
 * GET /api/v1/orders: the caller's orders, first page.
 * @param {string} token
 * @param {number} [limit]
 * @returns {{res: import('k6/http').RefinedResponse<'text'>, items: Order[]}}
 */
export function listOrders(token, limit = 20) {
  const res = request({ route: 'orders_list', method: 'GET', path: `/api/v1/orders?limit=${limit}`, token });
  const page = res.status === 200 ? json(res) : undefined;
  return { res, items: page && Array.isArray(page.items) ? page.items : [] };
}

/**
 * GET /api/v1/orders/{id}.
 * @param {string} token
 * @param {string} id
 * @param {string} [route]
 * @param {number[]} [expect]
 * @returns {{res: import('k6/http').RefinedResponse<'text'>, order: Order | undefined}}
 */
export function getOrder(token, id, route = 'orders_get', expect = [200]) {
  const res = request({ route, method: 'GET', path: `/api/v1/orders/${encodeURIComponent(id)}`, token, expect });
  return { res, order: res.status === 200 ? json(res) : undefined };
}

/**
 * POST /api/v1/orders/{id}/cancel.
 * @param {string} token
 * @param {string} id
 * @returns {{res: import('k6/http').RefinedResponse<'text'>, order: Order | undefined}}
 */
export function cancelOrder(token, id) {
  const res = request({ route: 'orders_cancel', method: 'POST', path: `/api/v1/orders/${encodeURIComponent(id)}/cancel`, token });
  return { res, order: res.status === 200 ? json(res) : undefined };
}

/**
 * GET /api/v1/users/me.
 * @param {string} token
 * @param {string} [route]
 * @returns {import('k6/http').RefinedResponse<'text'>}
 */
export function profile(token, route = 'users_me') {
  return request({ route, method: 'GET', path: '/api/v1/users/me', token });
}
