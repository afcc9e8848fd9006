#!/usr/bin/env bash
# The long chaos run of issue 11: builds in Release, then runs bench/Cfn.Chaos, which starts its own redis-server (AOF on)
# and the cfn processes, injects faults for N minutes, drains and checks. The report goes to stdout, its JSON to
# CHAOS_OUT (default bench/chaos-results.json); the logs of every process run stay in the work directory it prints.
# Usage: bash bench/chaos.sh [--minutes N] [--rate ITEMS_PER_S] [--seed N] [--drain-seconds N] [--work-dir DIR]
# Exit code: 0 no violation, 1 violations, 2 the run could not be done.
set -uo pipefail
cd "$(dirname "$0")/.."
command -v redis-server >/dev/null || { echo "redis-server is missing: apt-get install -y redis-server" >&2; exit 2; }
command -v dotnet >/dev/null || { echo "the .NET SDK is required (dotnet on PATH)" >&2; exit 2; }
dotnet build cfn.slnx -c Release -nologo -v q 2>&1 | tail -n 3
build=${PIPESTATUS[0]}
if ((build != 0)); then echo "build failed" >&2; exit 2; fi
exec dotnet bench/Cfn.Chaos/bin/Release/net10.0/Cfn.Chaos.dll --cfn src/Cfn/bin/Release/net10.0/cfn.dll \
  --out "${CHAOS_OUT:-bench/chaos-results.json}" "$@"
