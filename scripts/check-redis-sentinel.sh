#!/usr/bin/env bash
# Runs the redis-sentinel component's init script (deploy/kubernetes/components/redis-sentinel/configure.sh) for three
# "pods" and starts the Redis and the Sentinel each one's files describe, all on this machine: every pod gets a loopback
# address of its own (so each keeps the ports 6379 and 26379 the script writes), and a private mount namespace gives
# /etc/hosts the pods' names (redis-N.redis-headless.redis.svc.cluster.local) and the Service's (redis-sentinel).
# Checks: a new cluster makes redis-0 the primary and the others its replicas; the Sentinels find each other and the
# replicas; SENTINEL FAILOVER promotes a replica; the old primary's pod, restarted, asks the Sentinels and comes back
# as a replica of the new primary with the data. Exit 0 when all hold. Usage (root): bash scripts/check-redis-sentinel.sh
# Run by tests/Cfn.Tests/Deploy/RedisSentinelComponentTests.cs.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [[ ${CHECK_SENTINEL_IN_NAMESPACE:-} != 1 ]]; then
  [[ $(id -u) -eq 0 ]] || { echo "needs root (a mount namespace for /etc/hosts)" >&2; exit 1; }
  command -v redis-server >/dev/null || { echo "needs redis-server" >&2; exit 1; }
  CHECK_SENTINEL_IN_NAMESPACE=1 exec unshare --mount --propagation private bash "$0" "$@"
fi
W=$(mktemp -d /tmp/cfn-sentinel.XXXXXX)
NET=127.$((20 + RANDOM % 200)).$((1 + RANDOM % 250))   # three addresses: $NET.1 … $NET.3
D=redis-headless.redis.svc.cluster.local
export REDIS_PASSWORD=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
cp /etc/hosts "$W/hosts.orig"
hosts() { # $1: the pod whose address the Service name points at
  { cat "$W/hosts.orig"; for p in 0 1 2; do echo "$NET.$((p + 1)) redis-$p.$D"; done; echo "$NET.$(($1 + 1)) redis-sentinel"; } >"$W/hosts"
}
hosts 0
mount --bind "$W/hosts" /etc/hosts
R() { REDISCLI_AUTH=$REDIS_PASSWORD redis-cli -h "$NET.$(($1 + 1))" -p "$2" "${@:3}" 2>/dev/null; }
stop_pod() { # SHUTDOWN, and the pid files for a server that refused it (one still loading a full sync does)
  local pid
  R "$1" 6379 shutdown nosave >/dev/null; R "$1" 26379 shutdown nosave >/dev/null
  for pid in $(cat "$W/pod$1/redis.pid" "$W/pod$1/sentinel.pid" 2>/dev/null); do
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
  done
  return 0
}
cleanup() { for i in 0 1 2; do stop_pod "$i"; done; rm -rf "$W"; }
trap cleanup EXIT
fail() { echo "FAILED: $*"; for i in 0 1 2; do tail -n 5 "$W/pod$i/"*.log 2>/dev/null; done; exit 1; }
start_pod() {
  local i=$1
  local dir=$W/pod$i
  rm -rf "$dir" && mkdir -p "$dir/bin" "$dir/conf" "$dir/data"
  printf '#!/bin/sh\necho redis-%s.%s\n' "$i" "$D" >"$dir/bin/hostname" && chmod +x "$dir/bin/hostname"
  # The script as shipped; only where it writes its two files changes.
  sed "s#/conf/#$dir/conf/#g" "$ROOT/deploy/kubernetes/components/redis-sentinel/configure.sh" >"$dir/configure.sh"
  PATH=$dir/bin:$PATH sh "$dir/configure.sh" || fail "configure.sh failed for redis-$i"
  # Kept aside: Redis rewrites its own file once Sentinel reconfigures it.
  grep -E '^replicaof' "$dir/conf/redis.conf" >"$dir/replicaof" || echo 'no replicaof (primary)' >"$dir/replicaof"
  echo "redis-$i redis.conf: $(cat "$dir/replicaof")"
  sed -i "s#^dir /data#dir $dir/data#" "$dir/conf/redis.conf"
  redis-server "$dir/conf/redis.conf" --bind "$NET.$((i + 1))" --daemonize yes --logfile "$dir/redis.log" \
    --pidfile "$dir/redis.pid" || fail "redis-$i did not start"
  redis-server "$dir/conf/sentinel.conf" --sentinel --bind "$NET.$((i + 1))" --daemonize yes --logfile "$dir/sentinel.log" \
    --pidfile "$dir/sentinel.pid" || fail "sentinel $i did not start"
  for _ in $(seq 50); do R "$i" 26379 ping | grep -q PONG && break; sleep 0.1; done
}
role() { R "$1" 6379 role | head -n 1; }
primary() { R "$1" 26379 sentinel get-master-addr-by-name mymaster | head -n 1; }
until_true() { # $1 seconds, rest: a command
  local end=$((SECONDS + $1)); shift
  until "$@"; do ((SECONDS < end)) || return 1; sleep 0.2; done
}

