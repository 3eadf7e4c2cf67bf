// @ts-check
// abuse.js — attackers mixed with real users (deploy/loadtest's `abuse`).
// Real users run the realistic mix alone for the first half (phase
// baseline) and alongside the attackers for the second (phase attack).
// Attackers, each scenario its own VU(s) and so its own source address
// under --local-ips:
//   stuffing   credential stuffing through the real login form
//   forged     access tokens with alg none, a foreign signature, expired, HS256
//   bola       a signed-in user probing other users' orders and profiles
//   xff        an anonymous flood with random X-Forwarded-For, X-Real-IP,
//              Forwarded and True-Client-IP headers: still 429
// Thresholds: every attack is stopped (401/404/429), the X-Forwarded-For
// flood gets no more through than one address's budget, real users keep
// their error budget (none) and p95 (P95_MS, default 60 ms: 20 % over the
// load target) under attack, and the services' security counters, read
// from /metrics in setup() and teardown(), rose. (k6 cannot compare two
// sub-metrics in a threshold; the summary shows the attack/baseline p95
// side by side, and deploy/loadtest checks the 20 % ratio exactly.)
//
// Needs the gateway's default rate limits and --local-ips, so that every
// VU is its own client address and the flood's address is not the users':
//
//   SSL_CERT_FILE=.devstack/pki/ca.crt k6 run --local-ips=127.1.0.1-127.1.3.254 \
//     -e BASE_URL=https://127.0.0.1:8443 -e ENDPOINTS=$PWD/.devstack/endpoints.json deploy/k6/abuse.js
//
// RATE real-user iterations/s (100), DURATION whole run (40s), VUS (40), P95_MS (60).
import { fail } from 'k6';
import { Counter, Gauge, Rate } from 'k6/metrics';
import { BASE_URL, durationSeconds, envDuration, envNumber } from './lib/config.js';
import http from 'k6/http';
import exec from 'k6/execution';
import { CALLBACK, DEMO_CLIENT, Session, newUser, parseForm, randomB64 } from './lib/auth.js';
import { createOrder, getOrder } from './lib/api.js';
import { ok } from './lib/checks.js';
import { FORGED_KINDS, forge } from './lib/forge.js';
import { FORM_HEADERS, form, header, json, query, request } from './lib/http.js';
import { scrapeSecurity, sum } from './lib/metrics.js';
import { MIX_ROUTES, iterate, mixSetup, secs } from './lib/mix.js';
import { TREND_STATS, summaryWriter } from './lib/summary.js';

const rate = envNumber('RATE', 100);
const half = Math.max(durationSeconds(envDuration('DURATION', '40s')), 4) / 2;
const vus = envNumber('VUS', 40);

// The gateway's defaults the flood must meet (gateway/app: anonymous
// 20/s, burst 40, per client address); deploy/loadtest's xffHeld.
const ANON_RATE = 20;
const ANON_BURST = 40;
const xffBudget = Math.floor(ANON_BURST + ANON_RATE * half * 1.1 + 5);

/** Whether each attack request was stopped (401, 404 or 429), by kind. */
const attackStopped = new Rate('attack_stopped');
/** The X-Forwarded-For flood's answers. */
const xffThrough = new Counter('xff_200');
const xffLimited = new Counter('xff_429');
/** How much each security counter rose over the run (teardown). */
const securityDelta = new Gauge('security_delta');

/** The security counters that must rise, and how each is read. */
const SECURITY_COUNTERS = {
  /** @param {import('./lib/metrics.js').SecurityCounters} c */
  gateway_token_rejected: (c) => sum(c, 'gateway', 'token.rejected'),
  /** @param {import('./lib/metrics.js').SecurityCounters} c */
  ratelimit_exceeded: (c) => sum(c, 'gateway', 'ratelimit.exceeded') + sum(c, 'auth-service', 'ratelimit.exceeded'),
  /** @param {import('./lib/metrics.js').SecurityCounters} c */
  auth_login_failed: (c) => sum(c, 'auth-service', 'auth.login.failed'),
  /** @param {import('./lib/metrics.js').SecurityCounters} c */
  user_ownership_denied: (c) => sum(c, 'user-service', 'access.denied', 'ownership'),
  /** @param {import('./lib/metrics.js').SecurityCounters} c */
  order_ownership_denied: (c) => sum(c, 'order-service', 'access.denied', 'ownership'),
};

