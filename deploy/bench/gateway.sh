#!/usr/bin/env bash
# make bench-gateway: in one run on this machine, wrk against
#   - the trivial upstream directly,
#   - nginx, HAProxy and Caddy as plain reverse proxies in front of it,
#   - nginx terminating TLS in front of it (context: what TLS costs nginx),
#   - the Rampart gateway doing its whole job (TLS at the edge, hygiene,
#     ES256 token check with the verified-token cache, deny-list, rate
#     limit, header stripping, metrics, tracing, JSON access log, mTLS to
#     the upstream),
# and prints requests/s, p50 and p99 of each, and each as a ratio to nginx's
# plain-HTTP proxying (the issue's denominator) and, for context, to nginx
# terminating TLS (nginx-tls).
#
# Needs wrk, nginx, haproxy and caddy (Debian: apt-get install -y wrk nginx
# haproxy caddy). Everything runs as the current user on loopback high
# ports, with configs, logs and state in a temporary directory.
#
# Environment: DURATION (default 10s), WARMUP (3s), CONNECTIONS (64),
# THREADS (2), PORT_BASE (18080), TARGETS (default all:
# "direct nginx haproxy caddy nginx-tls gateway gateway-gogc100"), ROUNDS
# (default 1: every target is measured ROUNDS times, round after round, and
# the round with the median throughput is reported; on a shared machine
# this keeps one unlucky slice of time from deciding a row), KEEP=1 keeps
# the temp directory, RAW (default bench-gateway.out) receives the raw wrk
# output.
set -euo pipefail

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-3s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
PORT_BASE=${PORT_BASE:-18080}
TARGETS=${TARGETS:-"direct nginx haproxy caddy nginx-tls gateway gateway-gogc100"}
ROUNDS=${ROUNDS:-1}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RAW=${RAW:-$ROOT/bench-gateway.out}

for tool in wrk nginx haproxy caddy go; do
	command -v "$tool" >/dev/null || { echo "bench-gateway: $tool not found (apt-get install -y wrk nginx haproxy caddy)" >&2; exit 1; }
done

UP_PLAIN=$((PORT_BASE + 1))
UP_MTLS=$((PORT_BASE + 2))
P_NGINX=$((PORT_BASE + 10))
P_HAPROXY=$((PORT_BASE + 11))
P_CADDY=$((PORT_BASE + 12))
P_NGINX_TLS=$((PORT_BASE + 13))
P_GATEWAY=$((PORT_BASE + 20))
P_GATEWAY_OPS=$((PORT_BASE + 21))
PATH_=/api/v1/orders

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-gateway.XXXXXX")
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [[ "${KEEP:-0}" != 1 ]]; then rm -rf "$WORK"; else echo "kept $WORK" >&2; fi
}
trap cleanup EXIT

# wait_port PORT: until something accepts on 127.0.0.1:PORT (10s).
wait_port() {
	for _ in $(seq 1 200); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		sleep 0.05
	done
	echo "bench-gateway: nothing listening on $1" >&2
	return 1
}

stop_last() {
	local p=${PIDS[-1]}
	kill "$p" 2>/dev/null || true
	wait "$p" 2>/dev/null || true
	unset 'PIDS[-1]'
}

echo "building the harness" >&2
(cd "$ROOT/deploy" && go build -o "$WORK/gatewaybench" ./bench/gatewaybench)

"$WORK/gatewaybench" upstream -dir "$WORK" -plain "127.0.0.1:$UP_PLAIN" -mtls "127.0.0.1:$UP_MTLS" >"$WORK/upstream.log" 2>&1 &
PIDS+=($!)
wait_port "$UP_PLAIN"
wait_port "$UP_MTLS"

: >"$RAW"
{
	echo "# make bench-gateway, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "# $(uname -srm), $(nproc) cores, $(go version | cut -d' ' -f3)"
	echo "# $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2); $(nginx -v 2>&1); $(haproxy -v | head -1); caddy $(caddy version | cut -d' ' -f1)"
	echo "# wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency (after a $WARMUP warm-up), GET $PATH_; $ROUNDS round(s)"
} >>"$RAW"

declare -A RPS P50 P99 NON2XX

