#!/usr/bin/env bash
# Runs the whole cfn system in one process (`cfn up`): installs redis-server, redis-tools and jq when missing (Debian,
# as root), builds cfn, and starts it with its own private redis-server. Arguments go to `cfn up`
# (e.g. --http-port 8080 --swarms 2 --coordinators 3 --validators 3 or --redis HOST:PORT). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
command -v jq >/dev/null || need+=(jq)
command -v curl >/dev/null || need+=(curl)
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  if [[ $(id -u) -ne 0 ]]; then echo "need root to install ${need[*]} (apt-get install -y ${need[*]})" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v dotnet >/dev/null || { echo "the .NET SDK is required (dotnet on PATH)" >&2; exit 1; }
dotnet build src/Cfn/Cfn.csproj -c Release -o .artifacts/cfn -nologo -v quiet >/dev/null
exec .artifacts/cfn/cfn up "$@"
