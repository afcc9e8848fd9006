using System.Globalization;
using Microsoft.Extensions.Logging;
using Prometheus;
using StackExchange.Redis;

namespace Cfn.Coordination.Redis;

/// <summary>
/// What cfn needs to know of Redis's replication (SPEC D19): whether the primary has replicas, so that fencing writes are
/// confirmed with <c>WAIT</c> (a write a failover loses could let a zombie's epoch win, or make a new instance look
/// superseded); and what in the server's settings could drop coordination state, for the start-up warning.
/// </summary>
internal sealed class RedisReplication
{
    /// <summary>How long a reading of the replica count is trusted: a replica added later is noticed within it.</summary>
    private static readonly TimeSpan ReplicasFresh = TimeSpan.FromSeconds(10);

    private static readonly Counter Unconfirmed = Prometheus.Metrics.CreateCounter("redis_fencing_writes_unconfirmed_total",
        "Fencing writes (epochs, escalation locks, transfers) no replica confirmed within REDIS_WAIT_TIMEOUT_MS (SPEC D19).",
        new CounterConfiguration { LabelNames = ["write"] });

    private readonly RedisContext _redis;
    private readonly ILogger _logger;
    private long _replicas = -1;
    private long _readAt = long.MinValue;

    public RedisReplication(RedisContext redis, ILogger logger)
    {
        _redis = redis;
        _logger = logger;
    }

    /// <summary>Forgets the replica count (after a failover the new primary's is read afresh).</summary>
    public void Forget() => Interlocked.Exchange(ref _readAt, long.MinValue);

    /// <summary>
    /// After a fencing write on this context's connection: when the primary has replicas, waits (bounded by
    /// <see cref="CoordinationOptions.ReplicaWaitTimeout"/>) until one has it. Returns false when none confirmed it in
    /// time (logged and counted; the caller goes on: refusing would stop all progress while a replica lags).
    /// </summary>
    public async Task<bool> ConfirmAsync(string write)
    {
        if (await WaitAsync(write).ConfigureAwait(false))
        {
            return true;
        }

        Unconfirmed.WithLabels(write).Inc();
        _logger.LogWarning("Fencing write {Write} not confirmed by {Required} replica(s) within {TimeoutMs} ms: a failover now could lose it",
            write, Math.Max(1, Required), (long)_redis.Options.ReplicaWaitTimeout.TotalMilliseconds);
        return false;
    }

