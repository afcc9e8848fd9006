using System.Security.Cryptography;
using Cfn.Coordination.Identity;
using Cfn.Coordination.Redis;
using StackExchange.Redis;

namespace Cfn.Coordination.Recovery;

/// <summary>
/// Spawn requests (SPEC K9, D7): created with <c>SET NX</c>, indexed by time in <c>coordinator:spawns</c> so the swarm
/// manager finds them without SCAN, moved through their statuses by compare-and-set, never deleted (history).
/// </summary>
internal sealed class SpawnRequests(IDatabase database, TimeProvider time, int ttlSeconds)
{
    private const string Base36 = "0123456789abcdefghijklmnopqrstuvwxyz";

    /// <summary>A new coordinator ID, <c>coordinator-{unixms}-{8 lowercase base36}</c> (DNS-1123 compatible, D7).</summary>
    public static string NewCoordinatorId(long unixMs) =>
        $"coordinator-{unixMs}-{RandomNumberGenerator.GetString(Base36, 8)}";

    /// <summary>Stores a new request; false when one with that ID exists.</summary>
    public async Task<bool> CreateAsync(SpawnRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        Ids.RequireName(request.NewCoordinatorId, "newCoordinatorId");
        Ids.RequireName(request.SwarmId, "swarmId");
        var created = await database.StringSetAsync(Keys.Spawn(request.NewCoordinatorId), Json.Serialize(request),
            TimeSpan.FromSeconds(ttlSeconds), When.NotExists).ConfigureAwait(false);
        if (created)
        {
            await database.SortedSetAddAsync(Keys.SpawnIndex, request.NewCoordinatorId, request.Timestamp).ConfigureAwait(false);
            // Wakes the swarm managers at once (they also look every SWARM_MANAGER_INTERVAL_MS).
            await database.PublishAsync(Keys.SwarmManagerChannel, request.NewCoordinatorId).ConfigureAwait(false);
        }

        return created;
    }

    /// <summary>
    /// Stores the request unless it exists, and makes sure it is indexed and announced either way: a handler resuming an
    /// escalation (D17) repeats this step without knowing whether its predecessor got past the first write.
    /// </summary>
    public async Task EnsureAsync(SpawnRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (!await CreateAsync(request).ConfigureAwait(false))
        {
            await database.SortedSetAddAsync(Keys.SpawnIndex, request.NewCoordinatorId, request.Timestamp, When.NotExists).ConfigureAwait(false);
            await database.PublishAsync(Keys.SwarmManagerChannel, request.NewCoordinatorId).ConfigureAwait(false);
        }
    }

    /// <summary>The request, or null when absent or unreadable.</summary>
    public async Task<SpawnRequest?> GetAsync(string newCoordinatorId)
    {
        var raw = (string?)await database.StringGetAsync(Keys.Spawn(newCoordinatorId)).ConfigureAwait(false);
        return Json.TryDeserialize<SpawnRequest>(raw, out var request, out _) ? request : null;
    }

    /// <summary>
    /// Moves the request from <paramref name="from"/> to <paramref name="to"/> atomically; false when it is not in
    /// <paramref name="from"/> any more (another manager moved it) or the transition is not allowed.
    /// <paramref name="hostId"/>, when given, records the coordinator host chosen by the claim.
    /// </summary>
    public async Task<bool> TryMoveAsync(string newCoordinatorId, string from, string to, string? error = null, string? hostId = null)
    {
        if (!SpawnStatus.IsAllowed(from, to))
        {
            return false;
        }

        var key = Keys.Spawn(newCoordinatorId);
        var raw = (string?)await database.StringGetAsync(key).ConfigureAwait(false);
        if (!Json.TryDeserialize<SpawnRequest>(raw, out var current, out _) || current!.Status != from)
        {
            return false;
        }

        var next = current with
        {
            Status = to,
            UpdatedAt = time.GetUtcNow().ToUnixTimeMilliseconds(),
            Error = error ?? current.Error,
            HostId = hostId ?? current.HostId,
        };
        var swapped = (long)await database.ScriptEvaluateAsync(RedisScripts.CompareAndSet, [key], [raw, Json.Serialize(next)])
            .ConfigureAwait(false);
        return swapped == 1;
    }

    /// <summary>Request IDs created at or after <paramref name="sinceMs"/>, oldest first (expired records are pruned from the index).</summary>
    public async Task<IReadOnlyList<string>> ListAsync(long sinceMs = 0)
    {
        var cutoff = time.GetUtcNow().ToUnixTimeMilliseconds() - (ttlSeconds * 1000L);
        await database.SortedSetRemoveRangeByScoreAsync(Keys.SpawnIndex, double.NegativeInfinity, cutoff).ConfigureAwait(false);
        var ids = await database.SortedSetRangeByScoreAsync(Keys.SpawnIndex, Math.Max(sinceMs, cutoff)).ConfigureAwait(false);
        return ids.Select(v => (string)v!).ToList();
    }
}
