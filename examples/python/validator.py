"""A validator over HTTP: answers every validation request with a verdict (pass for an even n, fail for an odd one).

    python3 validator.py val-py-a          # until no request comes for IDLE_SECONDS (default: forever)
"""
import os
import sys

import cfn_session

agent_id = sys.argv[1] if len(sys.argv) > 1 else "val-py"
idle = float(os.environ.get("IDLE_SECONDS", "0"))
with cfn_session.from_environment(agent_id, "validators") as session:
    print(f"{agent_id}: session {session.id}", flush=True)
    quiet = 0.0
    while idle == 0 or quiet < idle:
        request = session.receive(timeout_ms=5000)
        if request is None:
            quiet += 5
            continue
        quiet = 0.0
        n = (request.get("payload") or {}).get("n", 0)
        verdict = "pass" if n % 2 == 0 else "fail"
        session.reply(request, {"verdict": verdict, "reason": f"{agent_id} saw n={n}"})
        print(f"{agent_id}: {request['senderId']} asked n={n}: {verdict}", flush=True)
