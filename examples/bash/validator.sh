#!/bin/bash
# A validator agent: answers each validation request with a verdict (pass for an even n, fail for an odd one).
# Run it as `cfn agent run --id val-a --swarm validators -- bash validator.sh`. It stops (exit 0, a graceful stop of the
# agent) when told to with a status_update {"stop":true}, or once no request came for IDLE_SECONDS (default 60); any
# other failure exits with the verb's code.
set -u
idle_ms=$(( ${IDLE_SECONDS:-60} * 1000 ))
while true; do
  req=$(cfn agent receive --timeout-ms "$idle_ms"); code=$?
  (( code == 3 )) && exit 0          # nothing for IDLE_SECONDS: done
  (( code != 0 )) && exit "$code"
  [[ $(jq -r '.type + ":" + (.payload.stop // false | tostring)' <<<"$req") == status_update:true ]] && exit 0
  n=$(jq -r '.payload.n' <<<"$req")
  if (( n % 2 == 0 )); then verdict=pass; else verdict=fail; fi
  cfn agent reply --to "$(jq -r .senderId <<<"$req")" --in-reply-to "$(jq -r .messageId <<<"$req")" \
    --payload "$(jq -cn --arg v "$verdict" --arg r "$CFN_AGENT_ID saw n=$n" '{verdict: $v, reason: $r}')" >/dev/null || exit $?
done
