# What the load scripts share (sourced, not run): where the binaries are, a work directory and
# the processes to stop when the script ends, free ports, and the origin and Redis every
# measurement runs against.
#
#   source "$(dirname "$0")/common.sh"
#   require wrk redis-server curl      # exits with the install command when one is missing
#   start_origin_and_redis             # sets ORIGIN_PORT, REDIS_PORT, REDIS_PID

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${LARDER_BIN:-$ROOT/target/release/larder}"
ORIGIN_BIN="${ORIGIN_BIN:-$ROOT/target/release/scat-origin}"
PLUGINS="${PLUGIN_DIR:-$ROOT/target/plugins}"

require() { # tool...
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "$tool is needed (as root: cargo xtask apt-install $*)" >&2; exit 1; }
  done
  [ -x "$BIN" ] && [ -x "$ORIGIN_BIN" ] && [ -f "$PLUGINS/standard.wasm" ] \
    || { echo "run 'cargo xtask build' first" >&2; exit 1; }
}

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { # admin port: until the gateway's /health says its store is up (at most 10 s)
  for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$1/health" | grep -q '"up":true' && return 0
    sleep 0.1
  done
}
wait_http() {
  for _ in $(seq 1 100); do curl -fs -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "nothing answers at $1" >&2; exit 1
}

# The stand-in backend without delays, and a Redis without persistence. Not called in `$(...)`:
# a subshell's PIDS would be lost, and the processes left running after the script.
start_origin_and_redis() {
  ORIGIN_PORT=$(free_port)
  "$ORIGIN_BIN" --listen "127.0.0.1:$ORIGIN_PORT" --delay-ms 0 --ai-delay-ms 0 >"$WORK/origin.log" 2>&1 &
  PIDS+=($!)
  REDIS_PORT=$(free_port)
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" >"$WORK/redis.log" 2>&1 &
  REDIS_PID=$!
  PIDS+=($REDIS_PID)
  wait_http "http://127.0.0.1:$ORIGIN_PORT/api/v1/health"
}

# A wrk script whose every request carries a new id (`$2`, a Lua expression of `id`): each wrk
# thread has its own Lua state, so the id carries the thread's number and a per-run random
# prefix, or every id would be sent once per thread (and again in the next run, which a
# gateway's table of decisions remembers).
unique_script() { # file request-expression
  cat >"$1" <<EOF
local threads = 0
math.randomseed(os.time() + #"$1")
local run = tostring(math.random(1, 1e9))
function setup(thread)
  threads = threads + 1
  thread:set("tid", run .. "-" .. threads)
end
local n = 0
request = function()
  n = n + 1
  local id = tid .. "-" .. n
  return $2
end
EOF
}

# A wrk script asking for a new repository id with every request (`/api/v1/repositories/N`,
# beyond the origin's repositories: a 404 the analysis policy stores briefly), unique across
# wrk threads and runs, digits only (the policy passes other ids uncached).
repository_flood_script() { # file
  cat >"$1" <<'LUA'
local threads = 0
math.randomseed(os.time())
local run = math.random(1, 1000) * 100000000
function setup(thread)
  threads = threads + 1
  thread:set("base", run + threads * 10000000)
end
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, "/api/v1/repositories/" .. (base + n))
end
LUA
}

plugin_calls() { # admin port: "calls total_µs" of the policy calls so far (/stats)
  curl -fs "http://127.0.0.1:$1/stats" | python3 -c '
import json, sys
t = json.load(sys.stdin)["total"]
print(t["plugin_calls"], t["plugin_calls"] * (t["plugin_call_us"] or 0))'
}