# to_ms VALUE: wrk's "787.00us" / "1.63ms" / "1.02s" in milliseconds.
to_ms() {
	awk -v v="$1" 'BEGIN {
		if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
		else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
		else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
		else printf "%s", v }'
}

# measure NAME URL [wrk args...]: one round's figures, kept as NAME#ROUND.
measure() {
	local name="$1#$ROUND" url=$2
	shift 2
	wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" "$@" "$url" >/dev/null
	local out
	out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$@" "$url")
	{
		echo
		echo "## $name  ($url)"
		echo "$out"
	} >>"$RAW"
	RPS[$name]=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
	P50[$name]=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")
	P99[$name]=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
	NON2XX[$name]=$(awk '/Non-2xx/ {print $5}' <<<"$out")
	echo "$name: ${RPS[$name]} req/s, p50 ${P50[$name]} ms, p99 ${P99[$name]} ms" >&2
}

run_direct() { measure direct "http://127.0.0.1:$UP_PLAIN$PATH_"; }

run_nginx() {
	mkdir -p "$WORK/nginx"
	cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes auto;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path $WORK/nginx/body;
	proxy_temp_path $WORK/nginx/proxy;
	fastcgi_temp_path $WORK/nginx/fastcgi;
	uwsgi_temp_path $WORK/nginx/uwsgi;
	scgi_temp_path $WORK/nginx/scgi;
	upstream up { server 127.0.0.1:$UP_PLAIN; keepalive 128; }
	server {
		listen 127.0.0.1:$P_NGINX;
		location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }
	}
	server {
		listen 127.0.0.1:$P_NGINX_TLS ssl http2;
		ssl_certificate $WORK/pki/gateway.crt;
		ssl_certificate_key $WORK/pki/gateway.key;
		ssl_protocols TLSv1.2 TLSv1.3;
		location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }
	}
}
EOF
	nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -g 'daemon off;' 2>>"$WORK/nginx/error.log" &
	PIDS+=($!)
	wait_port "$P_NGINX"
	if [[ $1 == plain ]]; then
		measure nginx "http://127.0.0.1:$P_NGINX$PATH_"
	else
		measure nginx-tls "https://127.0.0.1:$P_NGINX_TLS$PATH_"
	fi
	stop_last
}

run_haproxy() {
	cat >"$WORK/haproxy.cfg" <<EOF
global
	maxconn 4096
	nbthread $(nproc)
defaults
	mode http
	timeout connect 5s
	timeout client 30s
	timeout server 30s
	option http-keep-alive
frontend fe
	bind 127.0.0.1:$P_HAPROXY
	default_backend be
backend be
	http-reuse always
	server s1 127.0.0.1:$UP_PLAIN
EOF
	haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
	PIDS+=($!)
	wait_port "$P_HAPROXY"
	measure haproxy "http://127.0.0.1:$P_HAPROXY$PATH_"
	stop_last
}

run_caddy() {
	mkdir -p "$WORK/caddy"
	cat >"$WORK/caddy/Caddyfile" <<EOF
{
	admin off
	auto_https off
	storage file_system $WORK/caddy/data
}
http://127.0.0.1:$P_CADDY {
	reverse_proxy 127.0.0.1:$UP_PLAIN
}
EOF
	HOME="$WORK/caddy" XDG_DATA_HOME="$WORK/caddy/data" XDG_CONFIG_HOME="$WORK/caddy/config" \
		caddy run --adapter caddyfile --config "$WORK/caddy/Caddyfile" >"$WORK/caddy/caddy.log" 2>&1 &
	PIDS+=($!)
	wait_port "$P_CADDY"
	measure caddy "http://127.0.0.1:$P_CADDY$PATH_"
	stop_last
}

