using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using Cfn.Coordination.Background;
using Cfn.Coordination.Redis;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Cfn.Coordination.Recovery;

/// <summary>One output line of the batch cleanup: level (INFO, WARN, ERROR) and message, as the legacy script printed them.</summary>
public readonly record struct CleanupLine(string Level, string Message);

/// <summary>The batch cleanup's summary (SPEC §2.12): the numbers of its summary lines and its exit code.</summary>
public sealed record BatchCleanupReport(
    int CoordinatorsChecked,
    int StaleFound,
    long KeysDeleted,
    int Errors,
    long ElapsedMs,
    int ExitCode,
    IReadOnlyList<string> StaleCoordinatorIds);

/// <summary>
/// The batch cleanup job that replaces the legacy Lua and bash scripts (SPEC §2.12, D14; the Lua script blocked Redis for seconds at scale and the bash one ran unlocked, one key at a time): a lock against
/// overlapping runs, stale coordinators judged on the Redis clock from the registry and the heartbeat keys, their keys
/// found in ONE pass over the keyspace (not one per coordinator), and deleted in small atomic per-coordinator batches
/// that re-check liveness, a few at a time. No command touches more than a few hundred keys, so none runs long.
/// Prints the legacy lines and summary, and returns its exit codes: 0 success, 1 aborted (Redis unreachable), 2 errors.
/// </summary>
public sealed partial class BatchCleanup
{
    private const int MgetBatch = 500;
    private const int Parallelism = 8;

    private readonly RedisContext _redis;
    private readonly RecoveryOptions _options;
    private readonly RecoveryMetrics _metrics;
    private readonly CoordinatorCleanup _cleanup;
    private readonly ILogger _logger;

    /// <summary>A cleanup job on its own (the <c>cfn cleanup</c> command): dead coordinators' keys are removed as the timeout handler would.</summary>
    public BatchCleanup(RedisContext redis, RecoveryOptions options, RecoveryMetrics metrics)
        : this(redis, options, metrics, new CoordinatorCleanup(redis, options, metrics))
    {
    }

    /// <summary>The timeout handler's job, sharing its per-coordinator cleanup.</summary>
    internal BatchCleanup(RedisContext redis, RecoveryOptions options, RecoveryMetrics metrics, CoordinatorCleanup cleanup)
    {
        ArgumentNullException.ThrowIfNull(redis);
        _redis = redis;
        _options = options;
        _metrics = metrics;
        _cleanup = cleanup;
        _logger = redis.LoggerFactory.CreateLogger<BatchCleanup>();
    }

