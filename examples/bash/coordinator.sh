#!/bin/bash
# A coordinator agent: one CFN loop per number given. Each loop sends the validation request to every validator in
# $VALIDATORS, blocks until all have ACKed it, collects their verdicts (matched to this loop's requests) and decides.
# Run it as `cfn agent run --id coordinator-1 --swarm swarm-1 -- bash coordinator.sh 2 3 4`. Exit codes are the verbs':
# 3 a timeout, 4 a validator died (peer_dead), 5 this agent was superseded. With STOP_VALIDATORS=1 it tells the
# validators to stop when its loops are done.
set -u
validators=${VALIDATORS:-val-a,val-b}
count=$(tr ',' '\n' <<<"$validators" | wc -l)
for n in "$@"; do
  sent=$(cfn agent send --to "$validators" --type validation --payload "{\"n\":$n}" --iteration "$n" --wait --timeout-ms 30000)
  code=$?
  if (( code != 0 )); then
    echo "loop $n: $(jq -c '{status, missing}' <<<"$sent" 2>/dev/null || echo failed)"
    exit "$code"
  fi
  requests=$(jq -c '[.messages[].messageId]' <<<"$sent")
  verdicts=()
  while (( ${#verdicts[@]} < count )); do
    reply=$(cfn agent receive --timeout-ms 30000) || exit $?
    # A late answer to an earlier loop is not one of this loop's verdicts.
    jq -e --argjson ids "$requests" '.payload.inReplyTo as $r | $ids | index($r) != null' <<<"$reply" >/dev/null || continue
    verdicts+=("$(jq -r '"\(.senderId)=\(.payload.verdict)"' <<<"$reply")")
  done
  if [[ " ${verdicts[*]}" == *=fail* ]]; then decision=fail; else decision=pass; fi
  echo "loop $n: $decision $(printf '%s\n' "${verdicts[@]}" | sort | paste -sd' ')"
done
if [[ ${STOP_VALIDATORS:-0} == 1 ]]; then
  cfn agent send --to "$validators" --type status_update --payload '{"stop":true}' >/dev/null || exit $?
fi
