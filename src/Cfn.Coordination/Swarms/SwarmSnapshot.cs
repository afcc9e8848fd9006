using Cfn.Coordination.Identity;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using StackExchange.Redis;

namespace Cfn.Coordination.Swarms;

/// <summary>A registry member: a coordinator with a heartbeat inside the window asked for, and its swarm.</summary>
internal sealed record Member(string CoordinatorId, string SwarmId, long LastHeartbeat);

/// <summary>
/// What the swarm manager and the status endpoint read, in two pipelined round trips and no SCAN: the registry
/// (<c>blocking:coordinators</c>) with the swarm hash, the running waits (<c>coordinator:deadlines</c>), the targets,
/// the pause flag and the spawn requests of the last K9 TTL (via the <c>coordinator:spawns</c> index).
/// </summary>
internal sealed record SwarmSnapshot(
    long NowMs,
    IReadOnlyList<Member> Members,
    IReadOnlySet<string> Blocking,
    IReadOnlyDictionary<string, int> Targets,
    long? PausedAt,
    IReadOnlyList<SpawnRequest> Requests)
{
    /// <summary>
    /// Loads the state. <paramref name="windowMs"/>: registry entries older than this are left out;
    /// <paramref name="skipRequest"/>: request IDs not to read (ones already seen in a final status);
    /// <paramref name="malformed"/>: told the key and the reason of each spawn request that is skipped as unreadable.
    /// </summary>
    public static async Task<SwarmSnapshot> LoadAsync(IDatabase database, long windowMs, long requestsSinceMs, Func<string, bool>? skipRequest = null,
        Action<string, string>? malformed = null)
    {
        var now = await RedisTime.NowMsAsync(database).ConfigureAwait(false);
        var registry = database.SortedSetRangeByScoreWithScoresAsync(Keys.Registry, now - windowMs);
        var blocking = database.SortedSetRangeByRankAsync(Keys.Deadlines);
        var targets = database.HashGetAllAsync(Keys.SwarmTargets);
        var paused = database.StringGetAsync(Keys.SpawningPaused);
        var spawnIds = database.SortedSetRangeByScoreAsync(Keys.SpawnIndex, requestsSinceMs);
        await Task.WhenAll(registry, blocking, targets, paused, spawnIds).ConfigureAwait(false);

        var entries = (await registry.ConfigureAwait(false)).Where(e => Ids.IsValidName(e.Element)).ToArray();
        var requestIds = (await spawnIds.ConfigureAwait(false)).Select(v => (string)v!)
            .Where(id => Ids.IsValidName(id) && (skipRequest is null || !skipRequest(id))).ToArray();
        var swarms = entries.Length == 0
            ? Task.FromResult(Array.Empty<RedisValue>())
            : database.HashGetAsync(Keys.Swarms, entries.Select(e => e.Element).ToArray());
        var raws = requestIds.Length == 0
            ? Task.FromResult(Array.Empty<RedisValue>())
            : database.StringGetAsync(requestIds.Select(id => Keys.Spawn(id)).ToArray());
        await Task.WhenAll(swarms, raws).ConfigureAwait(false);

        var swarmOf = await swarms.ConfigureAwait(false);
        var members = new List<Member>(entries.Length);
        for (var i = 0; i < entries.Length; i++)
        {
            var swarm = (string?)swarmOf[i];
            if (swarm is not null && Ids.IsValidName(swarm))
            {
                members.Add(new Member(entries[i].Element!, swarm, (long)entries[i].Score));
            }
        }

        var requests = new List<SpawnRequest>(requestIds.Length);
        var rawValues = await raws.ConfigureAwait(false);
        for (var i = 0; i < rawValues.Length; i++)
        {
            var raw = rawValues[i];
            if (Json.TryDeserialize<SpawnRequest>(raw, out var request, out var error) && Ids.IsValidName(request!.SwarmId) && Ids.IsValidName(request.NewCoordinatorId))
            {
                requests.Add(request);
            }
            else if (!raw.IsNull)
            {
                malformed?.Invoke(Keys.Spawn(requestIds[i]).ToString(), error ?? "swarmId or newCoordinatorId " + Ids.NameRule);
            }
        }

        var targetMap = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var entry in await targets.ConfigureAwait(false))
        {
            if (Ids.IsValidName(entry.Name) && entry.Value.TryParse(out int size) && size > 0)
            {
                targetMap[entry.Name!] = size;
            }
        }

        return new SwarmSnapshot(
            now,
            members,
            (await blocking.ConfigureAwait(false)).Select(v => (string)v!).ToHashSet(StringComparer.Ordinal),
            targetMap,
            SpawningControl.ParsePausedAt(await paused.ConfigureAwait(false)),
            requests);
    }

    /// <summary>True when a live coordinator, a target or a spawn request names <paramref name="swarmId"/>.</summary>
    public bool Knows(string swarmId, long freshSinceMs) =>
        Targets.ContainsKey(swarmId) ||
        Members.Any(m => m.SwarmId == swarmId && m.LastHeartbeat >= freshSinceMs) ||
        Requests.Any(r => r.SwarmId == swarmId);
}
