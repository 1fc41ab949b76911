#!/usr/bin/env bash
# Hit and miss throughput and latency, side by side: Larder (Redis only, and with its memory
# tier) and, when installed, NGINX with an equivalent proxy_cache and Varnish with an equivalent
# VCL, in front of the same local origin, under the same wrk settings. Bounded: about 7 minutes
# (9 with CLUSTER=1).
#
#   cargo xtask build                     # target/release/{larder,scat-origin}, target/plugins
#   tests/load/run.sh                     # wrk, redis-server, nginx, varnish from Debian's packages
#
# Knobs: DURATION (seconds per c64 run, default 10), SIZES (default "1024 65536"), CLUSTER=1
# (adds a gateway on a three-master Redis Cluster of its own, with `redis-cli`), REVERSE=1
# (measures the targets in the opposite order, Larder first), POLICY=FILE.wasm (the gateways'
# route runs this plugin instead of `standard`: what a policy of your own, or a Python one, costs
# under load, in the column "plugin µs" of the 64u rows). Each size's rows print once all its
# targets ran.
# The origin is scat-origin's /api/v1/blob?bytes=N (N bytes, `Cache-Control: max-age=60`, no
# delay); every target is warmed with one request, so every measured request is a hit.
# Rows with conns "64u" send a different `x-nonce` with every request (a wrk Lua script,
# for every target alike): Larder cannot reuse an earlier request's policy decision
# (host/src/proxy/decisions.rs) and calls the plugin for each one, as it would for clients that
# send a unique value in a field the policy is shown. (Tracing fields such as `x-request-id` are
# not shown to policies by default, `plugins.hidden_headers`, so they would not.) Rows "64m" (1 KB only) are misses: every request a new URL (a
# new key for every target, stored by each), the origin answering at once.
#
# Column "redis µs/req": the CPU time (user + system) of the redis-server (or the cluster's
# nodes) over the run, divided by the requests answered; a hit that Redis answers costs it this
# much. Column "plugin µs": the gateway's mean policy call over the run (from `/stats`; "-" below
# 1,000 calls, when decisions were reused: a mean of a few warm-up calls says nothing).
set -euo pipefail

source "$(dirname "$0")/common.sh"
DURATION="${DURATION:-10}"
SIZES="${SIZES:-1024 65536}"
require wrk redis-server curl
start_origin_and_redis
POLICY_NAME=standard
if [ -n "${POLICY:-}" ]; then
  mkdir -p "$WORK/plugins"
  cp "$POLICY" "$WORK/plugins/"
  PLUGINS="$WORK/plugins"
  POLICY_NAME=$(basename "$POLICY" .wasm)
fi

# Two gateways: Redis only, and Redis behind a 64 MiB memory tier (and with CLUSTER=1 one on a
# Redis Cluster). Not called in `$(...)`: a subshell's PIDS would be lost, and the gateways left
# running after the script.
start_larder() { # name tier_bytes [redis url]; sets STARTED_PORT
  local port admin
  port=$(free_port); admin=$(free_port)
  cat >"$WORK/$1.toml" <<EOF
[cache]
memory_tier_bytes = $2

[plugins]
watch = false

[[route]]
name = "blob"
path = "/api/v1/blob"
plugin = "$POLICY_NAME"
EOF
  REDIS_URL="${3:-redis://127.0.0.1:$REDIS_PORT}" LARDER_UPSTREAM="http://127.0.0.1:$ORIGIN_PORT" \
    LARDER_LISTEN="127.0.0.1:$port" LARDER_ADMIN_LISTEN="127.0.0.1:$admin" \
    LARDER_PLUGIN_DIR="$PLUGINS" LARDER_LOG=warn \
    "$BIN" serve --config "$WORK/$1.toml" >"$WORK/$1.log" 2>&1 &
  PIDS+=($!)
  wait_up "$admin"
  STARTED_PORT=$port
  ADMIN[$1]=$admin
}
declare -A ADMIN=()
start_larder larder-redis 0; LARDER_REDIS=$STARTED_PORT
start_larder larder-tier 67108864; LARDER_TIER=$STARTED_PORT