    /// <summary>
    /// Runs once. <paramref name="output"/> receives every line (the CLI prints them as
    /// <c>[YYYY-MM-DD HH:MM:SS] [LEVEL] message</c>); the same lines go to the logger.
    /// </summary>
    public async Task<BatchCleanupReport> RunAsync(bool dryRun, Action<CleanupLine>? output = null, string? endpoint = null)
    {
        var watch = Stopwatch.StartNew();
        void Say(string level, string message)
        {
            output?.Invoke(new CleanupLine(level, message));
            var logLevel = level switch { "ERROR" => LogLevel.Error, "WARN" => LogLevel.Warning, _ => LogLevel.Information };
#pragma warning disable CA2254 // the legacy lines are the message
            _logger.Log(logLevel, message);
#pragma warning restore CA2254
        }

        var database = _redis.Database;
        try
        {
            await database.PingAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (RedisErrors.IsTransient(e))
        {
            var (host, port) = SplitEndpoint(endpoint ?? _redis.Multiplexer.GetEndPoints().FirstOrDefault()?.ToString() ?? "unknown");
            var reason = RedisErrors.FirstClause(e);
            Say("ERROR", $"Redis connection failed (host: {host}, port: {port}): {reason}");
            Say("ERROR", "Cleanup aborted");
            _metrics.CleanupRuns.WithLabels("aborted").Inc();
            return new BatchCleanupReport(0, 0, 0, 1, watch.ElapsedMilliseconds, 1, []);
        }

        var token = Guid.NewGuid().ToString("N");
        if (!await database.StringSetAsync(Keys.CleanupLock, token, TimeSpan.FromMinutes(10), When.NotExists).ConfigureAwait(false))
        {
            Say("WARN", "Cleanup already running (lock blocking:cleanup:lock is held); nothing to do");
            _metrics.CleanupRuns.WithLabels("locked").Inc();
            return new BatchCleanupReport(0, 0, 0, 0, watch.ElapsedMilliseconds, 0, []);
        }

        try
        {
            return await RunLockedAsync(dryRun, Say, watch).ConfigureAwait(false);
        }
        finally
        {
            await database.ScriptEvaluateAsync(RedisScripts.CompareAndDelete, [Keys.CleanupLock], [token]).ConfigureAwait(false);
        }
    }

    private async Task<BatchCleanupReport> RunLockedAsync(bool dryRun, Action<string, string> say, Stopwatch watch)
    {
        var database = _redis.Database;
        say("INFO", dryRun ? "Starting blocking coordination cleanup (DRY-RUN: nothing will be deleted)" : "Starting blocking coordination cleanup");
        say("INFO", "Scanning for blocking coordinator heartbeats...");
        var now = await RedisTime.NowMsAsync(database).ConfigureAwait(false);

        // Every coordinator known by the registry or by a heartbeat key, with its last heartbeat.
        var lastBeat = new Dictionary<string, long>(StringComparer.Ordinal);
        for (long rank = 0; ; rank += MgetBatch)
        {
            var page = await database.SortedSetRangeByRankWithScoresAsync(Keys.Registry, rank, rank + MgetBatch - 1).ConfigureAwait(false);
            foreach (var entry in page)
            {
                lastBeat[(string)entry.Element!] = (long)entry.Score;
            }

            if (page.Length < MgetBatch)
            {
                break;
            }
        }

        // K1 of coordinators and the validators' own heartbeat keys (validators are cleaned like coordinators).
        var heartbeatKeys = new List<string>();
        foreach (var prefix in new[] { Keys.HeartbeatPrefix, Keys.ValidatorHeartbeatPrefix })
        {
            await foreach (var key in _cleanup.ScanAsync(prefix + "*").ConfigureAwait(false))
            {
                heartbeatKeys.Add(key);
            }
        }

        for (var start = 0; start < heartbeatKeys.Count; start += MgetBatch)
        {
            var batch = heartbeatKeys.Skip(start).Take(MgetBatch).ToList();
            var values = await database.StringGetAsync(batch.Select(k => (RedisKey)k).ToArray()).ConfigureAwait(false);
            for (var i = 0; i < batch.Count; i++)
            {
                var id = Keys.HeartbeatOwner(batch[i])!;
                var match = values[i].IsNull ? null : TimestampPattern().Match((string)values[i]!);
                // A timestamp too long for a long (25 digits) is as unreadable as none: skipped, never thrown.
                if (match is not { Success: true } || !long.TryParse(match.Groups[1].Value, NumberStyles.None, CultureInfo.InvariantCulture, out var ts))
                {
                    if (match is { Success: true })
                    {
                        _metrics.MalformedValues.WithLabels("heartbeat").Inc();
                    }

                    if (!lastBeat.ContainsKey(id))
                    {
                        say("WARN", $"Invalid or missing heartbeat for coordinator: {id}");
                    }

                    continue;
                }

                lastBeat[id] = lastBeat.TryGetValue(id, out var known) ? Math.Max(known, ts) : ts;
            }
        }

        if (lastBeat.Count == 0)
        {
            say("INFO", "No coordinator heartbeats found");
            say("INFO", "Cleanup complete (nothing to do)");
            _metrics.CleanupRuns.WithLabels("success").Inc();
            return new BatchCleanupReport(0, 0, 0, 0, watch.ElapsedMilliseconds, 0, []);
        }

        var stale = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (id, ts) in lastBeat.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            // The legacy rule: whole seconds, strictly older than the threshold.
            var ageSeconds = (now / 1000) - (ts / 1000);
            if (ageSeconds > _options.CleanupStaleThresholdSeconds && Identity.Ids.IsValidName(id))
            {
                stale.Add(id);
                say("WARN", $"Stale coordinator detected: {id} (age: {ageSeconds}s)");
            }
            else
            {
                say("INFO", $"Coordinator active: {id} (age: {ageSeconds}s)");
            }
        }

        // A dead coordinator whose escalation has not finished its own steps still owns its inbox and work: the handler
        // running the escalation (or the one resuming it) moves them to the replacement. Deleting them here would lose
        // them (D17), so such coordinators are skipped and said so.
        var skipped = 0;
        if (stale.Count > 0)
        {
            var ids = stale.Order(StringComparer.Ordinal).ToList();
            for (var start = 0; start < ids.Count; start += MgetBatch)
            {
                var batch = ids.Skip(start).Take(MgetBatch).ToList();
                var records = await database.StringGetAsync(batch.Select(id => Keys.Escalation(id)).ToArray()).ConfigureAwait(false);
                for (var i = 0; i < batch.Count; i++)
                {
                    if (!records[i].IsNull && Json.TryDeserialize<EscalationRecord>((string)records[i]!, out var record, out _) &&
                        record!.Step != EscalationSteps.Cleaned)
                    {
                        stale.Remove(batch[i]);
                        skipped++;
                        say("WARN", $"Skipping coordinator {batch[i]}: escalation not finished (status {record.Status}, step {record.Step}); its handler hands its work and signals over");
                    }
                }
            }
        }

        // One pass over the keyspace for all stale coordinators at once.
        var owned = stale.ToDictionary(id => id, id => new List<(RedisKey, string)>
        {
            (Keys.Heartbeat(id), KeyOwnership.Heartbeat), (Keys.ValidatorHeartbeat(id), KeyOwnership.Heartbeat),
            (Keys.Signal(id), KeyOwnership.Signals), (Keys.Inbox(id), KeyOwnership.Signals),
            (Keys.Activity(id), KeyOwnership.Activity), (Keys.Unblock(id), KeyOwnership.Other),
        }, StringComparer.Ordinal);
        if (stale.Count > 0)
        {
            foreach (var pattern in new[] { "blocking:*", Keys.SwarmPrefix + "*:blocking:*" })
            {
                await foreach (var key in _cleanup.ScanAsync(pattern).ConfigureAwait(false))
                {
                    foreach (var (id, category) in KeyOwnership.Owners(key))
                    {
                        if (owned.TryGetValue(id, out var list))
                        {
                            list.Add((key, category));
                        }
                    }
                }
            }
        }

        long deleted = 0;
        var errors = 0;
        if (dryRun)
        {
            foreach (var id in stale.Order(StringComparer.Ordinal))
            {
                var existing = await ExistingAsync(owned[id]).ConfigureAwait(false);
                say("INFO", $"[DRY-RUN] Would delete {existing.Count} keys for coordinator {id}");
                foreach (var key in existing)
                {
                    say("INFO", $"[DRY-RUN] Would delete: {key}");
                }
            }
        }
        else
        {
            await Parallel.ForEachAsync(stale.Order(StringComparer.Ordinal), new ParallelOptions { MaxDegreeOfParallelism = Parallelism },
                async (id, _) =>
                {
                    try
                    {
                        var keys = owned[id].DistinctBy(k => (string)k.Item1!).ToList();
                        var result = await _cleanup.DeleteAsync(id, keys, force: false, staleThresholdMs: _options.CleanupStaleThresholdSeconds * 1000L)
                            .ConfigureAwait(false);
                        if (result.Refused)
                        {
                            say("INFO", $"Coordinator active: {id} (heartbeat came back; skipped)");
                            return;
                        }

                        Interlocked.Add(ref deleted, result.KeysDeleted);
                        say("INFO", $"Cleaning up stale coordinator: {id}");
                        say("INFO", $"Deleted {result.KeysDeleted} keys for coordinator {id}");
                    }
                    catch (Exception e) when (RedisErrors.IsTransient(e))
                    {
                        Interlocked.Increment(ref errors);
                        say("ERROR", $"Failed to clean up coordinator {id}: {e.Message}");
                    }
                    catch (Exception e) when (LoopHealth.IsRecordFault(e))
                    {
                        // One coordinator's bad state must not end the run (nor the timeout handler's cleanup loop).
                        Interlocked.Increment(ref errors);
                        say("ERROR", $"Failed to clean up coordinator {id}: {e.Message}");
                        _redis.Loops.RecordFailed(LoopNames.BatchCleanup, _logger, Keys.Heartbeat(id).ToString(), e);
                    }
                }).ConfigureAwait(false);
            _metrics.CleanupKeysDeleted.Inc(deleted);
        }

        var elapsed = watch.ElapsedMilliseconds;
        var rate = lastBeat.Count / Math.Max(0.001, elapsed / 1000.0);
        say("INFO", $"Total coordinators checked: {lastBeat.Count}");
        say("INFO", $"Stale coordinators found: {stale.Count + skipped}");
        say("INFO", $"Skipped (escalation not finished): {skipped}");
        say("INFO", $"Keys deleted: {deleted}");
        say("INFO", $"Cleanup errors: {errors}");
        say("INFO", $"Execution time: {elapsed}ms");
        say("INFO", string.Create(CultureInfo.InvariantCulture, $"Performance: {rate:0.00} coordinators/sec"));
        var exit = errors == 0 ? 0 : 2;
        say(errors == 0 ? "INFO" : "ERROR", errors == 0 ? "Cleanup completed successfully" : $"Cleanup completed with {errors} errors");
        _metrics.CleanupRuns.WithLabels(errors == 0 ? "success" : "errors").Inc();
        return new BatchCleanupReport(lastBeat.Count, stale.Count + skipped, deleted, errors, elapsed, exit, stale.Order(StringComparer.Ordinal).ToList());
    }

    private async Task<List<string>> ExistingAsync(List<(RedisKey Key, string Category)> keys)
    {
        var distinct = keys.Select(k => (string)k.Key!).Distinct(StringComparer.Ordinal).ToList();
        var checks = distinct.Select(k => _redis.Database.KeyExistsAsync(k)).ToList();
        var exists = await Task.WhenAll(checks).ConfigureAwait(false);
        return distinct.Where((_, i) => exists[i]).ToList();
    }

    private static (string Host, string Port) SplitEndpoint(string endpoint)
    {
        var colon = endpoint.LastIndexOf(':');
        return colon < 0 ? (endpoint, "6379") : (endpoint[..colon], endpoint[(colon + 1)..]);
    }

    [GeneratedRegex("\"timestamp\":(\\d+)")]
    private static partial Regex TimestampPattern();
}