for i in 0 1 2; do start_pod "$i"; done
until_true 20 bash -c "[[ \$(REDISCLI_AUTH=$REDIS_PASSWORD redis-cli -h $NET.1 -p 26379 sentinel master mymaster 2>/dev/null | grep -A1 '^num-slaves$' | tail -n 1) == 2 ]]" \
  || fail "the Sentinel of redis-0 does not see two replicas"
until_true 20 bash -c "[[ \$(REDISCLI_AUTH=$REDIS_PASSWORD redis-cli -h $NET.1 -p 26379 sentinel master mymaster 2>/dev/null | grep -A1 '^num-other-sentinels$' | tail -n 1) == 2 ]]" \
  || fail "the Sentinels do not find each other"
roles="$(role 0) $(role 1) $(role 2)"
[[ $roles == "master slave slave" ]] || fail "roles after start: $roles"
echo "new cluster: roles $roles; Sentinels see 2 replicas and 2 other Sentinels"
R 0 6379 set cfn:sentinel-check v1 >/dev/null
until_true 5 bash -c "[[ \$(REDISCLI_AUTH=$REDIS_PASSWORD redis-cli -h $NET.3 get cfn:sentinel-check 2>/dev/null) == v1 ]]" || fail "not replicated to redis-2"

# A Sentinel refuses (NOGOODSLAVE) until its latest INFO of the replicas shows their links up: ask again for a while.
answer=""
for _ in $(seq 60); do
  answer=$(R 1 26379 sentinel failover mymaster)
  [[ $answer == OK ]] && break
  sleep 0.5
done
[[ $answer == OK ]] || fail "SENTINEL FAILOVER refused: $answer"
until_true 30 bash -c "p=\$(REDISCLI_AUTH=$REDIS_PASSWORD redis-cli -h $NET.2 -p 26379 sentinel get-master-addr-by-name mymaster 2>/dev/null | head -n 1); [[ -n \$p && \$p != redis-0.$D ]]" \
  || fail "no new primary after SENTINEL FAILOVER"
new=$(primary 1)
echo "SENTINEL FAILOVER: new primary $new"

# redis-0's pod restarts: its init container must find the new primary through the Sentinels (the Service now
# points at a Sentinel that runs).
stop_pod 0
hosts 1
start_pod 0
grep -q "^replicaof $new 6379" "$W/pod0/replicaof" || fail "restarted redis-0 does not replicate $new"
until_true 20 bash -c "[[ \$(REDISCLI_AUTH=$REDIS_PASSWORD redis-cli -h $NET.1 get cfn:sentinel-check 2>/dev/null) == v1 ]]" \
  || fail "restarted redis-0 did not sync from $new"
echo "restarted redis-0: role $(role 0) of $new, data synced"
echo "sentinel check passed"
