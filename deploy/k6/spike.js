// @ts-check
// spike.js — a quiet baseline, a sudden 5× spike, and back (deploy/loadtest's
// `spike`): a spike may be slow (p95 < 250 ms, p99 < 1 s), it may not fail,
// and at most 5 % of the iterations may be dropped.
//
//   SSL_CERT_FILE=.devstack/pki/ca.crt k6 run --local-ips=127.1.0.1-127.1.3.254 \
//     -e BASE_URL=https://127.0.0.1:8443 -e RATE=1500 deploy/k6/spike.js
//
// RATE peak iterations/s (1500; the baseline is RATE/5), DURATION (60s),
// VUS (RATE/5, at least 50), MAX_VUS (4 × VUS).
import { envDuration, envNumber, durationSeconds } from './lib/config.js';
import { droppedBelow, iterate, mixScenario, mixSetup, mixThresholds, plannedIterations, secs } from './lib/mix.js';
import { TREND_STATS, summaryWriter } from './lib/summary.js';

const rate = envNumber('RATE', 1500);
const d = Math.max(durationSeconds(envDuration('DURATION', '60s')), 20);
const base = Math.max(1, Math.round(rate / 5));
const vus = envNumber('VUS', Math.max(50, Math.ceil(rate / 5)));
const stages = [
  { duration: secs(d / 4), target: base },
  { duration: '2s', target: rate },
  { duration: secs(d / 4 - 2), target: rate },
  { duration: '2s', target: base },
  { duration: secs(d / 2 - 2), target: base },
];

/** @type {import('k6/options').Options} */
export const options = {
  scenarios: { spike: mixScenario(base, stages, vus, envNumber('MAX_VUS', vus * 4)) },
  thresholds: {
    ...mixThresholds(250, 1000, 0),
    dropped_iterations: droppedBelow(plannedIterations(base, stages), 0.05),
  },
  summaryTrendStats: TREND_STATS,
};

export const setup = mixSetup;

/** @param {import('./lib/mix.js').MixData} data */
export default function (data) {
  iterate(data);
}

export const handleSummary = summaryWriter('spike');
