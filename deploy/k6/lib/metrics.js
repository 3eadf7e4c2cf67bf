// @ts-check
// The services' security counters, read from each ops listener's /metrics
// (rampart_security_events_total{service,type,reason}), as
// deploy/loadtest/abuse.go reads them.
import http from 'k6/http';
import { OPS } from './config.js';
import { traceparent } from './http.js';

/**
 * Samples by service: [type, reason, value].
 * @typedef {Record<string, [string, string, number][]>} SecurityCounters
 */

/**
 * Parses a="x",b="y" (values without escaped quotes: ours are bounded identifiers).
 * @param {string} s
 * @returns {Record<string, string>}
 */
export function parseLabels(s) {
  /** @type {Record<string, string>} */
  const out = {};
  for (const kv of s.split(',')) {
    const i = kv.indexOf('=');
    if (i > 0) {
      out[kv.slice(0, i).trim()] = kv.slice(i + 1).trim().replace(/^"|"$/g, '');
    }
  }
  return out;
}

/**
 * Reads rampart_security_events_total from every service's /metrics.
 * Throws when a service cannot be read: the counter checks would be meaningless.
 * @returns {SecurityCounters}
 */
export function scrapeSecurity() {
  /** @type {SecurityCounters} */
  const out = {};
  const prefix = 'rampart_security_events_total{';
  for (const [svc, base] of Object.entries(OPS)) {
    const res = http.get(`${base}/metrics`, {
      headers: { traceparent: traceparent().header },
      tags: { route: 'ops_metrics', name: 'ops_metrics' },
      responseType: 'text',
    });
    if (res.status !== 200 || typeof res.body !== 'string') {
      throw new Error(`scrape ${svc} ${base}/metrics: status ${res.status} ${res.error || ''} (set OPS_* or ENDPOINTS)`);
    }
    for (const line of res.body.split('\n')) {
      if (!line.startsWith(prefix)) {
        continue;
      }
      const end = line.indexOf('}');
      if (end < 0) {
        continue;
      }
      const labels = parseLabels(line.slice(prefix.length, end));
      const v = Number(line.slice(end + 1).trim().split(/\s+/)[0]);
      if (!Number.isFinite(v)) {
        continue;
      }
      const service = labels.service || svc;
      (out[service] = out[service] || []).push([labels.type || '', labels.reason || '', v]);
    }
  }
  return out;
}

/**
 * The sum of svc's samples of type typ and, when not empty, reason.
 * @param {SecurityCounters} c
 * @param {string} svc
 * @param {string} typ
 * @param {string} [reason]
 * @returns {number}
 */
export function sum(c, svc, typ, reason = '') {
  let n = 0;
  for (const [t, r, v] of c[svc] || []) {
    if (t === typ && (reason === '' || r === reason)) {
      n += v;
    }
  }
  return n;
}
