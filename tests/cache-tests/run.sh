#!/usr/bin/env bash
# Runs the public HTTP caching test suite (https://github.com/http-tests/cache-tests) against
# Larder with the `standard` policy on a catch-all route, and prints the score.
#
#   CACHE_TESTS_DIR=/path/to/cache-tests tests/cache-tests/run.sh
#
# Needs: a checkout of the suite with `npm install` done in it, node, redis-server, curl, and
# a built gateway and plugin (`cargo xtask build`: target/release/larder,
# target/plugins/standard.wasm). Starts its own suite server, redis-server and gateway on free
# loopback ports and stops them on exit.
#
# Environment:
#   CACHE_TESTS_DIR  the suite's checkout (required)
#   LARDER_BIN       the gateway binary (default target/release/larder)
#   PLUGIN_DIR       where standard.wasm is (default target/plugins)
#   RESULTS          where to write the suite's JSON results (default target/cache-tests-results.json)
#   LOG_DIR          where to keep the server/redis/gateway logs (default target/cache-tests-logs)
#   TEST_ID          run only this test id (prints the suite's request/response dump instead)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

die() { echo "run.sh: $*" >&2; exit 1; }

if [[ -z "${CACHE_TESTS_DIR:-}" ]]; then
  die "set CACHE_TESTS_DIR to a checkout of https://github.com/http-tests/cache-tests (with 'npm install' run in it); see tests/cache-tests/README.md"
fi
[[ -d "$CACHE_TESTS_DIR" ]] || die "CACHE_TESTS_DIR=$CACHE_TESTS_DIR does not exist"
CACHE_TESTS_DIR="$(cd "$CACHE_TESTS_DIR" && pwd)"
for f in test-engine/server/server.mjs test-engine/cli.mjs tests/index.mjs; do
  [[ -f "$CACHE_TESTS_DIR/$f" ]] || die "$CACHE_TESTS_DIR/$f is missing: is CACHE_TESTS_DIR a cache-tests checkout?"
done
[[ -d "$CACHE_TESTS_DIR/node_modules" ]] || die "$CACHE_TESTS_DIR/node_modules is missing: run 'npm install' there first"

larder_bin="${LARDER_BIN:-target/release/larder}"
plugin_dir="${PLUGIN_DIR:-target/plugins}"
results="${RESULTS:-target/cache-tests-results.json}"
log_dir="${LOG_DIR:-target/cache-tests-logs}"
config="tests/cache-tests/larder.toml"

[[ -x "$larder_bin" ]] || die "no gateway binary at $larder_bin: run 'cargo xtask build' (or set LARDER_BIN)"
[[ -f "$plugin_dir/standard.wasm" ]] || die "no $plugin_dir/standard.wasm: run 'cargo xtask build' (or set PLUGIN_DIR)"
for cmd in node redis-server curl; do
  command -v "$cmd" >/dev/null || die "'$cmd' is not on PATH"
done

tmp="$(mktemp -d -t larder-cache-tests.XXXXXX)"
mkdir -p "$log_dir" "$(dirname "$results")"
pids=()
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$tmp"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A free loopback port: bind port 0 and report what the kernel picked. (A small window remains
# between closing it and the server binding it; the waits below catch a lost race.)
free_port() {
  node -e 'const s = require("net").createServer(); s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close() })'
}

# wait_for NAME PID COMMAND...: retries COMMAND for up to 30 s while PID is alive.
wait_for() {
  local name="$1" pid="$2"
  shift 2
  for _ in $(seq 1 150); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    kill -0 "$pid" 2>/dev/null || die "$name exited during start-up; see $log_dir/$name.log"
    sleep 0.2
  done
  die "$name did not come up within 30 s; see $log_dir/$name.log"
}

origin_port="$(free_port)"
redis_port="$(free_port)"
listen_port="$(free_port)"
admin_port="$(free_port)"

# The suite's server (what `npm run server --port=N` runs, without the npm wrapper process so
# that it can be stopped by pid). Its pid file goes into our temp dir, not the shared default.
(
  cd "$CACHE_TESTS_DIR"
  exec env npm_config_protocol=http npm_config_port="$origin_port" npm_config_pidfile="$tmp/server.pid" \
    node test-engine/server/server.mjs
) >"$log_dir/server.log" 2>&1 &
pids+=($!)
origin_pid=$!

redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$tmp" --save '' --appendonly no \
  >"$log_dir/redis.log" 2>&1 &
pids+=($!)
redis_pid=$!

wait_for server "$origin_pid" curl -fsS -o /dev/null "http://127.0.0.1:$origin_port/test-browser.html"
wait_for redis "$redis_pid" bash -c "exec 3<>/dev/tcp/127.0.0.1/$redis_port"

LARDER_UPSTREAM="http://127.0.0.1:$origin_port" \
REDIS_URL="redis://127.0.0.1:$redis_port" \
LARDER_LISTEN="127.0.0.1:$listen_port" \
LARDER_ADMIN_LISTEN="127.0.0.1:$admin_port" \
LARDER_PLUGIN_DIR="$plugin_dir" \
  "$larder_bin" serve --config "$config" >"$log_dir/gateway.log" 2>&1 &
pids+=($!)
gateway_pid=$!
wait_for gateway "$gateway_pid" curl -fsS -o /dev/null "http://127.0.0.1:$admin_port/health"
# The client port answers too (a 404 from the suite's server through the gateway is fine).
wait_for gateway "$gateway_pid" curl -sS -o /dev/null "http://127.0.0.1:$listen_port/test-browser.html"

base="http://127.0.0.1:$listen_port"
echo "suite server :$origin_port, redis :$redis_port, gateway :$listen_port (admin :$admin_port); logs in $log_dir" >&2

if [[ -n "${TEST_ID:-}" ]]; then
  # One test, with the suite's dump of requests and responses (like `npm run cli --id=...`).
  (cd "$CACHE_TESTS_DIR" && npm_config_base="$base" npm_config_id="$TEST_ID" node --no-warnings test-engine/cli.mjs)
  exit 0
fi

# The whole suite (what `npm run --silent cli --base=$base` runs; without npm, the empty id must
# be given as npm_package_config_id too, or the CLI looks for a test called "undefined"). It
# prints the results as JSON on stdout and per-test errors on stderr.
echo "running the suite against $base (takes a few minutes)..." >&2
(cd "$CACHE_TESTS_DIR" && npm_config_base="$base" npm_config_id='' npm_package_config_id='' node --no-warnings test-engine/cli.mjs) \
  >"$tmp/results.json" 2>"$log_dir/cli.log" || die "the suite's CLI failed; see $log_dir/cli.log"
node -e 'JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))' "$tmp/results.json" \
  || die "the suite's CLI did not print JSON; see $tmp/results.json and $log_dir/cli.log"
cp "$tmp/results.json" "$results"
echo "results: $results" >&2
echo "" >&2

CACHE_TESTS_DIR="$CACHE_TESTS_DIR" node tests/cache-tests/score.mjs "$results" ${SCORE_FLAGS:-}
