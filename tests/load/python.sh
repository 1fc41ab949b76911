#!/usr/bin/env bash
# What a Python policy costs against the Rust policy it ports (`plugins/python/analysis-policy`
# and `plugins/analysis-policy`): the same gateway binary and load, the demo configuration
# (larder.toml) on one Redis, one gateway at a time, the two languages alternating for ROUNDS
# rounds. Bounded: about 3 minutes with the defaults, plus one compile of each Python version
# the code cache does not hold yet (10 to 20 s each).
#
#   cargo xtask build && cargo xtask plugins   # larder, scat-origin, the Rust and Python policies
#   tests/load/python.sh                        # wrk, redis-server, curl from Debian's packages
#
# Per round and language:
# - "hits/s" and "hit call µs": `wrk -c64` on /api/v1/repositories/1 with a different `x-nonce`
#   per request (the `unique.lua` of run.sh), so that every request calls the policy, which
#   answers a lookup that hits; the mean policy call over the load, from `/stats`.
# - "misses/s" and "miss call µs": a new repository id per request; the origin answers 404,
#   which the policy stores briefly, so each request calls `on-request` and `on-response`.
# - "RSS MB": the gateway's resident memory after both loads.
# - "reload ms": file written to the new version serving, median of 6, the new version's
#   compiled code in the code cache (two versions of the policy, the second with one more custom
#   section, each loaded once before); the watcher's 100 ms quiet period included.
# Knobs: DURATION (seconds per load, default 8), ROUNDS (default 2).
set -euo pipefail

source "$(dirname "$0")/common.sh"
DURATION="${DURATION:-8}"
ROUNDS="${ROUNDS:-2}"
require wrk redis-server curl
PYTHON_POLICY="$ROOT/target/python/analysis-policy.wasm"
[ -f "$PYTHON_POLICY" ] || { echo "run 'cargo xtask plugins' first" >&2; exit 1; }
start_origin_and_redis

for lang in rust python; do
  mkdir -p "$WORK/$lang"
  cp "$PLUGINS/standard.wasm" "$WORK/$lang/"
done
cp "$PLUGINS/analysis-policy.wasm" "$WORK/rust/"
cp "$PYTHON_POLICY" "$WORK/python/"
# Two versions of each policy: the file as built (a), and with one more custom section (b).
for lang in rust python; do
  cp "$WORK/$lang/analysis-policy.wasm" "$WORK/$lang.a"
  python3 - "$WORK/$lang.a" "$WORK/$lang.b" <<'EOF'
import sys
data = open(sys.argv[1], "rb").read()
name = b"larder-load-version"
body = bytes([len(name)]) + name + b"b"
open(sys.argv[2], "wb").write(data + b"\x00" + bytes([len(body)]) + body)
EOF
done

unique_script "$WORK/unique.lua" 'wrk.format(nil, nil, { ["x-nonce"] = id })'
repository_flood_script "$WORK/misses.lua"

start_gateway() { # lang; sets PORT, ADMIN, GATEWAY_PID
  PORT=$(free_port); ADMIN=$(free_port)
  REDIS_URL="redis://127.0.0.1:$REDIS_PORT" LARDER_UPSTREAM="http://127.0.0.1:$ORIGIN_PORT" \
    LARDER_LISTEN="127.0.0.1:$PORT" LARDER_ADMIN_LISTEN="127.0.0.1:$ADMIN" \
    LARDER_PLUGIN_DIR="$WORK/$1" LARDER_LOG=warn \
    "$BIN" serve --config "$ROOT/larder.toml" >>"$WORK/$1.log" 2>&1 &
  GATEWAY_PID=$!
  PIDS+=($GATEWAY_PID)
  wait_up "$ADMIN"
}

version() { # the loaded version of analysis-policy (/health; no Python here: it is polled)
  curl -fs "http://127.0.0.1:$ADMIN/health" | grep -o '"name":"analysis-policy","version":"[0-9a-f]*"'
}

# wrk on `path` with `script`: "requests/s mean-call-µs".
load() { # path script
  local calls0 us0 calls1 us1 out rps
  read -r calls0 us0 < <(plugin_calls "$ADMIN")
  out=$(wrk -t2 -c64 -d"$DURATION"s -s "$2" "http://127.0.0.1:$PORT$1")
  read -r calls1 us1 < <(plugin_calls "$ADMIN")
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  echo "$rps $(awk -v c="$((calls1 - calls0))" -v u="$us1" -v v="$us0" 'BEGIN { printf "%.1f", (u - v) / c }')"
}

# Writes `file` over the policy (atomically) and waits for its version to serve: milliseconds.
swap_to() { # lang file
  local before started
  before=$(version)
  cp "$2" "$WORK/$1/.analysis-policy.wasm.new"
  started=$(date +%s%N)
  mv "$WORK/$1/.analysis-policy.wasm.new" "$WORK/$1/analysis-policy.wasm"
  for _ in $(seq 1 12000); do
    [ "$(version)" != "$before" ] && break
    sleep 0.005
  done
  echo $(( ($(date +%s%N) - started) / 1000000 ))
}

reloads() { # lang: median ms of 6 reloads between two cached versions
  local i ms=()
  # Each version once, to have both compiled in the code cache.
  swap_to "$1" "$WORK/$1.b" >/dev/null
  swap_to "$1" "$WORK/$1.a" >/dev/null
  for i in 1 2 3; do
    ms+=("$(swap_to "$1" "$WORK/$1.b")" "$(swap_to "$1" "$WORK/$1.a")")
  done
  printf '%s\n' "${ms[@]}" | sort -n | awk '{ v[NR] = $1 } END { printf "%d", (v[3] + v[4]) / 2 }'
}

printf "\n%-7s %5s %9s %12s %9s %13s %7s %10s\n" lang round "hits/s" "hit call µs" "misses/s" "miss call µs" "RSS MB" "reload ms"
for round in $(seq 1 "$ROUNDS"); do
  for lang in python rust; do
    start_gateway "$lang"
    curl -fs -o /dev/null "http://127.0.0.1:$PORT/api/v1/repositories/1"
    read -r hits hit_us < <(load /api/v1/repositories/1 "$WORK/unique.lua")
    read -r misses miss_us < <(load /api/v1/repositories/1 "$WORK/misses.lua")
    rss=$(awk '/^VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$GATEWAY_PID/status")
    reload=$(reloads "$lang")
    printf "%-7s %5s %9s %12s %9s %13s %7s %10s\n" "$lang" "$round" "$hits" "$hit_us" "$misses" "$miss_us" "$rss" "$reload"
    kill "$GATEWAY_PID"; wait "$GATEWAY_PID" 2>/dev/null || true
  done
done
