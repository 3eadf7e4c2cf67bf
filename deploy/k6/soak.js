// @ts-check
// soak.js — the realistic mix at a steady moderate rate for a long time
// (deploy/loadtest's `soak`): leaks, token expiry and refresh (access
// tokens live 10 minutes; every session refreshes a minute before), growth.
// p95 < 50 ms, p99 < 200 ms, no errors, at most 0.1 % dropped iterations.
//
//   SSL_CERT_FILE=.devstack/pki/ca.crt k6 run --local-ips=127.1.0.1-127.1.3.254 \
//     -e BASE_URL=https://127.0.0.1:8443 -e DURATION=10m -e RATE=500 deploy/k6/soak.js
//
// DURATION (10m), RATE iterations/s (500), VUS (RATE/5, at least 50), MAX_VUS (2 × VUS).
import { envDuration, envNumber, durationSeconds } from './lib/config.js';
import { droppedBelow, iterate, mixScenario, mixSetup, mixThresholds, plannedIterations } from './lib/mix.js';
import { TREND_STATS, summaryWriter } from './lib/summary.js';

const rate = envNumber('RATE', 500);
const duration = envDuration('DURATION', '10m');
const vus = envNumber('VUS', Math.max(50, Math.ceil(rate / 5)));
const stages = [{ duration, target: rate }];

/** @type {import('k6/options').Options} */
export const options = {
  scenarios: { soak: mixScenario(rate, stages, vus, envNumber('MAX_VUS', vus * 2)) },
  thresholds: {
    ...mixThresholds(50, 200, 0),
    dropped_iterations: droppedBelow(plannedIterations(rate, stages), 0.001),
  },
  summaryTrendStats: TREND_STATS,
};

// The soak's length is only known at run time: make sure the check of it
// in options fails loudly rather than running a 0 s soak.
if (durationSeconds(duration) < 1) {
  throw new Error(`DURATION=${duration}: too short for a soak`);
}

export const setup = mixSetup;

/** @param {import('./lib/mix.js').MixData} data */
export default function (data) {
  iterate(data);
}

export const handleSummary = summaryWriter('soak');
