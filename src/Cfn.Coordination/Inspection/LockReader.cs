using Cfn.Coordination.Identity;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Work;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Cfn.Coordination.Inspection;

/// <summary>
/// Reads what one coordinator holds or is named in: the escalation records about its death and the death it replaces,
/// the batch cleanup lock, its work items and its stored epoch. An unreadable record is kept with its error (an
/// operator wants to see it) and logged.
/// </summary>
internal sealed class LockReader(RedisContext redis, ILogger logger)
{
    public async Task<CoordinatorLocks> ReadAsync(Coordinator coordinator)
    {
        var database = redis.Database;
        var id = coordinator.Id;
        var currentEpoch = (long?)await database.StringGetAsync(Keys.Epoch(id)).ConfigureAwait(false);

        var escalations = new List<EscalationLock>();
        await AddEscalationAsync(id, "declared_dead", escalations).ConfigureAwait(false);
        var spawnKey = Keys.Spawn(id);
        var spawnRaw = (string?)await database.StringGetAsync(spawnKey).ConfigureAwait(false);
        SpawnRequest? spawn = null;
        if (spawnRaw is not null && !Json.TryDeserialize(spawnRaw, out spawn, out var spawnError))
        {
            InspectionLog.Skipped(logger, spawnKey!, spawnError);
        }

        if (spawn is not null && Ids.IsValidName(spawn.ReplacesCoordinatorId))
        {
            await AddEscalationAsync(spawn.ReplacesCoordinatorId!, "replacement", escalations).ConfigureAwait(false);
        }

        var cleanupToken = (string?)await database.StringGetAsync(Keys.CleanupLock).ConfigureAwait(false);
        var cleanupTtl = await database.KeyTimeToLiveAsync(Keys.CleanupLock).ConfigureAwait(false);

        // An operator read: SCAN of this coordinator's own exact work pattern (SPEC D3 allows SCAN in operator tools only).
        var fences = new List<WorkFence>();
        var pattern = Keys.WorkPatternOf(coordinator.SwarmId, id);
        foreach (var server in redis.Multiplexer.GetServers().Where(s => !s.IsReplica && s.IsConnected))
        {
            await foreach (var key in server.KeysAsync(database.Database, pattern, pageSize: 1000).ConfigureAwait(false))
            {
                if (fences.Count >= CoordinationInspector.MaxWorkFences)
                {
                    break;
                }

                var raw = (string?)await database.StringGetAsync(key).ConfigureAwait(false);
                var ttl = await database.KeyTimeToLiveAsync(key).ConfigureAwait(false);
                if (Json.TryDeserialize<WorkItem>(raw, out var item, out var error))
                {
                    fences.Add(new WorkFence(key!, item, Milliseconds(ttl), null));
                }
                else
                {
                    InspectionLog.Skipped(logger, key!, error);
                    fences.Add(new WorkFence(key!, null, null, error ?? "unreadable"));
                }
            }
        }

        return new CoordinatorLocks(
            id,
            coordinator.Epoch,
            currentEpoch,
            coordinator.IsSuperseded || (currentEpoch is { } e && e != coordinator.Epoch),
            escalations,
            new CleanupLockState(Keys.CleanupLock!, cleanupToken, Milliseconds(cleanupTtl)),
            fences);
    }

    private async Task AddEscalationAsync(string deadId, string role, List<EscalationLock> into)
    {
        var key = Keys.Escalation(deadId);
        var raw = (string?)await redis.Database.StringGetAsync(key).ConfigureAwait(false);
        if (raw is null)
        {
            return;
        }

        var ttl = await redis.Database.KeyTimeToLiveAsync(key).ConfigureAwait(false);
        if (Json.TryDeserialize<EscalationRecord>(raw, out var record, out var error))
        {
            into.Add(new EscalationLock(key!, role, record, Milliseconds(ttl), null));
        }
        else
        {
            InspectionLog.Skipped(logger, key!, error);
            into.Add(new EscalationLock(key!, role, null, null, error ?? "unreadable"));
        }
    }

    private static long? Milliseconds(TimeSpan? ttl) => (long?)ttl?.TotalMilliseconds;
}

/// <summary>The one log line of a stored value the read model could not parse.</summary>
internal static class InspectionLog
{
    public static void Skipped(ILogger logger, string key, string? reason) =>
        logger.LogWarning("Inspection skipped a malformed record key={Key}: {Reason}", key, reason ?? "unreadable");
}