    /// <summary>
    /// After an unconfirmed write: waits (up to <paramref name="patience"/>) until the primary of the moment has the
    /// replicas it needs and they hold everything this connection wrote, so that what is read next is what survives.
    /// An old primary that a failover left behind has no replica: this waits until the client has moved to the new one
    /// (which it does when the old one is demoted). False when <paramref name="patience"/> ran out first.
    /// </summary>
    public async Task<bool> SettleAsync(TimeSpan patience, CancellationToken cancellationToken = default)
    {
        var started = _redis.Time.GetTimestamp();
        while (true)
        {
            try
            {
                Forget();
                if (await WaitAsync("settle").ConfigureAwait(false))
                {
                    return true;
                }
            }
            catch (Exception e) when (RedisErrors.IsTransient(e))
            {
                // the client is moving to another server: ask again
            }

            if (_redis.Time.GetElapsedTime(started) >= patience)
            {
                return false;
            }

            await Task.Delay(TimeSpan.FromMilliseconds(250), _redis.Time, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Replicas every confirmation needs: <c>REDIS_MIN_REPLICAS</c>, else 1 through Sentinel, else 0 (only while replicas exist).</summary>
    private int Required => _redis.Options.MinReplicas ?? (_redis.ViaSentinel ? 1 : 0);

    /// <summary><c>WAIT</c> for the replicas needed (none needed: true at once); true when enough confirmed in time.</summary>
    private async Task<bool> WaitAsync(string write)
    {
        var needed = Required > 0 ? Required : await ReplicasAsync().ConfigureAwait(false) > 0 ? 1 : 0;
        if (needed == 0)
        {
            return true;
        }

        var timeout = (long)_redis.Options.ReplicaWaitTimeout.TotalMilliseconds;
        try
        {
            // WAIT covers every write sent before it on this connection: the multiplexer keeps one, in order.
            var acked = (long)await _redis.Database.ExecuteAsync("WAIT", needed, timeout).ConfigureAwait(false);
            return acked >= needed;
        }
        catch (RedisServerException e)
        {
            _logger.LogWarning("WAIT refused ({Error}); {Write} not confirmed by a replica", e.Message, write);
            return false;
        }
    }

    /// <summary>
    /// The server's settings that could drop coordination state, each as one warning line: an evicting
    /// <c>maxmemory-policy</c>, or a primary with replicas and no persistence (restarted empty, it would be copied to its
    /// replicas). Empty when all is well; settings the ACL user may not read are said to be unknown.
    /// </summary>
    public async Task<IReadOnlyList<string>> DurabilityWarningsAsync()
    {
        var warnings = new List<string>();
        var memory = await InfoAsync("memory").ConfigureAwait(false);
        if (memory.TryGetValue("maxmemory_policy", out var policy) && policy != "noeviction")
        {
            warnings.Add($"Redis maxmemory-policy is {policy}: under memory pressure Redis may evict coordination state (heartbeats, epochs, " +
                         "inboxes, escalation records); set it to noeviction");
        }

        var replication = await InfoAsync("replication").ConfigureAwait(false);
        var persistence = await InfoAsync("persistence").ConfigureAwait(false);
        var replicas = replication.TryGetValue("connected_slaves", out var count) && long.TryParse(count, NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : 0;
        if (replication.GetValueOrDefault("role") == "master" && replicas > 0 && persistence.GetValueOrDefault("aof_enabled") != "1")
        {
            var save = await SaveScheduleAsync().ConfigureAwait(false);
            if (save is "")
            {
                warnings.Add($"Redis primary has {replicas} replica(s) and no persistence (no AOF, no RDB schedule): if it restarts empty, its replicas " +
                             "copy the empty dataset and every epoch and inbox is lost; enable appendonly or a save schedule");
            }
            else if (save is null)
            {
                warnings.Add($"Redis primary has {replicas} replica(s) and no AOF, and its RDB schedule cannot be read (CONFIG GET save refused): " +
                             "make sure it persists, or a restart empty would be copied to its replicas");
            }
        }

        return warnings;
    }

    private async Task<long> ReplicasAsync()
    {
        var now = _redis.Time.GetTimestamp();
        // "No replicas" is trusted for a second only: after a failover the old primary rejoins as a replica within
        // moments, and writes made before it did could be lost by a second failover.
        var fresh = Interlocked.Read(ref _replicas) > 0 ? ReplicasFresh : TimeSpan.FromSeconds(1);
        if (_redis.Time.GetElapsedTime(Interlocked.Read(ref _readAt), now) < fresh)
        {
            return Interlocked.Read(ref _replicas);
        }

        var replication = await InfoAsync("replication").ConfigureAwait(false);
        var replicas = replication.TryGetValue("connected_slaves", out var text) && long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : 0;
        Interlocked.Exchange(ref _replicas, replicas);
        Interlocked.Exchange(ref _readAt, now);
        return replicas;
    }

    private async Task<Dictionary<string, string>> InfoAsync(string section)
    {
        var text = (string?)await _redis.Database.ExecuteAsync("INFO", section).ConfigureAwait(false) ?? "";
        var fields = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var line in text.Split('\n'))
        {
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon > 0 && !line.StartsWith('#'))
            {
                fields[line[..colon]] = line[(colon + 1)..].Trim();
            }
        }

        return fields;
    }

    /// <summary>The RDB schedule (<c>CONFIG GET save</c>), "" for none, null when the ACL user may not read it.</summary>
    private async Task<string?> SaveScheduleAsync()
    {
        try
        {
            var reply = (RedisResult[])(await _redis.Database.ExecuteAsync("CONFIG", "GET", "save").ConfigureAwait(false))!;
            return reply.Length >= 2 ? ((string?)reply[1] ?? "").Trim() : "";
        }
        catch (RedisServerException)
        {
            return null;
        }
    }
}