# run_gateway NAME [ENV=VALUE...]: the gateway, with extra environment
# (gateway-gogc100: GOGC=100, the Go runtime's default, to show what the
# gateway's own default of 400 buys; default otherwise).
run_gateway() {
	local name=$1
	shift
	rm -f "$WORK/token"
	env "$@" "$WORK/gatewaybench" gateway -dir "$WORK" -addr "127.0.0.1:$P_GATEWAY" -ops "127.0.0.1:$P_GATEWAY_OPS" \
		-upstream "https://127.0.0.1:$UP_MTLS" ${GATEWAY_FLAGS:-} >"$WORK/gateway.out" 2>&1 &
	PIDS+=($!)
	for _ in $(seq 1 600); do [[ -s "$WORK/token" ]] && break; sleep 0.1; done
	[[ -s "$WORK/token" ]] || { cat "$WORK/gateway.out" >&2; echo "bench-gateway: gateway not ready" >&2; exit 1; }
	measure "$name" "https://127.0.0.1:$P_GATEWAY$PATH_" -H "Authorization: Bearer $(cat "$WORK/token")"
	# The gateway's own count of what it did, for the record: every
	# request a cache hit, none throttled.
	{
		echo
		echo "## $name#$ROUND metrics after the run"
		(exec 3<>"/dev/tcp/127.0.0.1/$P_GATEWAY_OPS" && printf 'GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n' >&3 && cat <&3) |
			grep -E '^rampart_gateway_(token_checks_total|ratelimit_decisions_total)' | grep -v ' 0$' || true
	} >>"$RAW"
	stop_last
}

for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
	for t in $TARGETS; do
		case $t in
		direct) run_direct ;;
		nginx) run_nginx plain ;;
		nginx-tls) run_nginx tls ;;
		haproxy) run_haproxy ;;
		caddy) run_caddy ;;
		gateway) run_gateway gateway ;;
		gateway-gogc100) run_gateway gateway-gogc100 GOGC=100 ;;
		*) echo "bench-gateway: unknown target $t" >&2; exit 2 ;;
		esac
	done
done

# row T ROUND NAME: one table row of target T in round ROUND (ratios to
# nginx and nginx-tls of the same round).
row() {
	local t=$1 r=$2 label=$3
	awk -v t="$label" -v r="${RPS[$t#$r]}" -v p50="${P50[$t#$r]}" -v p99="${P99[$t#$r]}" \
		-v nr="${RPS[nginx#$r]:-}" -v np="${P99[nginx#$r]:-}" -v tr="${RPS[nginx-tls#$r]:-}" -v tp="${P99[nginx-tls#$r]:-}" \
		-v bad="${NON2XX[$t#$r]:-0}" 'BEGIN {
		rr = (nr != "" && nr > 0) ? sprintf("%.2f", r / nr) : "-"
		pr = (np != "" && np > 0) ? sprintf("%.2f", p99 / np) : "-"
		trr = (tr != "" && tr > 0) ? sprintf("%.2f", r / tr) : "-"
		tpr = (tp != "" && tp > 0) ? sprintf("%.2f", p99 / tp) : "-"
		printf "| %s | %.0f | %.2f | %.2f | %s | %s | %s | %s | %s |\n", t, r, p50, p99, rr, pr, trr, tpr, bad }'
}

header() {
	echo "| target | requests/s | p50 ms | p99 ms | throughput / nginx | p99 / nginx | throughput / nginx-tls | p99 / nginx-tls | non-2xx |"
	echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
}

# The tables: every round, then (with several rounds) the round of median
# nginx throughput, all its rows — ratios are always within one round.
{
	for ((r = 1; r <= ROUNDS; r++)); do
		echo
		echo "Round $r (ratios to nginx = plain-HTTP nginx proxy, the issue's denominator; nginx-tls for context):"
		echo
		header
		for t in $TARGETS; do row "$t" "$r" "$t"; done
	done
	if ((ROUNDS > 1)); then
		med=$(for ((r = 1; r <= ROUNDS; r++)); do
			awk -v g="${RPS[gateway#$r]:-0}" -v n="${RPS[nginx#$r]:-1}" -v r="$r" 'BEGIN { printf "%.6f %d\n", g / n, r }'
		done | sort -n | awk -v m=$(((ROUNDS + 1) / 2)) 'NR == m { print $2 }')
		echo
		echo "Median round by gateway/nginx throughput ratio: round $med"
	fi
} | tee -a "$RAW"
echo "raw output: $RAW" >&2
for k in "${!NON2XX[@]}"; do
	if [[ -n "${NON2XX[$k]:-}" ]]; then echo "bench-gateway: $k answered non-2xx responses: the figure is not valid" >&2; exit 1; fi
done
