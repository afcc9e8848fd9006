#!/usr/bin/env bash
# Runs every test of cfn against real parts: installs what is missing (Debian, as root), starts a private
# redis-server on a free loopback port with no persistence, builds from scratch, runs the tests, stops Redis,
# and exits with the tests' status. Usage: bash scripts/test.sh [extra dotnet test arguments]
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ARTIFACTS="${CFN_TEST_ARTIFACTS:-$ROOT/.artifacts/test}"
rm -rf "$ARTIFACTS" && mkdir -p "$ARTIFACTS"
# The browser tests save their screenshots and console logs under it (browser/).
export CFN_TEST_ARTIFACTS="$ARTIFACTS"

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
command -v jq >/dev/null || need+=(jq)
command -v curl >/dev/null || need+=(curl)
command -v openssl >/dev/null || need+=(openssl)
# python3 runs examples/python (its test is skipped, with the reason printed, where it is absent)
command -v promtool >/dev/null || need+=(prometheus)
command -v amtool >/dev/null || need+=(prometheus-alertmanager)
# kubectl renders deploy/kubernetes (kubectl kustomize). Debian's package is kubernetes-client; its kustomize must know
# components (kustomize 3.7 or later, kubectl 1.21 or later).
command -v kubectl >/dev/null || need+=(kubernetes-client)
# Debian's Chromium, which the dashboard's browser tests drive through Microsoft.Playwright (its own browser download
# cannot work here).
command -v chromium >/dev/null || need+=(chromium)
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  if [[ $(id -u) -ne 0 ]]; then echo "need root to install ${need[*]} (apt-get install -y ${need[*]})" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq "${need[@]}" >/dev/null || { echo "apt-get install failed" >&2; exit 1; }
fi
command -v dotnet >/dev/null || { echo "the .NET SDK is required (dotnet on PATH)" >&2; exit 1; }

# A free loopback port: try random ones until a redis-server stays up on one.
REDIS_PID=""
cleanup() { [[ -n "$REDIS_PID" ]] && kill "$REDIS_PID" 2>/dev/null && wait "$REDIS_PID" 2>/dev/null; }
trap cleanup EXIT
# 64 databases: the test classes that need a world of their own each own one index, unique across both test
# projects, which run at the same time (0 is shared; grep the tests for `Db =` before taking one).
for _ in $(seq 1 20); do
  PORT=$((20000 + RANDOM % 40000))
  redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize no --databases 64 \
    --dir "$ARTIFACTS" --logfile "$ARTIFACTS/redis.log" &
  REDIS_PID=$!
  for _ in $(seq 1 50); do
    if redis-cli -p "$PORT" ping 2>/dev/null | grep -q PONG; then break 2; fi
    kill -0 "$REDIS_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill "$REDIS_PID" 2>/dev/null; wait "$REDIS_PID" 2>/dev/null; REDIS_PID=""
done
[[ -n "$REDIS_PID" ]] || { echo "could not start redis-server on a free port" >&2; exit 1; }
echo "redis-server $(redis-server --version | awk '{print $3}') on 127.0.0.1:$PORT (pid $REDIS_PID)"
export CFN_TEST_REDIS="127.0.0.1:$PORT"

dotnet build cfn.slnx -c Release --no-incremental -nologo -v q 2>&1 | tail -n 20
build=${PIPESTATUS[0]}
if ((build != 0)); then echo "build failed" >&2; exit "$build"; fi

dotnet test cfn.slnx -c Release --no-build -nologo --logger "trx;LogFilePrefix=results" \
  --results-directory "$ARTIFACTS" "$@" 2>&1 | tee "$ARTIFACTS/test.log"
status=${PIPESTATUS[0]}

# One plain summary line over every test project's results.
passed=0; failed=0; skipped=0
for trx in "$ARTIFACTS"/*.trx; do
  [[ -e "$trx" ]] || continue
  counters=$(grep -o '<Counters [^>]*>' "$trx" | head -1)
  p=$(sed -n 's/.* passed="\([0-9]*\)".*/\1/p' <<<"$counters"); passed=$((passed + ${p:-0}))
  f=$(sed -n 's/.* failed="\([0-9]*\)".*/\1/p' <<<"$counters"); failed=$((failed + ${f:-0}))
  n=$(sed -n 's/.* notExecuted="\([0-9]*\)".*/\1/p' <<<"$counters"); skipped=$((skipped + ${n:-0}))
done
echo "$passed passed, $failed failed, $skipped skipped"
if ((status == 0 && passed == 0)); then echo "no test ran" >&2; exit 1; fi
exit "$status"
