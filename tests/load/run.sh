#!/usr/bin/env bash
# Hit throughput and latency, side by side: Larder (Redis only, and with its memory tier) and,
# when installed, NGINX with an equivalent proxy_cache, in front of the same local origin, under
# the same wrk settings. Bounded: about 3 minutes.
#
#   cargo xtask build                     # target/release/{larder,scat-origin}, target/plugins
#   tests/load/run.sh                     # wrk, redis-server, nginx from Debian's packages
#
# Knobs: DURATION (seconds per c64 run, default 10), SIZES (default "1024 65536").
# The origin is scat-origin's /api/v1/blob?bytes=N (N bytes, `Cache-Control: max-age=60`, no
# delay); every target is warmed with one request, so every measured request is a hit.
# Rows with conns "64u" send a different `x-request-id` with every request (a wrk Lua script,
# for every target alike): Larder cannot reuse an earlier request's policy decision
# (host/src/proxy/decisions.rs) and calls the plugin for each one, as it would for clients that
# send a unique id or trace header.
set -euo pipefail

source "$(dirname "$0")/common.sh"
DURATION="${DURATION:-10}"
SIZES="${SIZES:-1024 65536}"
require wrk redis-server curl
start_origin_and_redis

# Two gateways: Redis only, and Redis behind a 64 MiB memory tier. Not called in `$(...)`: a
# subshell's PIDS would be lost, and the gateways left running after the script.
start_larder() { # name tier_bytes; sets STARTED_PORT
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
plugin = "standard"
EOF
  REDIS_URL="redis://127.0.0.1:$REDIS_PORT" LARDER_UPSTREAM="http://127.0.0.1:$ORIGIN_PORT" \
    LARDER_LISTEN="127.0.0.1:$port" LARDER_ADMIN_LISTEN="127.0.0.1:$admin" \
    LARDER_PLUGIN_DIR="$PLUGINS" LARDER_LOG=warn \
    "$BIN" serve --config "$WORK/$1.toml" >"$WORK/$1.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$admin/health" | grep -q '"up":true' && break
    sleep 0.1
  done
  STARTED_PORT=$port
}
start_larder larder-redis 0; LARDER_REDIS=$STARTED_PORT
start_larder larder-tier 67108864; LARDER_TIER=$STARTED_PORT

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

# Each wrk thread has its own Lua state: the id carries the thread's number and a per-run
# random prefix, or every id would be sent once per thread (and again in the next run, which a
# gateway's table of decisions remembers).
cat >"$WORK/unique.lua" <<'EOF'
local threads = 0
math.randomseed(os.time())
local run = tostring(math.random(1, 1e9))
function setup(thread)
  threads = threads + 1
  thread:set("tid", run .. "-" .. threads)
end
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, { ["x-request-id"] = tid .. "-" .. n })
end
EOF

# wrk's summary: requests/s, p50 and p99 (in ms).
measure() { # url connections seconds [lua script]
  local out
  local threads=2
  [ "$2" -lt 2 ] && threads=1
  out=$(wrk -t"$threads" -c"$2" -d"$3"s --latency ${4:+-s "$4"} "$1")
  local rps p50 p99
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  to_ms() { awk -v v="$1" 'BEGIN { n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /ms$/) n=n; else if (v ~ /s$/) n*=1000; printf "%.3f", n }'; }
  echo "$rps $(to_ms "$p50") $(to_ms "$p99")"
}

printf "\n%-22s %6s %5s %12s %9s %9s %8s\n" target size conns "req/s" "p50 ms" "p99 ms" "x nginx"
for size in $SIZES; do
  path="/api/v1/blob?bytes=$size"
  declare -A base=()
  targets=()
  [ -n "$NGINX_PORT" ] && targets+=("nginx:$NGINX_PORT")
  targets+=("larder-redis:$LARDER_REDIS" "larder-tier:$LARDER_TIER")
  for t in "${targets[@]}"; do
    name=${t%%:*}; port=${t##*:}
    url="http://127.0.0.1:$port$path"
    wait_http "$url"
    curl -fs -o /dev/null "$url"; curl -fs -o /dev/null "$url"   # stored, then a hit
    for conns in 64 64u 1; do
      secs=$DURATION; [ "$conns" = 1 ] && secs=$(( (DURATION + 1) / 2 ))
      script=""; [ "$conns" = 64u ] && script="$WORK/unique.lua"
      read -r rps p50 p99 < <(measure "$url" "${conns%u}" "$secs" "$script")
      key="$conns"
      if [ "$name" = nginx ]; then base[$key]=$rps; fi
      ratio="-"
      [ -n "${base[$key]:-}" ] && ratio=$(awk -v a="$rps" -v b="${base[$key]}" 'BEGIN { printf "%.2f", a/b }')
      printf "%-22s %6s %5s %12s %9s %9s %8s\n" "$name" "$size" "$conns" "$rps" "$p50" "$p99" "$ratio"
    done
  done
  unset base
done
echo
echo "origin hits (should be a handful per target, the warm-up): $(curl -fs "http://127.0.0.1:$ORIGIN_PORT/_origin/counts")"
