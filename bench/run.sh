#!/usr/bin/env bash
# Runs the benchmarks against a private redis-server on a free loopback port. Usage: bash bench/run.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v redis-server >/dev/null || { echo "redis-server is missing: apt-get install -y redis-server" >&2; exit 1; }
PID=""
trap '[[ -n "$PID" ]] && kill "$PID" 2>/dev/null' EXIT
for _ in $(seq 1 20); do
  PORT=$((20000 + RANDOM % 40000))
  redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize no --logfile /dev/null &
  PID=$!
  for _ in $(seq 1 50); do redis-cli -p "$PORT" ping 2>/dev/null | grep -q PONG && break 2; kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
  kill "$PID" 2>/dev/null || true; PID=""
done
[[ -n "$PID" ]] || { echo "could not start redis-server" >&2; exit 1; }
CFN_BENCH_REDIS_PID="$PID" dotnet run -c Release --project bench/Cfn.Bench -- --redis "127.0.0.1:$PORT" --out "${BENCH_OUT:-bench/results.json}" "$@"
