#!/usr/bin/env bash
# What fleet-wide coalescing costs a miss: every request a new key (stored), through one gateway
# on Redis, with the route's `fleet_coalescing` on (a fill lease claimed and finished in Redis
# per miss) and off, alternately in one run, under the same wrk settings. Also Redis's CPU per
# miss. Bounded: about 45 seconds.
#
#   cargo xtask build
#   tests/load/miss.sh              # wrk, redis-server, curl from Debian's packages
#
# Knobs: DURATION (seconds per run, default 10), CONNS (default 64), ROUNDS (default 2).
set -euo pipefail

source "$(dirname "$0")/common.sh"
DURATION="${DURATION:-10}"
CONNS="${CONNS:-64}"
require wrk redis-server redis-cli curl
start_origin_and_redis

start_larder() { # name fleet_coalescing; sets STARTED_PORT, STARTED_ADMIN
  local port admin
  port=$(free_port); admin=$(free_port)
  cat >"$WORK/$1.toml" <<EOF
[plugins]
watch = false

[[route]]
name = "blob"
path = "/api/v1/blob"
plugin = "standard"
fleet_coalescing = $2
EOF
  REDIS_URL="redis://127.0.0.1:$REDIS_PORT" LARDER_UPSTREAM="http://127.0.0.1:$ORIGIN_PORT" \
    LARDER_LISTEN="127.0.0.1:$port" LARDER_ADMIN_LISTEN="127.0.0.1:$admin" \
    LARDER_PLUGIN_DIR="$PLUGINS" LARDER_LOG=warn \
    "$BIN" serve --config "$WORK/$1.toml" >"$WORK/$1.log" 2>&1 &
  PIDS+=($!)
  wait_up "$admin"
  STARTED_PORT=$port
  STARTED_ADMIN=$admin
}
start_larder fleet-on true; ON=$STARTED_PORT; ON_ADMIN=$STARTED_ADMIN
start_larder fleet-off false; OFF=$STARTED_PORT; OFF_ADMIN=$STARTED_ADMIN

# A new key with every request: the query differs (per run, per wrk thread, per request), and
# the standard policy keys on it.
write_script() { # run-id
  cat >"$WORK/miss.lua" <<EOF
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, "/api/v1/blob?bytes=1024&k=$1-" .. id .. "-" .. n)
end
EOF
}

redis_cpu() { # user + system seconds of the Redis process so far
  awk '{ printf "%.3f", ($14 + $15) / 100 }' "/proc/$REDIS_PID/stat"
}

printf "\n%-22s %10s %9s %9s %16s\n" "misses, c$CONNS" "req/s" "p50 ms" "p99 ms" "redis µs/miss"
# Warm both first (plugin instances, connections, the code paths): the first run measured
# otherwise pays for it.
for port in "$ON" "$OFF"; do
  write_script "warm-$port"
  wrk -t2 -c"$CONNS" -d2s -s "$WORK/miss.lua" "http://127.0.0.1:$port" >/dev/null
done

# Alternately, ROUNDS times (default 2): on one busy machine the figures drift, and the
# alternation shows how much.
TARGETS=()
for _ in $(seq 1 "${ROUNDS:-2}"); do
  TARGETS+=("fleet_coalescing on:$ON" "fleet_coalescing off:$OFF")
done
run=0
for target in "${TARGETS[@]}"; do
  name=${target%%:*}; port=${target##*:}
  run=$((run + 1))
  write_script "run-$run"
  redis-cli -p "$REDIS_PORT" CONFIG RESETSTAT >/dev/null
  before=$(redis_cpu)
  out=$(wrk -t2 -c"$CONNS" -d"$DURATION"s --latency -s "$WORK/miss.lua" "http://127.0.0.1:$port")
  after=$(redis_cpu)
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  total=$(awk '/requests in/ {print $1}' <<<"$out")
  to_ms() { awk -v v="$1" 'BEGIN { n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /ms$/) n=n; else if (v ~ /s$/) n*=1000; printf "%.3f", n }'; }
  p50=$(to_ms "$(awk '$1=="50%" {print $2}' <<<"$out")")
  p99=$(to_ms "$(awk '$1=="99%" {print $2}' <<<"$out")")
  per=$(awk -v a="$after" -v b="$before" -v n="$total" 'BEGIN { printf "%.1f", (a - b) * 1e6 / n }')
  printf "%-22s %10s %9s %9s %16s\n" "$name" "$rps" "$p50" "$p99" "$per"
  # Where Redis's time went: calls and µs per call of each command.
  redis-cli -p "$REDIS_PORT" INFO commandstats | tr -d '\r' \
    | awk -F'[:=,]' '/^cmdstat_/ { sub("cmdstat_", "", $1); printf "    %-10s %9d calls %7.2f µs/call\n", $1, $3, $7 }' \
    | sort -k2 -nr | head -6
done

# A figure measured while the store failed, or on hits, would flatter: say how many store
# operations failed, and what the requests were.
for g in "on:$ON_ADMIN" "off:$OFF_ADMIN"; do
  errors=$(curl -fs "http://127.0.0.1:${g##*:}/health" | python3 -c 'import json,sys; print(json.load(sys.stdin)["store"]["errors"])')
  counts=$(curl -fs "http://127.0.0.1:${g##*:}/stats" | python3 -c 'import json,sys; t=json.load(sys.stdin)["total"]; print(t["miss"], "misses,", t["hit"], "hits,", t["coalesced"], "collapsed")')
  echo "fleet_coalescing ${g%%:*}: $counts; store errors $errors"
done
