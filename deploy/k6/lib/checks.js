// @ts-check
// Check helpers: every check is named the way deploy/loadtest names it, and
// a failed one is logged with what finds the request again.
import { check } from 'k6';

/**
 * A named check on a condition; logs detail when it fails.
 * @param {string} name
 * @param {boolean} ok
 * @param {unknown} [detail]
 * @returns {boolean}
 */
export function ok(name, ok, detail) {
  const passed = check(null, { [name]: () => ok });
  if (!passed && detail !== undefined) {
    console.warn(`FAIL ${name}: ${typeof detail === 'string' ? detail : JSON.stringify(detail)}`);
  }
  return passed;
}

/**
 * A check that res answered with one of statuses; the name says which.
 * @param {{status: number, body: string | null}} res
 * @param {string} what
 * @param {...number} statuses
 * @returns {boolean}
 */
export function status(res, what, ...statuses) {
  const name = `${what} is ${statuses.join(' or ')}`;
  const body = res.body ? res.body.slice(0, 200) : '';
  return ok(name, statuses.includes(res.status), `status ${res.status} ${body}`);
}
