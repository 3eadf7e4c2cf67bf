// @ts-check
// Signing in the way a browser and a public client do, exactly as
// deploy/loadtest/oauth.go does it: GET /oauth2/authorize with PKCE S256 →
// 303 to the login form → GET /login (a form with a CSRF token and hidden
// fields, bound to a __Host- cookie) → POST /login → 303 to the loopback
// redirect URI with code and state, not followed → POST /oauth2/token with
// the verifier. Access tokens are refreshed before they expire; refresh
// tokens rotate on every use, and one VU owns each session, so a refresh
// token is never redeemed twice.
import http from 'k6/http';
import { randomBytes, sha256 } from 'k6/crypto';
import { b64decode, b64encode } from 'k6/encoding';
import { parseHTML } from 'k6/html';
import { FORM_HEADERS, JSON_HEADERS, form, header, json, query, request } from './http.js';

/** The public PKCE client every simulated user signs in with. */
export const DEMO_CLIENT = 'rampart-demo';

/** A loopback redirect URI on an arbitrary port (RFC 8252 §7.3): nothing listens there. */
export const CALLBACK = 'http://127.0.0.1:53682/callback';

/** What a simulated user asks for; a token carries only those its roles allow. */
export const USER_SCOPES = 'openid profile email offline_access users:read users:write orders:read orders:write';

/** How long before expiry a session refreshes its access token, in seconds. */
export const REFRESH_MARGIN = 60;

/**
 * n random bytes, base64url without padding.
 * @param {number} n
 * @returns {string}
 */
export function randomB64(n) {
  return b64encode(randomBytes(n), 'rawurl');
}

/**
 * The PKCE pair: a verifier and its S256 challenge (RFC 7636 §4.2).
 * @returns {{verifier: string, challenge: string}}
 */
export function pkce() {
  const verifier = randomB64(32);
  return { verifier, challenge: sha256(verifier, 'base64rawurl') };
}

/**
 * The query of a URL, decoded.
 * @param {string} url
 * @returns {Record<string, string>}
 */
export function queryOf(url) {
  /** @type {Record<string, string>} */
  const out = {};
  const i = url.indexOf('?');
  if (i < 0) {
    return out;
  }
  for (const kv of url.slice(i + 1).split('#')[0].split('&')) {
    if (kv === '') {
      continue;
    }
    const j = kv.indexOf('=');
    const k = j < 0 ? kv : kv.slice(0, j);
    const v = j < 0 ? '' : kv.slice(j + 1);
    out[decodeURIComponent(k.replace(/\+/g, ' '))] = decodeURIComponent(v.replace(/\+/g, ' '));
  }
  return out;
}

/**
 * The first form of an HTML page: its action and every named input, as a
 * browser would submit them.
 * @param {string} page
 * @returns {{action: string, values: Record<string, string>} | null}
 */
export function parseForm(page) {
  const f = parseHTML(page).find('form').first();
  if (f.size() === 0) {
    return null;
  }
  /** @type {Record<string, string>} */
  const values = {};
  f.find('input').each((_, el) => {
    const name = el.getAttribute('name');
    if (name) {
      values[name] = el.getAttribute('value') || '';
    }
  });
  return { action: f.attr('action') || '/login', values };
}

/**
 * The sub claim of a JWT, read without verifying it: the client only needs
 * its own id, the servers verify.
 * @param {string} jwt
 * @returns {string}
 */
export function subjectOf(jwt) {
  const parts = jwt.split('.');
  if (parts.length !== 3) {
    return '';
  }
  try {
    return JSON.parse(b64decode(parts[1], 'rawurl', 's')).sub || '';
  } catch (_) {
    return '';
  }
}

/**
 * Creates an account (201).
 * @param {string} email
 * @param {string} password
 * @returns {import('k6/http').RefinedResponse<'text'>}
 */
export function register(email, password) {
  return request({
    route: 'register',
    method: 'POST',
    path: '/api/v1/auth/register',
    headers: JSON_HEADERS,
    body: JSON.stringify({ email, password, display_name: 'Load Test' }),
    expect: [201],
  });
}