# A three-master Redis Cluster (no replicas), each node on a port whose bus port (+10000) is
# below 65536.
LARDER_CLUSTER=""
CLUSTER_PIDS=()
if [ "${CLUSTER:-0}" = 1 ]; then
  require redis-cli
  nodes=()
  while [ "${#nodes[@]}" -lt 3 ]; do
    p=$(free_port)
    [ "$p" -lt 55000 ] || continue
    mkdir -p "$WORK/cluster-$p"
    redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK/cluster-$p" \
      --cluster-enabled yes --cluster-config-file nodes.conf >"$WORK/cluster-$p.log" 2>&1 &
    PIDS+=($!); CLUSTER_PIDS+=($!)
    nodes+=("127.0.0.1:$p")
  done
  sleep 0.5
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >"$WORK/cluster-create.log" 2>&1
  for _ in $(seq 1 100); do
    redis-cli -p "${nodes[0]##*:}" cluster info | grep -q cluster_state:ok && break
    sleep 0.1
  done
  start_larder larder-cluster 0 "redis+cluster://$(IFS=,; echo "${nodes[*]}")"
  LARDER_CLUSTER=$STARTED_PORT
fi

NGINX_PORT=""
if command -v nginx >/dev/null; then
  NGINX_PORT=$(free_port)
  mkdir -p "$WORK/nginx/cache" "$WORK/nginx/logs"
  cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes auto;
daemon off;
error_log $WORK/nginx/logs/error.log warn;
pid $WORK/nginx/nginx.pid;
user root;
events { worker_connections 1024; }
http {
  access_log off;
  proxy_cache_path $WORK/nginx/cache levels=1:2 keys_zone=c:10m max_size=1g inactive=10m;
  upstream origin { server 127.0.0.1:$ORIGIN_PORT; keepalive 64; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache c;
      proxy_cache_lock on;
      add_header X-Cache \$upstream_cache_status;
    }
  }
}
EOF
  nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" >"$WORK/nginx.log" 2>&1 &
  PIDS+=($!)
fi

# Varnish with its built-in VCL (which caches what `Cache-Control: max-age` allows, keyed on the
# URL and Host, and collapses concurrent misses, as `proxy_cache_lock` and Larder do) and a
# 256 MiB malloc storage; run as the current user (`-j none`), in the foreground.
VARNISH_PORT=""
if command -v varnishd >/dev/null; then
  VARNISH_PORT=$(free_port)
  mkdir -p "$WORK/varnish"
  cat >"$WORK/varnish/default.vcl" <<EOF
vcl 4.1;
backend origin { .host = "127.0.0.1"; .port = "$ORIGIN_PORT"; }
EOF
  varnishd -F -j none -n "$WORK/varnish/state" -a "127.0.0.1:$VARNISH_PORT" \
    -f "$WORK/varnish/default.vcl" -s malloc,256m >"$WORK/varnish.log" 2>&1 &
  PIDS+=($!)
fi

unique_script "$WORK/unique.lua" 'wrk.format(nil, nil, { ["x-nonce"] = id })'
# Misses: a new URL with every request (`k=` is ignored by the origin, part of every target's
# key).
unique_script "$WORK/miss.lua" 'wrk.format(nil, wrk.path .. "&k=" .. id)'

redis_cpu() { # user + system seconds so far of the Redis processes in REDIS_CPU_PIDS
  local pid total=0
  for pid in $REDIS_CPU_PIDS; do
    total=$(awk -v t="$total" '{ printf "%.3f", t + ($14 + $15) / 100 }' "/proc/$pid/stat")
  done
  echo "$total"
}

# wrk's summary: requests/s, p50 and p99 (in ms), and Redis's CPU per request (µs).
measure() { # url connections seconds [lua script]
  local out before after
  local threads=2
  [ "$2" -lt 2 ] && threads=1
  before=$(redis_cpu)
  out=$(wrk -t"$threads" -c"$2" -d"$3"s --latency ${4:+-s "$4"} "$1")
  after=$(redis_cpu)
  local rps p50 p99 total
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  total=$(awk '/requests in/ {print $1}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  to_ms() { awk -v v="$1" 'BEGIN { n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /ms$/) n=n; else if (v ~ /s$/) n*=1000; printf "%.3f", n }'; }
  echo "$rps $(to_ms "$p50") $(to_ms "$p99") $(awk -v a="$after" -v b="$before" -v n="$total" 'BEGIN { printf "%.1f", (a - b) * 1e6 / n }')"
}

