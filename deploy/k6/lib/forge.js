// @ts-check
// Access tokens the gateway must refuse, as deploy/loadtest/abuse.go forges
// them: every one claims ADMIN and every scope.
//   none       alg none, no signature
//   wrong_key  ES256 with the real kid and a well-formed 64-byte signature
//              that no Rampart key made (deploy/loadtest signs with a key
//              of its own; to the verifier both are a foreign signature)
//   expired    the same, with exp 50 minutes ago
//   hs256      algorithm confusion: HMAC-SHA256 keyed with the public kid
import { hmac, randomBytes } from 'k6/crypto';
import { b64encode } from 'k6/encoding';
import { DEMO_CLIENT, randomB64 } from './auth.js';

export const FORGED_KINDS = ['none', 'wrong_key', 'expired', 'hs256'];

/**
 * @param {unknown} v
 * @returns {string}
 */
function seg(v) {
  return b64encode(JSON.stringify(v), 'rawurl');
}

/**
 * A forged access token of the given kind.
 * @param {string} kind one of FORGED_KINDS
 * @param {string} kid  a kid from the real JWKS
 * @param {string} sub
 * @param {string} issuer the gateway's public URL
 * @returns {string}
 */
export function forge(kind, kid, sub, issuer) {
  const now = Math.floor(Date.now() / 1000);
  const claims = {
    iss: issuer,
    sub,
    aud: 'rampart-api',
    client_id: DEMO_CLIENT,
    jti: randomB64(12),
    scope: 'openid orders:read orders:write admin',
    roles: ['ADMIN'],
    iat: now,
    nbf: now,
    exp: now + 300,
  };
  switch (kind) {
    case 'none':
      return `${seg({ alg: 'none', typ: 'at+jwt' })}.${seg(claims)}.`;
    case 'hs256': {
      const signed = `${seg({ alg: 'HS256', typ: 'at+jwt', kid })}.${seg(claims)}`;
      return `${signed}.${hmac('sha256', kid, signed, 'base64rawurl')}`;
    }
    case 'expired':
      claims.iat = now - 3600;
      claims.nbf = now - 3600;
      claims.exp = now - 3000;
      break;
    case 'wrong_key':
      break;
    default:
      throw new Error(`unknown forgery ${kind}`);
  }
  const signed = `${seg({ alg: 'ES256', typ: 'at+jwt', kid })}.${seg(claims)}`;
  return `${signed}.${b64encode(randomBytes(64), 'rawurl')}`;
}