/** A signed-in user: an access token refreshed before it expires. */
export class Session {
  /**
   * @param {string} email
   * @param {string} password
   */
  constructor(email, password) {
    this.email = email;
    this.password = password;
    /** The token's sub: the account and profile id. */
    this.subject = '';
    this.access = '';
    this.refreshToken = '';
    this.idToken = '';
    /** Expiry of the access token, in milliseconds since the epoch. */
    this.expiresAt = 0;
    /** @type {import('k6/http').CookieJar | null} the authorization server's session cookie, for RP-initiated logout */
    this.jar = null;
  }

  /**
   * Posts a grant to /oauth2/token and keeps the tokens.
   * @param {string} route
   * @param {Record<string, string>} grant
   * @returns {boolean}
   */
  grant(route, grant) {
    const res = request({ route, method: 'POST', path: '/oauth2/token', headers: FORM_HEADERS, body: form(grant) });
    const tr = res.status === 200 ? json(res) : undefined;
    if (!tr || !tr.access_token) {
      return false;
    }
    this.access = tr.access_token;
    this.expiresAt = Date.now() + Number(tr.expires_in || 0) * 1000;
    if (tr.refresh_token) {
      this.refreshToken = tr.refresh_token;
    }
    if (tr.id_token) {
      this.idToken = tr.id_token;
    }
    if (!this.subject) {
      this.subject = subjectOf(tr.access_token);
    }
    return true;
  }

  /**
   * Redeems the refresh token now (the mix's "refresh" step).
   * @returns {boolean}
   */
  refresh() {
    if (!this.refreshToken) {
      return false;
    }
    return this.grant('token_refresh', { grant_type: 'refresh_token', refresh_token: this.refreshToken, client_id: DEMO_CLIENT });
  }

  /**
   * A valid access token, refreshed first when it expires within REFRESH_MARGIN.
   * @returns {string}
   */
  token() {
    if (this.expiresAt - Date.now() <= REFRESH_MARGIN * 1000) {
      this.refresh();
    }
    return this.access;
  }
}

/**
 * Signs email in through the real browser flow and returns the session,
 * or null (the failing step's request is already counted and logged).
 * @param {string} email
 * @param {string} password
 * @param {string} [scope]
 * @returns {Session | null}
 */
export function login(email, password, scope = USER_SCOPES) {
  const { verifier, challenge } = pkce();
  const state = randomB64(16);
  // One browser's cookies: the authorization request and the login form
  // are bound to the __Host- cookie the server sets.
  const jar = new http.CookieJar();
  let res = request({
    route: 'authorize',
    method: 'GET',
    path:
      '/oauth2/authorize?' +
      query({
        response_type: 'code',
        client_id: DEMO_CLIENT,
        redirect_uri: CALLBACK,
        scope,
        state,
        nonce: randomB64(16),
        code_challenge: challenge,
        code_challenge_method: 'S256',
      }),
    expect: [303, 302],
    jar,
  });
  const loginURL = header(res, 'Location');
  if ((res.status !== 303 && res.status !== 302) || !loginURL) {
    return null;
  }
  res = request({ route: 'login_form', method: 'GET', path: loginURL, jar });
  const f = res.status === 200 && res.body ? parseForm(res.body) : null;
  if (!f || !f.values.csrf_token) {
    return null;
  }
  f.values.email = email;
  f.values.password = password;
  res = request({ route: 'login_submit', method: 'POST', path: f.action, headers: FORM_HEADERS, body: form(f.values), expect: [303, 302], jar });
  const loc = header(res, 'Location') || '';
  if (!loc.startsWith(CALLBACK)) {
    return null;
  }
  const cb = queryOf(loc);
  if (cb.state !== state || !cb.code) {
    return null;
  }
  const s = new Session(email, password);
  s.jar = jar;
  const ok = s.grant('token_code', {
    grant_type: 'authorization_code',
    code: cb.code,
    redirect_uri: CALLBACK,
    client_id: DEMO_CLIENT,
    code_verifier: verifier,
  });
  return ok ? s : null;
}

/**
 * A fresh account, registered and signed in; null when either step failed.
 * @param {string} prefix
 * @returns {Session | null}
 */
export function newUser(prefix) {
  const email = `${prefix}-${randomB64(6).toLowerCase().replace(/[^a-z0-9]/g, 'x')}@load.rampart.test`;
  const password = randomB64(18);
  const res = register(email, password);
  if (res.status !== 201) {
    return null;
  }
  return login(email, password);
}
