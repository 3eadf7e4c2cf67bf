// @ts-check
// Where the stack under test is, from the environment (k6 run -e NAME=value,
// or the shell's environment). Nothing here disables TLS verification: k6
// trusts the dev CA through SSL_CERT_FILE (Go's crypto/x509 reads it), e.g.
//
//   SSL_CERT_FILE=.devstack/pki/ca.crt k6 run -e BASE_URL=https://127.0.0.1:8443 deploy/k6/smoke.js
//
// BASE_URL      the gateway (default: ENDPOINTS' gateway, else https://127.0.0.1:8443)
// ENDPOINTS     optional absolute path of .devstack/endpoints.json (written by
//               `make run`): gateway URL and every service's ops URL
// OPS_GATEWAY, OPS_AUTH, OPS_USER, OPS_ORDER
//               each service's ops listener, for /metrics (abuse.js; defaults
//               from ENDPOINTS, else the devstack's 127.0.0.1:9181..9184)
// CREDENTIALS   optional absolute path of .devstack/credentials.json: the
//               demo accounts (smoke.js's manager and admin checks)
// RESULTS_DIR   where handleSummary writes (default deploy/k6/results, so
//               run k6 from the repository root)

/**
 * endpoints.json as devstack writes it (CONTRACT §1).
 * @typedef {object} Endpoints
 * @property {string} [gateway]
 * @property {Record<string, {api?: string, ops?: string}>} [services]
 * @property {string} [ca_file]
 */

/**
 * credentials.json as devstack writes it.
 * @typedef {object} Credentials
 * @property {Record<string, {email: string, password: string}>} accounts
 * @property {{client_id: string, type: string, client_secret?: string}[]} clients
 */

/** @type {Endpoints} */
const endpoints = __ENV.ENDPOINTS ? JSON.parse(open(__ENV.ENDPOINTS)) : {};

/** @type {Credentials | null} */
export const CREDENTIALS = __ENV.CREDENTIALS ? JSON.parse(open(__ENV.CREDENTIALS)) : null;

/** The gateway's public URL, without a trailing slash. */
export const BASE_URL = (__ENV.BASE_URL || endpoints.gateway || 'https://127.0.0.1:8443').replace(/\/+$/, '');

/**
 * @param {string} service
 * @param {string} env
 * @param {string} def
 * @returns {string}
 */
function ops(service, env, def) {
  const fromFile = endpoints.services && endpoints.services[service] ? endpoints.services[service].ops : undefined;
  return (__ENV[env] || fromFile || def).replace(/\/+$/, '');
}

/** Each service's ops listener (plain HTTP on loopback), by service name. */
export const OPS = {
  gateway: ops('gateway', 'OPS_GATEWAY', 'http://127.0.0.1:9181'),
  'auth-service': ops('auth-service', 'OPS_AUTH', 'http://127.0.0.1:9182'),
  'user-service': ops('user-service', 'OPS_USER', 'http://127.0.0.1:9183'),
  'order-service': ops('order-service', 'OPS_ORDER', 'http://127.0.0.1:9184'),
};

/** Where handleSummary writes its JSON and Markdown. */
export const RESULTS_DIR = (__ENV.RESULTS_DIR || 'deploy/k6/results').replace(/\/+$/, '');

/**
 * A numeric environment variable, or def.
 * @param {string} name
 * @param {number} def
 * @returns {number}
 */
export function envNumber(name, def) {
  const v = __ENV[name];
  if (v === undefined || v === '') {
    return def;
  }
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) {
    throw new Error(`${name}=${v}: want a positive number`);
  }
  return n;
}

/**
 * A k6 duration from the environment ("90s", "10m", "1h30m"), or def.
 * @param {string} name
 * @param {string} def
 * @returns {string}
 */
export function envDuration(name, def) {
  const v = __ENV[name] || def;
  durationSeconds(v); // throws on a malformed value
  return v;
}

/**
 * Seconds in a k6/Go-style duration: "1h30m", "90s", "500ms".
 * @param {string} d
 * @returns {number}
 */
export function durationSeconds(d) {
  const re = /(\d+(?:\.\d+)?)(ms|h|m|s)/g;
  let total = 0;
  let consumed = 0;
  /** @type {RegExpExecArray | null} */
  let m;
  while ((m = re.exec(d)) !== null) {
    const n = Number(m[1]);
    total += m[2] === 'h' ? n * 3600 : m[2] === 'm' ? n * 60 : m[2] === 's' ? n : n / 1000;
    consumed += m[0].length;
  }
  if (consumed === 0 || consumed !== d.length) {
    throw new Error(`duration ${JSON.stringify(d)}: want e.g. 90s, 10m, 1h30m`);
  }
  return total;
}
