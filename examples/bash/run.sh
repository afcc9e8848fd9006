#!/bin/bash
# The CFN loop of examples/bash: two validators and a coordinator, each kept alive by `cfn agent run`.
# Needs `cfn` and `jq` on PATH, and REDIS_URL (or REDIS_HOST…) and BLOCKING_COORDINATION_SECRET set as for every
# other cfn process of the swarm. Arguments: the numbers to validate, one loop each (default 2 3 4).
set -u
here=$(cd "$(dirname "$0")" && pwd)
(( $# > 0 )) || set -- 2 3 4
cfn agent run --id val-a --swarm validators -- bash "$here/validator.sh" & a=$!
cfn agent run --id val-b --swarm validators -- bash "$here/validator.sh" & b=$!
VALIDATORS=val-a,val-b STOP_VALIDATORS=1 cfn agent run --id coordinator-1 --swarm swarm-1 -- bash "$here/coordinator.sh" "$@"
code=$?
wait "$a" "$b"
exit "$code"
