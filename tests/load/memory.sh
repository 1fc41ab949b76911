#!/usr/bin/env bash
# Does the memory tier keep its word on memory? The demo configuration with
# `cache.memory_tier_bytes` at 32 MiB, and the same without a tier, each flooded with misses of
# unique repository documents (about 2 KB each, every request a new key, stored) for FLOOD
# seconds; prints each gateway's RSS before and after, what `/health` counts in the tier, and the
# bound the tier promises: RSS with the tier at most 1.25x its budget plus the RSS without a
# tier after the same flood. Bounded: about 2 x FLOOD + 10 seconds.
#
#   cargo xtask build
#   tests/load/memory.sh            # wrk, redis-server, curl from Debian's packages
#
# Knobs: FLOOD (seconds, default 30), CONNS (default 64), TIER (bytes, default 33554432).
set -euo pipefail

source "$(dirname "$0")/common.sh"
FLOOD="${FLOOD:-30}"
CONNS="${CONNS:-64}"
TIER="${TIER:-33554432}"
require wrk redis-server curl python3
start_origin_and_redis

# The demo configuration (larder.toml) as shipped, with the tier's budget added.
start_larder() { # name tier_bytes; sets STARTED_PORT, STARTED_ADMIN, STARTED_PID
  local port admin
  port=$(free_port); admin=$(free_port)
  sed "s/^\[cache\]$/[cache]\nmemory_tier_bytes = $2/" "$ROOT/larder.toml" >"$WORK/$1.toml"
  REDIS_URL="redis://127.0.0.1:$REDIS_PORT" LARDER_UPSTREAM="http://127.0.0.1:$ORIGIN_PORT" \
    LARDER_LISTEN="127.0.0.1:$port" LARDER_ADMIN_LISTEN="127.0.0.1:$admin" \
    LARDER_PLUGIN_DIR="$PLUGINS" LARDER_LOG=warn \
    "$BIN" serve --config "$WORK/$1.toml" >"$WORK/$1.log" 2>&1 &
  STARTED_PID=$!
  PIDS+=($STARTED_PID)
  wait_up "$admin"
  STARTED_PORT=$port
  STARTED_ADMIN=$admin
}

rss_mb() { # pid
  awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"
}

repository_flood_script "$WORK/flood.lua"

flood() { # name tier_bytes; prints one row, sets LAST_RSS
  start_larder "$1" "$2"
  local pid=$STARTED_PID port=$STARTED_PORT admin=$STARTED_ADMIN
  wait_http "http://127.0.0.1:$port/api/v1/repositories/1"
  local before out after rps tier
  before=$(rss_mb "$pid")
  out=$(wrk -t2 -c"$CONNS" -d"$FLOOD"s -s "$WORK/flood.lua" "http://127.0.0.1:$port")
  sleep 1
  after=$(rss_mb "$pid")
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  tier=$(curl -fs "http://127.0.0.1:$admin/health" | python3 -c '
import json, sys
t = json.load(sys.stdin)["store"].get("memory_tier") or {}
print("%.1f MB in %d entries" % (t.get("bytes", 0) / 1e6, t.get("entries", 0)) if t else "-")')
  printf "%-16s %10s %12s %12s   %s\n" "$1" "$rps" "$before" "$after" "$tier"
  LAST_RSS=$after
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

printf "\nflood of unique keys, c%s, %s s each\n" "$CONNS" "$FLOOD"
printf "%-16s %10s %12s %12s   %s\n" gateway "misses/s" "RSS before" "RSS after" "memory tier (/health)"
flood "no tier" 0; without=$LAST_RSS
flood "tier $((TIER / 1048576)) MiB" "$TIER"; with=$LAST_RSS
awk -v w="$with" -v o="$without" -v t="$TIER" 'BEGIN {
  bound = 1.25 * t / 1048576 + o
  printf "\nbound: 1.25 x %.0f MiB + %.1f MB (no tier) = %.1f MB; with the tier: %.1f MB (%s)\n",
    t / 1048576, o, bound, w, (w <= bound ? "within" : "OVER")
}'
