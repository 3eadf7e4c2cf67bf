// @ts-check
// smoke.js — every public route once, with the checks deploy/loadtest's
// `smoke` makes on what CONTRACT §2 promises; every check must pass.
//
//   SSL_CERT_FILE=.devstack/pki/ca.crt k6 run -e BASE_URL=https://127.0.0.1:8443 \
//     -e CREDENTIALS=$PWD/.devstack/credentials.json deploy/k6/smoke.js
//
// Without CREDENTIALS the manager, admin (key rotation) and machine-client
// checks are skipped: they need the demo accounts' passwords.
import { sleep } from 'k6';
import { b64encode } from 'k6/encoding';
import { BASE_URL, CREDENTIALS } from './lib/config.js';
import { DEMO_CLIENT, login, randomB64, register } from './lib/auth.js';
import { cancelOrder, catalog, createOrder, getOrder, listOrders, profile } from './lib/api.js';
import { ok, status } from './lib/checks.js';
import { forge } from './lib/forge.js';
import { FORM_HEADERS, JSON_HEADERS, form, header, json, query, request } from './lib/http.js';
import { TREND_STATS, summaryWriter } from './lib/summary.js';

/** @type {import('k6/options').Options} */
export const options = {
  scenarios: { smoke: { executor: 'shared-iterations', vus: 1, iterations: 1, maxDuration: '2m' } },
  thresholds: {
    checks: ['rate==1'],
    unexpected_401: ['count==0'],
    http_req_failed: ['rate==0'],
  },
  summaryTrendStats: TREND_STATS,
};

/** @returns {string[]} the JWKS key ids */
function jwksKids() {
  const res = request({ route: 'jwks', method: 'GET', path: '/.well-known/jwks.json' });
  const set = json(res);
  return set && Array.isArray(set.keys) ? set.keys.map((/** @type {{kid: string}} */ k) => k.kid).sort() : [];
}