/**
 * Real users in one phase.
 * @param {string} phase
 * @param {number} start seconds
 * @returns {import('k6/options').ConstantArrivalRateScenario}
 */
function users(phase, start) {
  return {
    executor: 'constant-arrival-rate',
    rate,
    timeUnit: '1s',
    duration: secs(half),
    preAllocatedVUs: vus,
    maxVUs: vus * 2,
    startTime: `${Math.round(start)}s`,
    gracefulStop: '5s',
    exec: 'user',
    tags: { phase, actor: 'user' },
  };
}

/**
 * One attacker, during the attack phase. maxVUs bounds its source addresses.
 * @param {string} fn exported function
 * @param {number} perSecond
 * @param {number} addresses
 * @returns {import('k6/options').ConstantArrivalRateScenario}
 */
function attacker(fn, perSecond, addresses) {
  return {
    executor: 'constant-arrival-rate',
    rate: perSecond,
    timeUnit: '1s',
    duration: secs(half),
    preAllocatedVUs: addresses,
    maxVUs: addresses,
    startTime: secs(half),
    gracefulStop: '5s',
    exec: fn,
    tags: { phase: 'attack', actor: 'attacker' },
  };
}

/** @type {Record<string, string[]>} */
const thresholds = {
  unexpected_401: ['count==0'],
  checks: ['rate==1'],
  'attack_stopped{kind:stuffing}': ['rate==1'],
  'attack_stopped{kind:forged}': ['rate==1'],
  'attack_stopped{kind:bola_order}': ['rate==1'],
  'attack_stopped{kind:bola_user}': ['rate==1'],
  xff_429: ['count>0'],
  xff_200: [`count<=${xffBudget}`],
};
for (const name of Object.keys(SECURITY_COUNTERS)) {
  thresholds[`security_delta{counter:${name}}`] = ['value>0'];
}
for (const route of MIX_ROUTES.filter((r) => r !== 'token_refresh')) {
  thresholds[`http_req_failed{phase:baseline,route:${route}}`] = ['rate==0'];
  thresholds[`http_req_failed{phase:attack,route:${route}}`] = ['rate==0'];
  // Tracked for the summary's side-by-side p95; always holds.
  thresholds[`http_req_duration{phase:baseline,route:${route}}`] = ['p(95)>=0'];
  thresholds[`http_req_duration{phase:attack,route:${route}}`] = [`p(95)<${envNumber('P95_MS', 60)}`];
}

/** @type {import('k6/options').Options} */
export const options = {
  scenarios: {
    users_baseline: users('baseline', 0),
    users_attack: users('attack', half),
    stuffing: attacker('stuffing', 10, 2),
    forged: attacker('forged', 20, 1),
    bola: attacker('bola', 10, 1),
    xff: attacker('xff', 100, 1),
  },
  thresholds,
  summaryTrendStats: TREND_STATS,
  setupTimeout: '120s',
};

/**
 * @typedef {object} AbuseData
 * @property {string[]} skus
 * @property {{sub: string, order: string, email: string}[]} victims
 * @property {{email: string, password: string, subject: string, access: string, refreshToken: string, expiresAt: number}} prober
 * @property {string} kid
 * @property {import('./lib/metrics.js').SecurityCounters} before
 */

/**
 * Victims with an order each, the BOLA prober's session, a real kid, and
 * the security counters before the run. Few accounts: setup runs from one
 * address, under the register (5/min) and login (10/min) limits.
 * @returns {AbuseData}
 */
export function setup() {
  const { skus } = mixSetup();
  const victims = [];
  for (let i = 0; i < 2; i++) {
    const s = newUser('victim');
    if (!s) {
      fail('setup: victim sign-in failed');
    }
    const { order } = createOrder(s.token(), [{ sku: skus[0], quantity: 1 }]);
    if (!order || !order.id) {
      fail('setup: victim order failed');
    }
    victims.push({ sub: s.subject, order: order.id, email: s.email });
  }
  const p = newUser('prober');
  if (!p) {
    fail('setup: prober sign-in failed');
  }
  const set = json(request({ route: 'jwks', method: 'GET', path: '/.well-known/jwks.json' })) || {};
  /** @type {{kid: string, alg?: string}[]} */
  const keys = Array.isArray(set.keys) ? set.keys : [];
  const es = keys.find((k) => k.alg === 'ES256') || keys[0];
  if (!es) {
    fail('setup: the JWKS has no key');
  }
  return {
    skus,
    victims,
    prober: { email: p.email, password: p.password, subject: p.subject, access: p.access, refreshToken: p.refreshToken, expiresAt: p.expiresAt },
    kid: es.kid,
    before: scrapeSecurity(),
  };
}

