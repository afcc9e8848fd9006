#!/bin/sh
# Writes /conf/redis.conf and /conf/sentinel.conf for this pod of the redis StatefulSet (init container).
# The primary is the one the Sentinels of the other pods name; when none answers (a new cluster) it is redis-0.
set -eu
self=$(hostname -f)                       # redis-N.redis-headless.redis.svc.<cluster domain>
domain=${self#*.}
# Ask the Sentinels' Service, then each of the first five pods' Sentinels by name: through the Service alone an attempt
# may land on this pod's own Sentinel, which is not running yet.
primary=""
for _ in 1 2 3 4 5; do
  for sentinel in redis-sentinel redis-0.$domain redis-1.$domain redis-2.$domain redis-3.$domain redis-4.$domain; do
    [ "$sentinel" = "$self" ] && continue
    primary=$(REDISCLI_AUTH="$REDIS_PASSWORD" timeout 3 redis-cli -h "$sentinel" -p 26379 \
      sentinel get-master-addr-by-name mymaster 2>/dev/null | head -n 1) || primary=""
    [ -n "$primary" ] && break 2
  done
  sleep 2
done
[ -n "$primary" ] || primary="redis-0.$domain"
echo "this pod: $self; primary: $primary"

cat > /conf/redis.conf <<CONF
port 6379
dir /data
appendonly yes
# cfn's keys are coordination state: never evict them.
maxmemory-policy noeviction
tcp-backlog 511
requirepass "$REDIS_PASSWORD"
masterauth "$REDIS_PASSWORD"
replica-announce-ip $self
# A primary cut off from every replica stops taking writes after 10 s, so a failover cannot lose more than that.
min-replicas-to-write 1
min-replicas-max-lag 10
CONF
if [ "$primary" != "$self" ]; then
  echo "replicaof $primary 6379" >> /conf/redis.conf
fi

cat > /conf/sentinel.conf <<CONF
port 26379
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip $self
# Clients (cfn, redis-cli) and the other Sentinels authenticate with the same password.
requirepass "$REDIS_PASSWORD"
sentinel monitor mymaster $primary 6379 2
sentinel auth-pass mymaster "$REDIS_PASSWORD"
sentinel down-after-milliseconds mymaster 5000
sentinel failover-timeout mymaster 60000
sentinel parallel-syncs mymaster 1
CONF
