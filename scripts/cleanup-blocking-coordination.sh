#!/usr/bin/env bash
# The legacy name of the batch cleanup (SPEC §2.12): runs `cfn cleanup` with the same options
# ([--dry-run] [--execute] [--fallback]), environment (REDIS_HOST, REDIS_PORT, REDIS_PASSWORD, REDIS_DB, or REDIS_URL),
# output lines and exit codes (0 done, 1 aborted, 2 errors or a bad option).
set -euo pipefail
if command -v cfn >/dev/null 2>&1; then
  exec cfn cleanup "$@"
fi
here="$(cd "$(dirname "$0")/.." && pwd)"
dll="$here/src/Cfn/bin/Release/net10.0/cfn.dll"
if [[ ! -f "$dll" ]]; then
  dotnet build "$here/src/Cfn/Cfn.csproj" -c Release -nologo -v q >&2
fi
exec dotnet "$dll" cleanup "$@"