printf "\n%-14s %6s %5s %10s %8s %8s %8s %9s %13s %10s\n" target size conns "req/s" "p50 ms" "p99 ms" "x nginx" "x varnish" "redis µs/req" "plugin µs"
for size in $SIZES; do
  path="/api/v1/blob?bytes=$size"
  declare -A base=() vbase=()
  measured=()
  targets=()
  [ -n "$NGINX_PORT" ] && targets+=("nginx:$NGINX_PORT")
  [ -n "$VARNISH_PORT" ] && targets+=("varnish:$VARNISH_PORT")
  targets+=("larder-redis:$LARDER_REDIS" "larder-tier:$LARDER_TIER")
  [ -n "$LARDER_CLUSTER" ] && targets+=("larder-cluster:$LARDER_CLUSTER")
  # REVERSE=1 measures Larder first: a machine that slows down as a run goes on (a cloud VM's
  # CPU credits, heat) favours whoever goes first. The ratios are computed once all ran.
  if [ -n "${REVERSE:-}" ]; then
    for ((i = ${#targets[@]} - 1; i >= 0; i--)); do reversed+=("${targets[i]}"); done
    targets=("${reversed[@]}"); unset reversed
  fi
  for t in "${targets[@]}"; do
    name=${t%%:*}; port=${t##*:}
    url="http://127.0.0.1:$port$path"
    wait_http "$url"
    curl -fs -o /dev/null "$url"; curl -fs -o /dev/null "$url"   # stored, then a hit
    # Misses at 1 KB only: at 64 KB they would write gigabytes into every cache.
    rows="64 64u 1"; [ "$size" -le 1024 ] && rows="$rows 64m"
    for conns in $rows; do
      secs=$DURATION; [ "$conns" = 1 ] && secs=$(( (DURATION + 1) / 2 ))
      script=""
      [ "$conns" = 64u ] && script="$WORK/unique.lua"
      [ "$conns" = 64m ] && script="$WORK/miss.lua"
      REDIS_CPU_PIDS=$REDIS_PID
      [ "$name" = larder-cluster ] && REDIS_CPU_PIDS="${CLUSTER_PIDS[*]}"
      admin=${ADMIN[$name]:-}
      [ -n "$admin" ] && read -r calls0 us0 < <(plugin_calls "$admin")
      read -r rps p50 p99 redis_us < <(measure "$url" "${conns%[um]}" "$secs" "$script")
      plugin_us="-"
      if [ -n "$admin" ]; then
        read -r calls1 us1 < <(plugin_calls "$admin")
        plugin_us=$(awk -v c="$((calls1 - calls0))" -v u="$us1" -v v="$us0" 'BEGIN { if (c >= 1000) printf "%.1f", (u - v) / c; else print "-" }')
      fi
      [ "$name" = nginx ] && base[$conns]=$rps
      [ "$name" = varnish ] && vbase[$conns]=$rps
      # Redis's CPU is the gateways' own figure; the peers do not use it.
      case "$name" in larder*) ;; *) redis_us="-" ;; esac
      measured+=("$name $conns $rps $p50 $p99 $redis_us $plugin_us")
    done
  done
  for row in "${measured[@]}"; do
    read -r name conns rps p50 p99 redis_us plugin_us <<<"$row"
    ratio="-"; vratio="-"
    [ -n "${base[$conns]:-}" ] && ratio=$(awk -v a="$rps" -v b="${base[$conns]}" 'BEGIN { printf "%.2f", a/b }')
    [ -n "${vbase[$conns]:-}" ] && vratio=$(awk -v a="$rps" -v b="${vbase[$conns]}" 'BEGIN { printf "%.2f", a/b }')
    printf "%-14s %6s %5s %10s %8s %8s %8s %9s %13s %10s\n" "$name" "$size" "$conns" "$rps" "$p50" "$p99" "$ratio" "$vratio" "$redis_us" "$plugin_us"
  done
  unset base vbase measured
done
echo
echo "origin requests (the warm-ups, and one per miss): $(curl -fs "http://127.0.0.1:$ORIGIN_PORT/_origin/counts")"
