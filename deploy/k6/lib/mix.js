// @ts-check
// The realistic mix of load.js, spike.js and soak.js (and of abuse.js's
// real users), as deploy/loadtest/load.go: mostly reads, some orders, a
// few refreshes and fresh logins. Each VU is one user: it registers and
// signs in on its first iteration, from its own source address when k6
// runs with --local-ips (see deploy/k6/README.md, "Rate limits"), and keeps its session.
import { fail } from 'k6';
import exec from 'k6/execution';
import { login, newUser } from './auth.js';
import { catalog, createOrder, getOrder, listOrders, profile } from './api.js';
import { ok } from './checks.js';
import { durationSeconds } from './config.js';

/** Mix weights per 100 iterations. */
export const STEPS = [
  ['browse', 35],
  ['list_orders', 22],
  ['read_order', 18],
  ['create_order', 12],
  ['profile', 10],
  ['refresh', 2.5],
  ['login', 0.5],
];

/** The route tags the mix is judged on. */
export const MIX_ROUTES = ['catalog', 'orders_list', 'orders_get', 'orders_create', 'users_me', 'token_refresh'];

/**
 * What setup() hands every VU.
 * @typedef {object} MixData
 * @property {string[]} skus
 */

/** This VU's user. */
const me = {
  /** @type {import('./auth.js').Session | null} */
  session: null,
  /** @type {string[]} ids of orders this user created, for reads */
  orders: [],
  /** when the last failed sign-in was, so a failing VU does not hammer the register limit */
  failedAt: 0,
};

/**
 * setup(): the catalogue's SKUs.
 * @returns {MixData}
 */
export function mixSetup() {
  const { res, items } = catalog();
  if (res.status !== 200 || items.length === 0) {
    fail(`setup: catalogue status ${res.status}, ${items.length} items`);
  }
  return { skus: items.map((i) => i.sku) };
}

/**
 * @template T
 * @param {T[]} xs
 * @returns {T}
 */
export function pick(xs) {
  return xs[Math.floor(Math.random() * xs.length)];
}

/**
 * This VU's session, signing up and in on first use.
 * @returns {import('./auth.js').Session | null}
 */
function session() {
  if (me.session) {
    return me.session;
  }
  if (Date.now() - me.failedAt < 10000) {
    return null;
  }
  me.session = newUser(`load${exec.vu.idInTest}`);
  if (!ok('user signs up and in with code + PKCE', me.session !== null)) {
    me.failedAt = Date.now();
  }
  return me.session;
}

/**
 * @param {import('./auth.js').Session} s
 * @param {MixData} data
 */
function createOrderFor(s, data) {
  const { res, order } = createOrder(s.token(), [{ sku: pick(data.skus), quantity: 1 + Math.floor(Math.random() * 3) }]);
  if (ok('order is created', res.status === 201 && !!order && !!order.id) && order && me.orders.length < 50) {
    me.orders.push(order.id);
  }
}

/**
 * One weighted-random step of the mix.
 * @param {MixData} data
 */
export function iterate(data) {
  let r = Math.random() * 100;
  let step = 'browse';
  for (const [name, weight] of STEPS) {
    if (r < Number(weight)) {
      step = String(name);
      break;
    }
    r -= Number(weight);
  }
  if (step === 'browse') {
    ok('catalog is 200', catalog().res.status === 200);
    return;
  }
  const s = session();
  if (!s) {
    return;
  }
  switch (step) {
    case 'list_orders':
      ok('orders list is 200', listOrders(s.token()).res.status === 200);
      break;
    case 'read_order': {
      if (me.orders.length === 0) {
        createOrderFor(s, data);
        break;
      }
      const { res, order } = getOrder(s.token(), pick(me.orders));
      ok('own order is readable', res.status === 200 && !!order && order.user_id === s.subject);
      break;
    }
    case 'create_order':
      createOrderFor(s, data);
      break;
    case 'profile':
      ok('profile is 200', profile(s.token()).status === 200);
      break;
    case 'refresh':
      ok('refresh succeeds', s.refresh());
      break;
    case 'login': {
      // The user signs in again; the old session just stops being used,
      // as when a browser tab is closed.
      const again = login(s.email, s.password);
      if (ok('login succeeds', again !== null) && again) {
        me.session = again;
      }
      break;
    }
  }
}

/**
 * @param {number} v
 * @returns {string}
 */
function thresholdRate(v) {
  return v === 0 ? 'rate==0' : `rate<${v}`;
}

/**
 * The budgets of every route tag the mix uses, as deploy/loadtest's
 * mixThresholds: no unexpected 401 (a run across `make rotate-keys`), every
 * check passes, error rate and p95/p99 per route.
 * @param {number} p95 ms
 * @param {number} p99 ms
 * @param {number} errRate
 * @returns {Record<string, string[]>}
 */
export function mixThresholds(p95, p99, errRate) {
  /** @type {Record<string, string[]>} */
  const th = {
    unexpected_401: ['count==0'],
    checks: ['rate==1'],
    http_req_failed: [thresholdRate(errRate)],
    http_req_duration: [`p(95)<${p95}`],
  };
  for (const route of MIX_ROUTES) {
    th[`http_req_duration{route:${route}}`] = [`p(95)<${p95}`, `p(99)<${p99}`];
    th[`http_req_failed{route:${route}}`] = [thresholdRate(errRate)];
    // Tracked so the summary can count them; always holds.
    th[`http_reqs{route:${route}}`] = ['count>=0'];
  }
  return th;
}

/**
 * Iterations an arrival-rate schedule starts: the area under its rate curve.
 * @param {number} startRate per second
 * @param {{duration: string, target: number}[]} stages
 * @returns {number}
 */
export function plannedIterations(startRate, stages) {
  let rate = startRate;
  let n = 0;
  for (const st of stages) {
    n += ((rate + st.target) / 2) * durationSeconds(st.duration);
    rate = st.target;
  }
  return n;
}

/**
 * A threshold on dropped iterations: at most share of the planned ones
 * (the system fell behind the arrival rate).
 * @param {number} planned
 * @param {number} share
 * @returns {string[]}
 */
export function droppedBelow(planned, share) {
  return [`count<${Math.max(1, Math.floor(planned * share))}`];
}

/**
 * The ramping-arrival-rate scenario of the mix.
 * @param {number} startRate
 * @param {{duration: string, target: number}[]} stages
 * @param {number} vus pre-allocated VUs (= users)
 * @param {number} maxVUs
 * @returns {import('k6/options').RampingArrivalRateScenario}
 */
export function mixScenario(startRate, stages, vus, maxVUs) {
  return {
    executor: 'ramping-arrival-rate',
    startRate,
    timeUnit: '1s',
    preAllocatedVUs: vus,
    maxVUs,
    stages,
    gracefulStop: '10s',
  };
}

/**
 * Seconds as a k6 duration.
 * @param {number} s
 * @returns {string}
 */
export function secs(s) {
  return `${Math.max(1, Math.round(s))}s`;
}
