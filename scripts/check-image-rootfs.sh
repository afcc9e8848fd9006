#!/usr/bin/env bash
# Checks an unpacked cfn image (its root file system, e.g. from `podman export`) without a container runtime: each
# program runs under chroot as user 10001 (the image's USER), in a mount namespace of its own with /proc and /dev.
# Usage (as root): bash scripts/check-image-rootfs.sh ROOTFS        Called by scripts/build-image.sh.
set -euo pipefail
R=$(readlink -f "${1:?usage: $0 ROOTFS}")
[[ -x $R/app/cfn ]] || { echo "$R/app/cfn missing" >&2; exit 1; }
ENVS=(env -i PATH=/app:/opt/dotnet-tools:/usr/local/bin:/usr/bin:/bin DOTNET_ROOT=/usr/share/dotnet HOME=/home/cfn)
# in_image CMD...: runs CMD inside the image as 10001:10001; the namespace's mounts go away with it.
in_image() {
  unshare --mount sh -c 'mount -t proc proc "$0/proc" && mount --rbind /dev "$0/dev" && mount -t tmpfs tmpfs "$0/tmp" && exec "$@"' \
    "$R" chroot --userspec=10001:10001 "$R" "${ENVS[@]}" "$@"
}
fail() { echo "FAILED: $*" >&2; exit 1; }

echo "user: $(in_image id)"
# kill is the program (procps), not the shell's builtin: `kubectl exec … -- kill -3 1` runs no shell.
for tool in curl redis-cli jq ps /usr/bin/kill ping mtr nslookup dotnet-gcdump dotnet-stack; do
  where=$(in_image sh -c "command -v $tool") || fail "$tool is not in the image"
  echo "tool: $tool -> $where"
done
in_image curl --version | head -n 1
in_image redis-cli --version
version=$(in_image cfn --version) || fail "cfn --version"
echo "cfn --version: $version"
in_image dotnet-gcdump --version >/dev/null || fail "dotnet-gcdump does not start"

# A short cfn up: a throwaway redis-server on the host (the chroot shares the network), one swarm.
port() { echo $((20000 + RANDOM % 40000)); }
RP=$(port); HP=$(port)
redis-server --port "$RP" --bind 127.0.0.1 --save "" --appendonly no --daemonize no --logfile /dev/null &
redis_pid=$!
log=$(mktemp)
cleanup() { kill "$cfn_pid" 2>/dev/null || true; kill "$redis_pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -f "$log"; }
cfn_pid=""
trap cleanup EXIT
for _ in $(seq 50); do redis-cli -p "$RP" ping >/dev/null 2>&1 && break; sleep 0.1; done
# Job control on: a background job of a shell without it starts with SIGQUIT ignored, and cfn would never see kill -3.
set -m
unshare --mount sh -c 'mount -t proc proc "$0/proc" && mount --rbind /dev "$0/dev" && mount -t tmpfs tmpfs "$0/tmp" && exec "$@"' \
  "$R" chroot --userspec=10001:10001 "$R" "${ENVS[@]}" \
  cfn up --redis "127.0.0.1:$RP" --http-port "$HP" --swarms 1 --coordinators 1 --validators 2 >"$log" 2>&1 &
cfn_pid=$!
ready=""
for _ in $(seq 120); do
  if [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HP/health/ready") == 200 ]]; then ready=1; break; fi
  kill -0 "$cfn_pid" 2>/dev/null || break
  sleep 0.5
done
[[ -n $ready ]] || { cat "$log" >&2; fail "cfn up did not become ready"; }
echo "cfn up: /health/ready 200; GET /api/swarms/status: $(curl -s "http://127.0.0.1:$HP/api/swarms/status" | head -c 160)…"
kill -QUIT "$cfn_pid"
for _ in $(seq 50); do grep -q '=== end of dump' "$log" && break; sleep 0.1; done
grep -q '=== cfn diagnostic dump' "$log" || { tail -n 30 "$log" >&2; fail "no diagnostic dump after SIGQUIT"; }
kill -0 "$cfn_pid" || fail "cfn stopped on SIGQUIT"
echo "cfn up: SIGQUIT printed the diagnostic dump ($(sed -n '/=== cfn diagnostic dump/,/=== end of dump/p' "$log" | wc -l) lines) and cfn kept running"
kill -TERM "$cfn_pid"
code=0; wait "$cfn_pid" || code=$?
cfn_pid=""
((code == 0)) || { tail -n 30 "$log" >&2; fail "cfn up exited $code on SIGTERM"; }
echo "cfn up: SIGTERM, exit code 0"
echo "image check passed"
