// Package k6check holds the tests that keep deploy/k6 — the k6 scripts for
// users who run k6 themselves — honest without k6 on this machine: k6 is
// AGPL-licensed and the project's toolchain policy keeps it out of the
// build. The scripts are type-checked against @types/k6 with TypeScript
// (npm ci --prefix deploy/k6; make k6-check), every scenario exports its
// options and a default function, and every path the scripts call exists
// in the gateway's route table.
package k6check
