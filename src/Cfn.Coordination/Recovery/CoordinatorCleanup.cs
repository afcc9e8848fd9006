using Cfn.Coordination.Identity;
using Cfn.Coordination.Metrics;
using Cfn.Coordination.Redis;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Cfn.Coordination.Recovery;

/// <summary>
/// Removes one coordinator's state (SPEC §2.12, D14): its keys are found by exact prefixes and segment checks
/// (<see cref="KeyOwnership"/>), then deleted in atomic batches that re-check the heartbeat first, so a coordinator
/// that is alive is never cleaned unless the caller forces it. Afterwards <c>SCAN MATCH blocking:*{id}*</c> finds
/// nothing of the coordinator (other IDs that contain it as a substring keep their keys). A validator is cleaned the
/// same way; its heartbeat key <c>validator:heartbeat:{id}</c> is one of the fixed keys.
/// </summary>
internal sealed class CoordinatorCleanup
{
    /// <summary>Keys per delete script: small enough that no single command takes long.</summary>
    internal const int BatchSize = 256;

    private readonly IDatabase _database;
    private readonly IConnectionMultiplexer _multiplexer;
    private readonly RecoveryOptions _options;
    private readonly RecoveryMetrics _metrics;
    private readonly ILogger _logger;
    private readonly bool _tsCompat;

    /// <summary>Creates the cleanup over <paramref name="redis"/>.</summary>
    public CoordinatorCleanup(RedisContext redis, RecoveryOptions options, RecoveryMetrics metrics)
    {
        ArgumentNullException.ThrowIfNull(redis);
        _database = redis.Database;
        _multiplexer = redis.Multiplexer;
        _options = options;
        _metrics = metrics;
        _tsCompat = redis.Options.TsCompat;
        _logger = redis.LoggerFactory.CreateLogger<CoordinatorCleanup>();
    }

    /// <summary>
    /// Deletes every key of <paramref name="coordinatorId"/>. Unless <paramref name="force"/> is set, a coordinator whose
    /// heartbeat is younger than <see cref="RecoveryOptions.HeartbeatStaleThreshold"/> is refused and nothing is deleted.
    /// Idempotent: a second run deletes 0 keys.
    /// </summary>
    /// <exception cref="InvalidIdException">The ID is invalid; nothing was read or written.</exception>
    /// <param name="coordinatorId">The coordinator (or validator) to clean.</param>
    /// <param name="force">Clean even when its heartbeat is fresh.</param>
    /// <param name="keepTsSignal">
    /// Keep a TS signal left unconsumed in K2 (D13): true for every cleanup but an operator's forced one. A dead receiver's
    /// TS signal is handed over before its escalation's cleanup when CFN_TS_COMPAT is on; otherwise it waits for its TTL.
    /// </param>
    public async Task<CleanupResult> CleanupAsync(string coordinatorId, bool force = false, bool keepTsSignal = true)
    {
        Ids.RequireName(coordinatorId, "coordinatorId");
        var swarm = (string?)await _database.HashGetAsync(Keys.Swarms, coordinatorId).ConfigureAwait(false);
        var keys = await EnumerateKeysAsync(coordinatorId).ConfigureAwait(false);
        if (force && await IsFreshAsync(coordinatorId).ConfigureAwait(false))
        {
            _logger.LogWarning("Forced cleanup of a coordinator whose heartbeat is fresh coordinator={CoordinatorId}", coordinatorId);
        }

        var result = await DeleteAsync(coordinatorId, keys, force, keepTsSignal: keepTsSignal).ConfigureAwait(false);
        if (!result.Refused)
        {
            // A peer may have written a key naming it (its ACK of this coordinator's signal) between the scan and the deletion
            // of the heartbeat; with the heartbeat and registry entry gone no new one is written (ack.lua), so one more
            // pass finds the last of them and the runbook's `--scan --pattern "blocking:*{id}*"` comes back empty (#85).
            var late = await DeleteAsync(coordinatorId, await EnumerateKeysAsync(coordinatorId).ConfigureAwait(false), force: true,
                keepTsSignal: keepTsSignal).ConfigureAwait(false);
            if (swarm is not null && Ids.IsValidName(swarm))
            {
                // Work it took from its swarm's queue but never recorded (it died in between) goes back to the queue.
                await WorkQueue.RequeueTakenAsync(_database, swarm, coordinatorId, _logger).ConfigureAwait(false);
            }

            result = result with
            {
                KeysDeleted = result.KeysDeleted + late.KeysDeleted,
                Categories = result.Categories.ToDictionary(c => c.Key, c => c.Value + late.Categories.GetValueOrDefault(c.Key), StringComparer.Ordinal),
            };

            _metrics.CleanupKeysDeleted.Inc(result.KeysDeleted);
            _logger.LogInformation(
                "Dead coordinator cleanup complete coordinator={CoordinatorId} keysDeleted={KeysDeleted} heartbeat={Heartbeat} acks={Acks} signals={Signals} idempotency={Idempotency} activity={Activity} other={Other}",
                coordinatorId, result.KeysDeleted, result.Categories[KeyOwnership.Heartbeat], result.Categories[KeyOwnership.Acks],
                result.Categories[KeyOwnership.Signals], result.Categories[KeyOwnership.Idempotency], result.Categories[KeyOwnership.Activity],
                result.Categories[KeyOwnership.Other]);
        }
        else
        {
            _logger.LogWarning("Cleanup refused: coordinator={CoordinatorId} heartbeat is fresh (age {AgeMs} ms); use force to clean anyway",
                coordinatorId, result.HeartbeatAgeMs);
        }

        return result;
    }