export default function () {
  // Discovery, keys, health.
  let res = request({ route: 'discovery', method: 'GET', path: '/.well-known/openid-configuration' });
  const disco = json(res) || {};
  ok('discovery issuer is the gateway', disco.issuer === BASE_URL, disco.issuer);
  ok(
    'discovery lists grant types and S256',
    Array.isArray(disco.grant_types_supported) && disco.grant_types_supported.length > 0 &&
      JSON.stringify(disco.code_challenge_methods_supported) === '["S256"]',
    disco,
  );
  const kidsBefore = jwksKids();
  ok('jwks has keys with kid', kidsBefore.length > 0 && kidsBefore.every((k) => !!k));
  status(request({ route: 'healthz', method: 'GET', path: '/healthz' }), 'healthz', 200);
  status(request({ route: 'readyz', method: 'GET', path: '/readyz' }), 'readyz', 200);

  // Catalogue.
  const cat = catalog();
  status(cat.res, 'catalog', 200);
  const items = cat.items;
  ok('catalog has priced items', items.length > 0 && !!items[0].sku && items[0].price_cents > 0 && !!items[0].currency, items);
  if (items.length === 0) {
    return;
  }
  /** @type {Record<string, number>} */
  const prices = {};
  for (const it of items) {
    prices[it.sku] = it.price_cents;
  }

  // A new user: register, sign in through the browser flow.
  const email = `smoke-${randomB64(6).toLowerCase().replace(/[^a-z0-9]/g, 'x')}@load.rampart.test`;
  const password = randomB64(18);
  status(register(email, password), 'register', 201);
  const me = login(email, password);
  if (!ok('new user signs in with code + PKCE', me !== null) || !me) {
    return;
  }
  res = request({ route: 'userinfo', method: 'GET', path: '/oauth2/userinfo', token: me.token() });
  const ui = json(res) || {};
  ok('userinfo names the user', res.status === 200 && ui.sub === me.subject && ui.email === email, ui);

  // Profile: made from account.created by a consumer, so wait for it.
  for (let i = 0; i < 100; i++) {
    res = request({ route: 'users_me_wait', method: 'GET', path: '/api/v1/users/me', token: me.token(), expect: [200, 404] });
    if (res.status !== 404) {
      break;
    }
    sleep(0.1);
  }
  res = profile(me.token());
  ok('GET /users/me is the caller\'s profile', res.status === 200 && (json(res) || {}).id === me.subject, res.body);
  res = request({ route: 'users_me_patch', method: 'PATCH', path: '/api/v1/users/me', token: me.token(), headers: JSON_HEADERS,
    body: JSON.stringify({ display_name: 'Smoke Tester' }) });
  ok('PATCH /users/me changes the name', res.status === 200 && (res.body || '').includes('Smoke Tester'), res.status);
  res = request({ route: 'users_me_patch_bad', method: 'PATCH', path: '/api/v1/users/me', token: me.token(), headers: JSON_HEADERS,
    body: JSON.stringify({ email: 'x@example.com' }), expect: [400] });
  status(res, 'PATCH /users/me with email', 400);
  status(request({ route: 'users_get', method: 'GET', path: `/api/v1/users/${me.subject}`, token: me.token() }), 'GET /users/{self}', 200);

  // Bearer errors (RFC 6750).
  res = request({ route: 'orders_no_token', method: 'GET', path: '/api/v1/orders', expect: [401] });
  ok('no token is 401 with a bare challenge', res.status === 401 && header(res, 'WWW-Authenticate') === 'Bearer realm="rampart"', header(res, 'WWW-Authenticate'));
  res = request({ route: 'orders_bad_token', method: 'GET', path: '/api/v1/orders', expect: [401], token: forge('none', '', me.subject, BASE_URL) });
  ok('forged token is 401 invalid_token', res.status === 401 && (header(res, 'WWW-Authenticate') || '').includes('error="invalid_token"'), header(res, 'WWW-Authenticate'));

  // Orders: create (idempotent), list, read, cancel.
  const lines = [{ sku: items[0].sku, quantity: 2 }];
  if (items.length > 1) {
    lines.push({ sku: items[1].sku, quantity: 1 });
  }
  const want = lines.reduce((n, l) => n + prices[l.sku] * l.quantity, 0);
  const key = randomB64(16);
  const created = createOrder(me.token(), lines, key);
  status(created.res, 'POST /orders', 201);
  const o = created.order;
  ok('order is pending, mine, priced by the server',
    !!o && o.status === 'pending' && o.user_id === me.subject && o.total_cents === want && !!o.id, o);
  const replay = createOrder(me.token(), lines, key);
  ok('Idempotency-Key replay returns the same order', !!replay.order && !!o && replay.order.id === o.id, replay.order);
  const list = listOrders(me.token());
  ok('GET /orders lists exactly the new order', list.res.status === 200 && list.items.length === 1 && !!o && list.items[0].id === o.id, list.items);

  // Another user may not see the new user's things: 404, not 403.
  const peerEmail = `smoke-peer-${randomB64(6).toLowerCase().replace(/[^a-z0-9]/g, 'x')}@load.rampart.test`;
  const peerPassword = randomB64(18);
  status(register(peerEmail, peerPassword), 'register (peer)', 201);
  const peer = login(peerEmail, peerPassword);
  if (!ok('peer signs in', peer !== null) || !peer) {
    return;
  }
  status(request({ route: 'users_get_foreign', method: 'GET', path: `/api/v1/users/${me.subject}`, token: peer.token(), expect: [404] }),
    'another user\'s profile', 404);
  status(request({ route: 'users_list_user', method: 'GET', path: '/api/v1/users', token: peer.token(), expect: [403] }), 'GET /users as USER', 403);
  if (ok('an order exists to read', !!o && !!o.id) && o) {
    const got = getOrder(me.token(), o.id);
    ok('GET /orders/{id} is the order', got.res.status === 200 && !!got.order && got.order.id === o.id && got.order.total_cents === want, got.order);
    status(getOrder(peer.token(), o.id, 'orders_get_foreign', [404]).res, 'another user\'s order (404, not 403)', 404);
    status(request({ route: 'orders_patch_user', method: 'PATCH', path: `/api/v1/orders/${o.id}`, token: me.token(), headers: JSON_HEADERS,
      body: JSON.stringify({ status: 'paid' }), expect: [403] }), 'PATCH /orders/{id} as USER', 403);
    const cancelled = cancelOrder(me.token(), o.id);
    ok('owner cancels a pending order', cancelled.res.status === 200 && !!cancelled.order && cancelled.order.status === 'cancelled', cancelled.res.body);
  }

  if (CREDENTIALS) {
    // Manager: every profile, order status changes.
    const m = CREDENTIALS.accounts.manager;
    const mgr = m ? login(m.email, m.password) : null;
    if (ok('manager signs in', mgr !== null) && mgr) {
      res = request({ route: 'users_list', method: 'GET', path: '/api/v1/users?limit=5', token: mgr.token() });
      ok('GET /users as MANAGER is a page', res.status === 200 && ((json(res) || {}).items || []).length > 0, res.status);
      const o3 = createOrder(me.token(), lines.slice(0, 1)).order;
      if (ok('second order is created', !!o3 && !!o3.id) && o3) {
        res = request({ route: 'orders_patch', method: 'PATCH', path: `/api/v1/orders/${o3.id}`, token: mgr.token(), headers: JSON_HEADERS,
          body: JSON.stringify({ status: 'paid' }) });
        ok('MANAGER moves an order to paid', res.status === 200 && (json(res) || {}).status === 'paid', res.body);
        status(getOrder(mgr.token(), o3.id, 'orders_get_manager').res, 'MANAGER reads any order', 200);
      }
    }

    // Admin: the account API and a signing-key rotation the users never notice.
    const a = CREDENTIALS.accounts.admin;
    const admin = a ? login(a.email, a.password, 'openid admin') : null;
    if (ok('admin signs in with scope admin', admin !== null) && admin) {
      status(request({ route: 'auth_accounts', method: 'GET', path: '/api/v1/auth/accounts?limit=5', token: admin.token() }), 'GET /auth/accounts as ADMIN', 200);
      status(request({ route: 'auth_accounts_user', method: 'GET', path: '/api/v1/auth/accounts', token: me.token(), expect: [403] }), 'GET /auth/accounts as USER', 403);
      status(request({ route: 'keys_rotate', method: 'POST', path: '/api/v1/auth/keys/rotate', token: admin.token(), expect: [204] }), 'POST /auth/keys/rotate', 204);
      const kidsAfter = jwksKids();
      ok('JWKS keeps the previous key and adds the new one', kidsAfter.length > kidsBefore.length || JSON.stringify(kidsAfter) !== JSON.stringify(kidsBefore), { kidsBefore, kidsAfter });
      status(profile(me.token(), 'users_me_rotated'), 'a token signed before the rotation', 200);
      ok('refresh after the rotation', me.refresh());
      status(profile(me.token(), 'users_me_new_key'), 'the refreshed token (new key)', 200);
    }

    // Machine client: client_credentials, introspection.
    const machine = CREDENTIALS.clients.find((c) => c.client_id === 'rampart-machine');
    if (ok('credentials name the machine client', !!machine && !!machine.client_secret) && machine && machine.client_secret) {
      const basic = `Basic ${encodingBasic(machine.client_id, machine.client_secret)}`;
      res = request({ route: 'token_client_credentials', method: 'POST', path: '/oauth2/token', headers: { ...FORM_HEADERS, Authorization: basic },
        body: form({ grant_type: 'client_credentials' }) });
      status(res, 'client_credentials', 200);
      res = request({ route: 'introspect', method: 'POST', path: '/oauth2/introspect', headers: { ...FORM_HEADERS, Authorization: basic },
        body: form({ token: me.token() }) });
      const intro = json(res) || {};
      ok('introspection: the user\'s token is active', res.status === 200 && intro.active === true && intro.sub === me.subject, res.body);
    }
  }

  // The peer revokes its refresh token (RFC 7009), then signs out.
  const peerRefresh = peer.refreshToken;
  status(request({ route: 'revoke', method: 'POST', path: '/oauth2/revoke', headers: FORM_HEADERS,
    body: form({ token: peerRefresh, client_id: DEMO_CLIENT }) }), 'POST /oauth2/revoke', 200);
  res = request({ route: 'token_refresh_revoked', method: 'POST', path: '/oauth2/token', headers: FORM_HEADERS, expect: [400],
    body: form({ grant_type: 'refresh_token', refresh_token: peerRefresh, client_id: DEMO_CLIENT }) });
  ok('a revoked refresh token is invalid_grant', res.status === 400 && (res.body || '').includes('invalid_grant'), res.body);
  res = request({ route: 'logout', method: 'GET', path: `/oauth2/logout?${query({ id_token_hint: peer.idToken })}`, jar: peer.jar || undefined });
  status(res, 'GET /oauth2/logout', 200);

  // Erasure: the user deletes themself; their token stops working.
  const access = me.token();
  status(request({ route: 'users_delete', method: 'DELETE', path: `/api/v1/users/${me.subject}`, token: access, expect: [204] }), 'DELETE /users/{self}', 204);
  let gone = false;
  for (let i = 0; i < 100 && !gone; i++) {
    res = request({ route: 'users_me_erased', method: 'GET', path: '/api/v1/users/me', token: access, expect: [200, 401, 404] });
    gone = res.status === 401;
    if (!gone) {
      sleep(0.1);
    }
  }
  ok('after erasure the user\'s token is refused', gone);
}

/**
 * client_secret_basic credentials (RFC 6749 §2.3.1: form-encoded, then base64).
 * @param {string} id
 * @param {string} secret
 * @returns {string}
 */
function encodingBasic(id, secret) {
  return b64encode(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`, 'std');
}

export const handleSummary = summaryWriter('smoke');
