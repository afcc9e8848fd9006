"""A client for cfn's HTTP agent sessions (docs/agents.md), on Python's standard library only.

An agent opens a session, then sends, receives, waits and replies through it; the session keeps the agent alive in
the swarm while the agent keeps calling within its lease.
"""
import json
import os
import urllib.error
import urllib.request


class CfnError(Exception):
    """A request cfn refused: the HTTP status and cfn's {error, code, field}."""

    def __init__(self, status, body):
        super().__init__(f"{status} {body.get('code')}: {body.get('error')}")
        self.status = status
        self.code = body.get("code")
        self.field = body.get("field")


class Session:
    """One agent's session on a cfn process that runs the swarm manager (cfn up, or cfn serve --role swarm-manager)."""

    def __init__(self, base_url, agent_id, swarm_id, lease_ms=30000, create_token=None):
        self.base = base_url.rstrip("/")
        # Creating needs loopback, CFN_ADMIN_TOKEN or CFN_AGENT_TOKEN; every later call needs the session's own token.
        created = self._call("POST", "/api/agents/sessions",
                             {"agentId": agent_id, "swarmId": swarm_id, "leaseMs": lease_ms}, create_token)
        self.id = created["sessionId"]
        self.agent_id = agent_id
        self._token = created["token"]

    def send(self, to, signal_type, payload=None, wait=False, timeout_ms=None, iteration=1):
        body = {"to": to, "type": signal_type, "payload": payload, "wait": wait, "iteration": iteration}
        if timeout_ms is not None:
            body["timeoutMs"] = timeout_ms
        return self._act("send", body)

    def receive(self, timeout_ms=30000):
        """The next signal (a dict with messageId, senderId, type, payload, ...), or None when none came in time."""
        got = self._act("receive", {"timeoutMs": timeout_ms})
        return None if got.get("status") == "timeout" else got

    def wait(self, peers, message_id, timeout_ms=None):
        body = {"for": peers, "messageId": message_id}
        if timeout_ms is not None:
            body["timeoutMs"] = timeout_ms
        return self._act("wait", body)

    def reply(self, request, payload):
        """Answers a received request with a completion signal bound to it (payload: a dict, e.g. a verdict)."""
        return self._act("reply", {"to": request["senderId"], "inReplyTo": request["messageId"], "payload": payload})

    def close(self):
        return self._call("DELETE", f"/api/agents/sessions/{self.id}", None, self._token)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _act(self, action, body):
        return self._call("POST", f"/api/agents/sessions/{self.id}/{action}", body, self._token)

    def _call(self, method, path, body, token):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", "Bearer " + token)
        try:
            # Long-polls last up to their timeoutMs; the socket waits a little longer than the longest one cfn allows.
            with urllib.request.urlopen(request, timeout=330) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as e:
            raise CfnError(e.code, json.loads(e.read() or b"{}")) from None


def from_environment(agent_id, swarm_id, lease_ms=30000):
    """A session on CFN_URL (default http://127.0.0.1:8080), created with CFN_AGENT_TOKEN when it is set."""
    return Session(os.environ.get("CFN_URL", "http://127.0.0.1:8080"), agent_id, swarm_id, lease_ms,
                   os.environ.get("CFN_AGENT_TOKEN"))
