# Rampart — every target works from the workspace root. Targets loop over the
# workspace's modules (go list -m): `go build ./...` at the root matches
# nothing, and golangci-lint run there silently checks nothing.

GO            ?= go
BIN           := $(CURDIR)/bin
MODULE_DIRS   := $(shell $(GO) list -m -f '{{.Dir}}')
PACKAGES      := $(addsuffix /...,$(MODULE_DIRS))
GOLANGCI_LINT := $(BIN)/golangci-lint
GOLANGCI_VER  := v2.15.0
BENCHSTAT     := $(BIN)/benchstat
PROMTOOL      := $(BIN)/promtool
TEST_FLAGS    ?= -race -count=1 -timeout=20m

.PHONY: run test test-short promtool lint bench vulncheck fmt tidy clean loadtest rotate-keys

## run: the whole system in one process (embedded NATS, SQLite, generated PKI)
run:
	$(GO) run ./deploy/devstack $(ARGS)

## test: every module's tests, end-to-end included, with the race detector
test: promtool
	$(GO) vet $(PACKAGES)
	$(GO) test $(TEST_FLAGS) $(PACKAGES)

## test-short: the fast inner loop (no race detector, -short)
test-short: promtool
	$(GO) test -short -count=1 $(PACKAGES)

## promtool: Debian's (apt-get install prometheus) when on PATH, else built
## into ./bin from the Go module proxy (deploy/observability finds either).
## Prometheus's go.mod has exclude directives, so `go install …@version`
## cannot build it: deploy/prometheus/promtool is a pinned tool module.
promtool:
	@command -v promtool >/dev/null 2>&1 || [ -x $(PROMTOOL) ] || \
		(cd deploy/prometheus/promtool && GOWORK=off $(GO) build -o $(PROMTOOL) github.com/prometheus/prometheus/cmd/promtool)

$(GOLANGCI_LINT):
	GOBIN=$(BIN) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_VER)

## lint: golangci-lint v2 (with gosec) over every module, one root config
lint: $(GOLANGCI_LINT)
	@set -e; for d in $(MODULE_DIRS); do \
		echo "lint $$d"; \
		(cd $$d && $(GOLANGCI_LINT) run --config $(CURDIR)/.golangci.yml ./...); \
	done

$(BENCHSTAT):
	GOBIN=$(BIN) $(GO) install golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da

## bench: Go benchmarks of every module, benchstat-ready output
bench:
	$(GO) test -run='^$$' -bench=. -benchmem -count=$${COUNT:-6} $(PACKAGES) | tee bench.out
	@echo "compare runs with: benchstat old.out bench.out"

## bench-gateway: wrk against the upstream, nginx, HAProxy, Caddy and the gateway in one run (deploy/bench/gateway.sh)
.PHONY: bench-gateway
bench-gateway:
	deploy/bench/gateway.sh

## loadtest: a load-test scenario against a running stack (make run):
## SCENARIO=smoke|load|spike|soak|abuse (default load), ARGS="-duration 60s -rate 2000".
## Gateway URL, CA and credentials come from .devstack/ (deploy/loadtest).
SCENARIO ?= load
loadtest:
	$(GO) run ./deploy/loadtest/cmd/rampart-load $(SCENARIO) $(ARGS)

## k6-check: type-check the k6 scripts (deploy/k6) against @types/k6 with the
## pinned TypeScript (npm ci into deploy/k6/node_modules), then the static
## checks of deploy/k6check (exports, every path in the gateway route table).
## k6 itself is never installed: AGPL, kept out of the toolchain.
.PHONY: k6-check
k6-check:
	npm ci --prefix deploy/k6 --no-audit --no-fund
	cd deploy/k6 && npx --no-install tsc -p .
	RAMPART_REQUIRE_K6_TYPES=1 $(GO) test -count=1 ./deploy/k6check

## rotate-keys: force a signing-key rotation through the admin API (ADMIN, scope admin)
rotate-keys:
	$(GO) run ./deploy/loadtest/cmd/rampart-load rotate-keys $(ARGS)

## vulncheck: needs the online vulnerability database (hosted CI only)
vulncheck:
	$(GO) run golang.org/x/vuln/cmd/govulncheck@v1.9.0 $(PACKAGES)

fmt:
	gofmt -w $(MODULE_DIRS)

clean:
	rm -rf .devstack bin bench.out