    /// <summary>
    /// Every key of the coordinator with its category: the fixed keys, plus one pass of <c>SCAN MATCH blocking:*{id}*</c>
    /// and one of <c>swarm:*:blocking:{id}</c>, each result kept only when its segments name the coordinator.
    /// </summary>
    public async Task<IReadOnlyList<(RedisKey Key, string Category)>> EnumerateKeysAsync(string coordinatorId)
    {
        Ids.RequireName(coordinatorId, "coordinatorId");
        var found = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            [(string)Keys.Heartbeat(coordinatorId)!] = KeyOwnership.Heartbeat,
            [(string)Keys.ValidatorHeartbeat(coordinatorId)!] = KeyOwnership.Heartbeat, // a validator's (no K1)
            [(string)Keys.Signal(coordinatorId)!] = KeyOwnership.Signals,
            [(string)Keys.Inbox(coordinatorId)!] = KeyOwnership.Signals,
            [(string)Keys.Activity(coordinatorId)!] = KeyOwnership.Activity,
            [(string)Keys.Unblock(coordinatorId)!] = KeyOwnership.Other,
        };
        foreach (var pattern in new[] { $"blocking:*{coordinatorId}*", $"{Keys.SwarmPrefix}*:blocking:{coordinatorId}" })
        {
            await foreach (var key in ScanAsync(pattern).ConfigureAwait(false))
            {
                var category = KeyOwnership.CategoryFor(key, coordinatorId);
                if (category is not null)
                {
                    found[key] = category;
                }
            }
        }

        return found.Select(kv => ((RedisKey)kv.Key, kv.Value)).ToList();
    }

    /// <summary>Deletes <paramref name="keys"/> of a coordinator in atomic batches (the first one re-checks liveness unless forced).</summary>
    internal async Task<CleanupResult> DeleteAsync(
        string coordinatorId, IReadOnlyList<(RedisKey Key, string Category)> keys, bool force, long? staleThresholdMs = null,
        bool keepTsSignal = true)
    {
        var categories = KeyOwnership.Categories.ToDictionary(c => c, _ => 0L, StringComparer.Ordinal);
        var first = true;
        // The heartbeat keys (K1, a validator's own) go in the first batch, so the liveness check and their deletion are one atomic step.
        // K2 and the inbox go in the first batch too: whether K2 holds a TS signal is judged against the inbox before it is deleted.
        var view = Keys.Signal(coordinatorId);
        var inbox = Keys.Inbox(coordinatorId);
        var ordered = keys.OrderBy(k => k.Category == KeyOwnership.Heartbeat ? 0 : k.Key == view || k.Key == inbox ? 1 : 2).ToList();
        var kept = false;
        for (var start = 0; start < Math.Max(1, ordered.Count); start += BatchSize)
        {
            var batch = ordered.Skip(start).Take(BatchSize).ToList();
            RedisKey[] scriptKeys =
            [
                Keys.Registry, Keys.Health, Keys.Deadlines, Keys.Swarms, Keys.StuckReported, Keys.Heartbeat(coordinatorId), Keys.Validators, Keys.Agents,
                Keys.TsCoordinators, Keys.TsHeartbeats, inbox, view, .. batch.Select(b => b.Key),
            ];
            RedisValue[] args =
            [
                coordinatorId, force || !first ? "1" : "0", staleThresholdMs ?? (long)_options.HeartbeatStaleThreshold.TotalMilliseconds,
                keepTsSignal && first ? "1" : "0", .. batch.Select(b => (RedisValue)b.Category),
            ];
            var reply = (RedisResult[])(await _database.ScriptEvaluateAsync(RedisScripts.CleanupCoordinator, scriptKeys, args)
                .ConfigureAwait(false))!;
            if ((string?)reply[0] == "fresh")
            {
                return new CleanupResult(coordinatorId, 0, categories, Refused: true, HeartbeatAgeMs: (long)reply[1]);
            }

            for (var i = 1; i + 1 < reply.Length; i += 2)
            {
                if ((string?)reply[i] == "ts_signal_kept")
                {
                    kept = true;
                    continue;
                }

                categories[(string)reply[i]!] += (long)reply[i + 1];
            }

            first = false;
        }

        if (kept)
        {
            _logger.LogWarning(
                "Cleanup kept a TS signal in {Key}: not consumed by anyone; it stays for its TTL or an operator's forced cleanup coordinator={CoordinatorId}",
                (string?)view, coordinatorId);
        }

        return new CleanupResult(coordinatorId, categories.Values.Sum(), categories);
    }

    private async Task<bool> IsFreshAsync(string coordinatorId)
    {
        var score = await _database.SortedSetScoreAsync(Keys.Registry, coordinatorId).ConfigureAwait(false);
        if (_tsCompat)
        {
            // A TS coordinator's liveness on the Redis clock is when the monitor last saw its K1 change.
            var seen = await _database.SortedSetScoreAsync(Keys.TsCoordinators, coordinatorId).ConfigureAwait(false);
            score = seen > score || score is null ? seen : score;
        }

        if (score is null)
        {
            return false;
        }

        var now = await RedisTime.NowMsAsync(_database).ConfigureAwait(false);
        return now - (long)score.Value <= _options.HeartbeatStaleThreshold.TotalMilliseconds;
    }

    /// <summary>SCAN in pages of 1000 on the primary (an operator path, never a hot one: D3).</summary>
    internal async IAsyncEnumerable<string> ScanAsync(string pattern)
    {
        foreach (var server in _multiplexer.GetServers().Where(s => !s.IsReplica && s.IsConnected))
        {
            await foreach (var key in server.KeysAsync(_database.Database, pattern, pageSize: 1000).ConfigureAwait(false))
            {
                yield return key!;
            }
        }
    }
}
