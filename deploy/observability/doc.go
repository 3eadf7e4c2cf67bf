// Package observability holds the tests that keep Rampart's Prometheus rules
// and Grafana dashboards honest with real tools:
//
//   - promtool checks both scrape configurations and every rule file, and
//     runs the alert unit tests in deploy/prometheus/tests. A machine
//     without promtool fails the test: a skipped rule test is how a broken
//     alert reaches production. promtool is taken from RAMPART_PROMTOOL,
//     then PATH (Debian's prometheus package), then ./bin (make promtool).
//   - every dashboard in grafana/dashboards is parsed: unique uids, data
//     sources that resolve to provisioned uids, no hard-coded instance
//     URLs, units on every graph, and every PromQL expression through the
//     Prometheus parser.
//   - every metric a dashboard or rule names is exported by the running
//     in-process stack (deploy/stack) after a scenario has exercised it:
//     a successful request through the gateway, rejected tokens, failed
//     logins up to a lockout, a rate-limited request and an mTLS refusal.
//     Recording-rule outputs count as defined; a few series Prometheus
//     makes itself (up, ALERTS) are named in syntheticSeries.
//   - a real Prometheus server (Debian's package) scrapes the in-process
//     stack with the devstack job layout and the repository's rules, and
//     its HTTP API must return the scenario's security events, their
//     recording rule and trace-id exemplars. Without the binary this test
//     skips, unless RAMPART_REQUIRE_PROMETHEUS=1 (CI) makes it fail.
//
// The package has no non-test code. Two subpackages are shared with
// deploy/cmd/dashshot, which renders the Security overview dashboard from a
// real run for the README: promrun (the Prometheus server and its HTTP API,
// as the scrape test runs it) and dashshot (a dashboard drawn to SVG from
// PromQL answers).
package observability
