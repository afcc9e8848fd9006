"""A coordinator over HTTP: one CFN loop per n — ask every validator, wait for all ACKs, collect the verdicts, decide.

    python3 coordinator.py coord-py val-py-a,val-py-b 2 3 4
Exits 0 when every loop was decided, 4 when a validator died (peer_dead), 3 on a timeout.
"""
import sys

import cfn_session

agent_id, validators, numbers = sys.argv[1], sys.argv[2].split(","), [int(n) for n in sys.argv[3:]]
with cfn_session.from_environment(agent_id, "swarm-py") as session:
    for n in numbers:
        # Blocks until every validator has ACKed (received) the request: push wake-up on cfn's side.
        sent = session.send(validators, "validation", {"n": n}, wait=True, timeout_ms=30000)
        if sent["status"] != "completed":
            print(f"loop {n}: {sent['status']}, missing {sent['missing']}", flush=True)
            sys.exit(4 if sent["status"] == "peer_dead" else 3)
        requests = {m["messageId"] for m in sent["messages"]}
        verdicts = {}
        while len(verdicts) < len(validators):
            reply = session.receive(timeout_ms=30000)
            if reply is None:
                print(f"loop {n}: no verdict from {sorted(set(validators) - set(verdicts))}", flush=True)
                sys.exit(3)
            if reply["payload"].get("inReplyTo") in requests:  # an answer to this loop, not a late one
                verdicts[reply["senderId"]] = reply["payload"]["verdict"]
        decision = "pass" if all(v == "pass" for v in verdicts.values()) else "fail"
        print(f"loop {n}: {decision} {dict(sorted(verdicts.items()))}", flush=True)
