// @ts-check
// Every request of every scenario goes through request(): it carries a
// fresh W3C traceparent (so a slow or failed request can be looked up in
// the trace backend when the gateway trusts client trace context, and in
// any case by its X-Request-Id in the logs), a `route` tag for the
// per-route thresholds, the statuses that count as success for
// http_req_failed, and it never follows a redirect: the login flow reads
// each Location itself, as deploy/loadtest does.
import http from 'k6/http';
import { randomBytes } from 'k6/crypto';
import { Counter } from 'k6/metrics';
import { BASE_URL } from './config.js';

/** 401 answers to requests that did not expect one: a run across `make rotate-keys` must show none. */
export const unexpected401 = new Counter('unexpected_401');

/**
 * @param {ArrayBuffer} buf
 * @returns {string}
 */
export function hex(buf) {
  return Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * A random sampled W3C traceparent and its trace id.
 * @returns {{traceId: string, header: string}}
 */
export function traceparent() {
  const traceId = hex(randomBytes(16));
  return { traceId, header: `00-${traceId}-${hex(randomBytes(8))}-01` };
}

/**
 * One call.
 * @typedef {object} Req
 * @property {string} route        route tag: the thresholds and the summary are per tag
 * @property {string} method
 * @property {string} path         relative to BASE_URL, or absolute
 * @property {string | null} [body]
 * @property {Record<string, string>} [headers]
 * @property {number[]} [expect]   statuses that count as success (default [200])
 * @property {import('k6/http').CookieJar} [jar] cookie jar of one browser flow
 * @property {string} [token]      bearer access token
 * @property {Record<string, string>} [tags] extra tags
 */

/** Failures logged per VU at most (with trace and request ids), so a bad run does not flood the console. */
const MAX_LOGGED = 10;
let logged = 0;

/**
 * Performs req and returns the response.
 * @param {Req} req
 * @returns {import('k6/http').RefinedResponse<'text'>}
 */
export function request(req) {
  const url = /^https?:\/\//.test(req.path) ? req.path : BASE_URL + req.path;
  const expect = req.expect && req.expect.length > 0 ? req.expect : [200];
  const tp = traceparent();
  /** @type {Record<string, string>} */
  const headers = { traceparent: tp.header, ...(req.headers || {}) };
  if (req.token) {
    headers.Authorization = `Bearer ${req.token}`;
  }
  /** @type {import('k6/http').RefinedParams<'text'>} */
  const params = {
    headers,
    redirects: 0,
    responseType: 'text',
    // name groups /api/v1/orders/{id} under one URL in k6's own output.
    tags: { route: req.route, name: req.route, ...(req.tags || {}) },
    responseCallback: http.expectedStatuses(...expect),
  };
  if (req.jar) {
    params.jar = req.jar;
  }
  const res = http.request(req.method, url, req.body === undefined ? null : req.body, params);
  if (!expect.includes(res.status)) {
    if (res.status === 401) {
      unexpected401.add(1, { route: req.route });
    }
    if (logged < MAX_LOGGED) {
      logged++;
      console.warn(
        `unexpected ${req.method} ${req.route} ${res.status}${res.error ? ` (${res.error})` : ''} ` +
          `trace_id=${tp.traceId} request_id=${header(res, 'X-Request-Id') || '-'}`,
      );
    }
  }
  return res;
}

/**
 * A response header, whatever its case (k6 canonicalises names the Go way:
 * WWW-Authenticate arrives as Www-Authenticate).
 * @param {{headers: Record<string, string>}} res
 * @param {string} name
 * @returns {string | undefined}
 */
export function header(res, name) {
  const want = name.toLowerCase();
  for (const k of Object.keys(res.headers)) {
    if (k.toLowerCase() === want) {
      return res.headers[k];
    }
  }
  return undefined;
}

/**
 * The body as JSON, or undefined when it is not JSON.
 * @param {{body: string | null}} res
 * @returns {any}
 */
export function json(res) {
  if (!res.body) {
    return undefined;
  }
  try {
    return JSON.parse(res.body);
  } catch (_) {
    return undefined;
  }
}

/**
 * application/x-www-form-urlencoded, as a browser would post it.
 * @param {Record<string, string>} values
 * @returns {string}
 */
export function form(values) {
  return Object.keys(values)
    .map((k) => `${encodeURIComponent(k)}=${encodeURIComponent(values[k])}`)
    .join('&')
    .replace(/%20/g, '+');
}

/**
 * A query string.
 * @param {Record<string, string>} values
 * @returns {string}
 */
export function query(values) {
  return Object.keys(values)
    .map((k) => `${encodeURIComponent(k)}=${encodeURIComponent(values[k])}`)
    .join('&');
}

export const JSON_HEADERS = { 'Content-Type': 'application/json' };
export const FORM_HEADERS = { 'Content-Type': 'application/x-www-form-urlencoded' };
