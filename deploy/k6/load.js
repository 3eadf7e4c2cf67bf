// @ts-check
// load.js — the realistic mix at a ramping arrival rate (deploy/loadtest's
// `load`): browse the catalogue, log in, create orders with an
// Idempotency-Key, list and read own orders, refresh. Thresholds per route
// tag on p95/p99 and error rate, at most 1 % dropped iterations, and zero
// unexpected 401s — run `make rotate-keys` during the run to prove a
// signing-key rotation goes unnoticed.
//
//   SSL_CERT_FILE=.devstack/pki/ca.crt k6 run --local-ips=127.1.0.1-127.1.3.254 \
//     -e BASE_URL=https://127.0.0.1:8443 -e RATE=2000 -e DURATION=60s deploy/k6/load.js
//
// RATE peak iterations/s (2000), DURATION (60s), VUS users (RATE/5, at
// least 50), MAX_VUS (2 × VUS), P95_MS (50), P99_MS (150).
import { envDuration, envNumber, durationSeconds } from './lib/config.js';
import { droppedBelow, iterate, mixScenario, mixSetup, mixThresholds, plannedIterations, secs } from './lib/mix.js';
import { TREND_STATS, summaryWriter } from './lib/summary.js';

const rate = envNumber('RATE', 2000);
const duration = durationSeconds(envDuration('DURATION', '60s'));
const vus = envNumber('VUS', Math.max(50, Math.ceil(rate / 5)));
const ramp = Math.max(duration / 6, 1);
const startRate = Math.max(1, Math.round(rate / 20));
const stages = [
  { duration: secs(ramp), target: rate },
  { duration: secs(duration - ramp), target: rate },
];

/** @type {import('k6/options').Options} */
export const options = {
  scenarios: { load: mixScenario(startRate, stages, vus, envNumber('MAX_VUS', vus * 2)) },
  thresholds: {
    ...mixThresholds(envNumber('P95_MS', 50), envNumber('P99_MS', 150), 0),
    dropped_iterations: droppedBelow(plannedIterations(startRate, stages), 0.01),
  },
  summaryTrendStats: TREND_STATS,
};

export const setup = mixSetup;

/** @param {import('./lib/mix.js').MixData} data */
export default function (data) {
  iterate(data);
}

export const handleSummary = summaryWriter('load');
