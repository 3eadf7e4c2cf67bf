// @ts-check
// handleSummary: the end-of-test data as JSON and a Markdown table, under
// RESULTS_DIR (deploy/k6/results/, ignored by git), and the Markdown on
// stdout. No remote jslib import: everything needed is here.
import { BASE_URL, RESULTS_DIR } from './config.js';

/** The trend statistics every scenario reports. */
export const TREND_STATS = ['avg', 'min', 'med', 'max', 'p(95)', 'p(99)', 'count'];

/**
 * @typedef {object} SummaryMetric
 * @property {string} type
 * @property {Record<string, number>} values
 * @property {Record<string, {ok: boolean}>} [thresholds]
 */

/**
 * @typedef {object} SummaryGroup
 * @property {string} name
 * @property {SummaryGroup[]} groups
 * @property {{name: string, passes: number, fails: number}[]} checks
 */

/**
 * What k6 hands handleSummary (the parts used here).
 * @typedef {object} SummaryData
 * @property {Record<string, SummaryMetric>} metrics
 * @property {SummaryGroup} root_group
 * @property {{testRunDurationMs: number}} state
 */

/**
 * Splits "name{a:b,c:d}" into the name and its tags.
 * @param {string} key
 * @returns {{name: string, tags: Record<string, string>}}
 */
export function splitKey(key) {
  const i = key.indexOf('{');
  if (i < 0) {
    return { name: key, tags: {} };
  }
  /** @type {Record<string, string>} */
  const tags = {};
  for (const kv of key.slice(i + 1, -1).split(',')) {
    const j = kv.indexOf(':');
    if (j > 0) {
      tags[kv.slice(0, j)] = kv.slice(j + 1);
    }
  }
  return { name: key.slice(0, i), tags };
}

/**
 * @param {number | undefined} v
 * @returns {string}
 */
function ms(v) {
  return v === undefined ? '-' : v.toFixed(2);
}

/**
 * @param {SummaryGroup} g
 * @param {{name: string, passes: number, fails: number}[]} out
 * @returns {{name: string, passes: number, fails: number}[]}
 */
function allChecks(g, out = []) {
  out.push(...g.checks);
  for (const sub of g.groups) {
    allChecks(sub, out);
  }
  return out;
}

/**
 * The Markdown report of one run.
 * @param {string} scenario
 * @param {SummaryData} data
 * @returns {string}
 */
export function markdown(scenario, data) {
  const m = data.metrics;
  const lines = [
    `# k6 ${scenario}: ${BASE_URL}`,
    '',
    `${new Date().toISOString()}, ${(data.state.testRunDurationMs / 1000).toFixed(1)} s.`,
    '',
  ];
  /** @type {string[]} */
  const failed = [];
  for (const [key, metric] of Object.entries(m)) {
    for (const [expr, t] of Object.entries(metric.thresholds || {})) {
      if (!t.ok) {
        failed.push(`\`${key}\` \`${expr}\``);
      }
    }
  }
  lines.push(failed.length === 0 ? '**Every threshold held.**' : `**${failed.length} threshold(s) failed:** ${failed.join(', ')}`, '');

  // Latency by route (and phase, when the scenario has phases).
  const rows = Object.keys(m)
    .map((key) => ({ key, ...splitKey(key) }))
    .filter((k) => k.name === 'http_req_duration' && k.tags.route)
    .sort((a, b) => a.key.localeCompare(b.key));
  if (rows.length > 0) {
    lines.push('| route | requests | p50 ms | p95 ms | p99 ms | max ms | failed |', '| --- | ---: | ---: | ---: | ---: | ---: | ---: |');
    for (const r of rows) {
      const v = m[r.key].values;
      const failedKey = r.key.replace(/^http_req_duration/, 'http_req_failed');
      const f = m[failedKey] ? `${(m[failedKey].values.rate * 100).toFixed(2)} %` : '-';
      const label = Object.entries(r.tags)
        .map(([k, val]) => (k === 'route' ? val : `${k}=${val}`))
        .join(' ');
      lines.push(`| ${label} | ${v.count === undefined ? '-' : v.count} | ${ms(v.med)} | ${ms(v['p(95)'])} | ${ms(v['p(99)'])} | ${ms(v.max)} | ${f} |`);
    }
    lines.push('');
  }

  // Totals and the scenario's own counters.
  lines.push('| metric | value |', '| --- | ---: |');
  for (const [key, metric] of Object.entries(m).sort(([a], [b]) => a.localeCompare(b))) {
    const { name } = splitKey(key);
    const v = metric.values;
    if (metric.type === 'counter') {
      lines.push(`| ${key} | ${v.count} (${(v.rate || 0).toFixed(1)}/s) |`);
    } else if (metric.type === 'rate' && name !== 'http_req_failed') {
      lines.push(`| ${key} | ${(v.rate * 100).toFixed(2)} % |`);
    } else if (metric.type === 'gauge') {
      lines.push(`| ${key} | ${v.value} |`);
    } else if (key === 'http_req_duration' || key === 'http_req_failed') {
      lines.push(`| ${key} | ${metric.type === 'rate' ? `${(v.rate * 100).toFixed(2)} %` : `p95 ${ms(v['p(95)'])} ms, p99 ${ms(v['p(99)'])} ms`} |`);
    }
  }
  lines.push('');

  // Thresholds.
  lines.push('| threshold | result |', '| --- | --- |');
  for (const [key, metric] of Object.entries(m).sort(([a], [b]) => a.localeCompare(b))) {
    for (const [expr, t] of Object.entries(metric.thresholds || {})) {
      lines.push(`| \`${key}\` \`${expr}\` | ${t.ok ? 'ok' : '**FAILED**'} |`);
    }
  }
  lines.push('');

  // Checks.
  const checks = allChecks(data.root_group);
  if (checks.length > 0) {
    lines.push('| check | passes | fails |', '| --- | ---: | ---: |');
    for (const c of checks) {
      lines.push(`| ${c.name} | ${c.passes} | ${c.fails === 0 ? 0 : `**${c.fails}**`} |`);
    }
    lines.push('');
  }
  return lines.join('\n');
}

/**
 * A handleSummary for scenario: JSON and Markdown files, Markdown on stdout.
 * @param {string} scenario
 * @returns {(data: SummaryData) => Record<string, string>}
 */
export function summaryWriter(scenario) {
  return (data) => {
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    const md = markdown(scenario, data);
    return {
      stdout: `${md}\n`,
      [`${RESULTS_DIR}/${scenario}-${stamp}.json`]: JSON.stringify(data, null, 2),
      [`${RESULTS_DIR}/${scenario}-${stamp}.md`]: md,
    };
  };
}