/** @param {AbuseData} data */
export function user(data) {
  iterate(data);
}

/**
 * One credential-stuffing attempt through the real form.
 * @param {AbuseData} data
 */
export function stuffing(data) {
  const i = exec.scenario.iterationInTest;
  const email = i % 2 === 0 ? data.victims[i % data.victims.length].email : `victim${i}@load.rampart.test`;
  const jar = new http.CookieJar();
  let res = request({
    route: 'atk_stuff_authorize',
    method: 'GET',
    path: `/oauth2/authorize?${query({ response_type: 'code', client_id: DEMO_CLIENT, redirect_uri: CALLBACK, scope: 'openid', state: 'x',
      code_challenge_method: 'S256', code_challenge: randomB64(32) })}`,
    expect: [303, 302, 429],
    jar,
  });
  const loc = header(res, 'Location');
  if (res.status === 429 || !loc) {
    attackStopped.add(res.status === 429, { kind: 'stuffing' });
    return;
  }
  res = request({ route: 'atk_stuff_form', method: 'GET', path: loc, expect: [200, 429], jar });
  const f = res.status === 200 && res.body ? parseForm(res.body) : null;
  if (!f) {
    attackStopped.add(res.status === 429, { kind: 'stuffing' });
    return;
  }
  f.values.email = email;
  f.values.password = randomB64(12);
  res = request({ route: 'atk_stuff_submit', method: 'POST', path: f.action, headers: FORM_HEADERS, body: form(f.values), expect: [401, 429], jar });
  attackStopped.add(res.status === 401 || res.status === 429, { kind: 'stuffing' });
}

/**
 * A forged access token, the kinds in turn.
 * @param {AbuseData} data
 */
export function forged(data) {
  const kind = FORGED_KINDS[exec.scenario.iterationInTest % FORGED_KINDS.length];
  const res = request({
    route: `atk_forged_${kind}`,
    method: 'GET',
    path: '/api/v1/orders',
    token: forge(kind, data.kid, data.prober.subject, BASE_URL),
    expect: [401, 429],
  });
  attackStopped.add(res.status === 401 || res.status === 429, { kind: 'forged' });
}

/** The prober's session; this scenario's single VU owns its refresh token. */
/** @type {Session | null} */
let prober = null;

/**
 * A signed-in user reading other users' orders and profiles: 404, not 403.
 * @param {AbuseData} data
 */
export function bola(data) {
  if (!prober) {
    prober = Object.assign(new Session(data.prober.email, data.prober.password), data.prober);
  }
  const v = data.victims[exec.scenario.iterationInTest % data.victims.length];
  let res = getOrder(prober.token(), v.order, 'atk_bola_order', [404, 429]).res;
  attackStopped.add(res.status === 404 || res.status === 429, { kind: 'bola_order' });
  res = request({ route: 'atk_bola_user', method: 'GET', path: `/api/v1/users/${v.sub}`, token: prober.token(), expect: [404, 429] });
  attackStopped.add(res.status === 404 || res.status === 429, { kind: 'bola_user' });
}

/** An anonymous flood that claims a new client address every time. */
export function xff() {
  const ip = `203.0.113.${Math.floor(Math.random() * 256)}`;
  const res = request({
    route: 'atk_xff',
    method: 'GET',
    path: '/api/v1/catalog',
    headers: { 'X-Forwarded-For': ip, 'X-Real-IP': ip, Forwarded: `for=${ip}`, 'True-Client-IP': ip },
    expect: [200, 429],
  });
  if (res.status === 200) {
    xffThrough.add(1);
  } else if (res.status === 429) {
    xffLimited.add(1);
  }
}

/**
 * The security counters after the run: each must have risen.
 * @param {AbuseData} data
 */
export function teardown(data) {
  const after = scrapeSecurity();
  for (const [name, read] of Object.entries(SECURITY_COUNTERS)) {
    const delta = read(after) - read(data.before);
    securityDelta.add(delta, { counter: name });
    ok(`security counter ${name} rose`, delta > 0, delta);
  }
}

/** The mix's default function is unused here: every scenario names its exec. */
export default function () {}

export const handleSummary = summaryWriter('abuse');
