using System.Globalization;
using Cfn.Coordination.Activity;
using Cfn.Coordination.Identity;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Resilience;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Cfn.Coordination.Inspection;

/// <summary>
/// Reads what <c>cfn status</c> prints: the registry with the swarm index, the monitor's health hash and the activity
/// records; the spawn index; the escalations not over; the breaker states every process publishes. Registry and swarm
/// index are read in pages of <see cref="Page"/>, never by scanning.
/// </summary>
internal sealed class StatusReader(RedisContext redis, RecoveryOptions options, ILogger logger)
{
    private const int Page = 500;

    public async Task<CoordinationStatus> ReadAsync()
    {
        var now = await RedisTime.NowMsAsync(redis.Database).ConfigureAwait(false);
        var coordinators = await ReadCoordinatorsAsync(now).ConfigureAwait(false);
        var swarms = new SortedDictionary<string, SwarmSummary>(StringComparer.Ordinal);
        foreach (var c in coordinators)
        {
            var counts = swarms.GetValueOrDefault(c.SwarmId) ?? new SwarmSummary(c.SwarmId, 0, 0, 0);
            swarms[c.SwarmId] = counts with
            {
                Live = counts.Live + (c.Stale ? 0 : 1),
                Blocking = counts.Blocking + (c.Blocking ? 1 : 0),
                Stale = counts.Stale + (c.Stale ? 1 : 0),
            };
        }

        var spawns = new SpawnRequests(redis.Database, redis.Time, options.EscalationTtlSeconds);
        var requests = await ReadSpawnRequestsAsync(spawns).ConfigureAwait(false);
        var escalations = await ReadOpenEscalationsAsync(spawns, now).ConfigureAwait(false);
        var breakers = await BreakerStatePublisher.ReadAllAsync(redis.Database).ConfigureAwait(false);
        return new CoordinationStatus(now, [.. swarms.Values], coordinators, requests, escalations, breakers);
    }

    /// <summary>Every registry member with its swarm, heartbeat age, warnings and activity, oldest heartbeat first.</summary>
    public async Task<IReadOnlyList<CoordinatorHealth>> ReadCoordinatorsAsync(long now)
    {
        var database = redis.Database;
        var registered = await ReadScoresAsync(Keys.Registry).ConfigureAwait(false);
        // TS coordinators under the CFN_TS_COMPAT watch (D13) are listed too, scored when their heartbeat was last seen
        // to change; the set is empty (one command) in a fleet without them.
        var watchedTs = await ReadScoresAsync(Keys.TsCoordinators).ConfigureAwait(false);
        var ts = new HashSet<string>(watchedTs.Select(w => w.Id), StringComparer.Ordinal);
        registered.AddRange(watchedTs);

        var health = new Dictionary<string, HealthWarnings>(StringComparer.Ordinal);
        foreach (var entry in await database.HashGetAllAsync(Keys.Health).ConfigureAwait(false))
        {
            if (TryParseHealth(entry.Value, out var warnings))
            {
                health[entry.Name!] = warnings!;
            }
            else
            {
                InspectionLog.Skipped(logger, $"{Keys.Health}[{entry.Name}]", $"health entry \"{entry.Value}\" is not warnings|lastWarn|state");
            }
        }

        var result = new List<CoordinatorHealth>(registered.Count);
        for (var start = 0; start < registered.Count; start += Page)
        {
            var batch = new List<(string Id, long LastBeat)>();
            foreach (var member in registered.Skip(start).Take(Page))
            {
                if (Ids.IsValidName(member.Id))
                {
                    batch.Add(member);
                }
                else
                {
                    InspectionLog.Skipped(logger, $"{Keys.Registry}[{member.Id}]", "registry member is not a valid coordinator ID");
                }
            }

            var swarmIds = await database.HashGetAsync(Keys.Swarms, [.. batch.Select(c => (RedisValue)c.Id)]).ConfigureAwait(false);
            var activity = await database.StringGetAsync([.. batch.Select(c => Keys.Activity(c.Id))]).ConfigureAwait(false);
            for (var i = 0; i < batch.Count; i++)
            {
                var (id, lastBeat) = batch[i];
                ActivityRecord? record = null;
                if (!activity[i].IsNull && !Json.TryDeserialize((string?)activity[i], out record, out var error))
                {
                    InspectionLog.Skipped(logger, Keys.Activity(id)!, error);
                }

                result.Add(new CoordinatorHealth(id, (string?)swarmIds[i] ?? "unknown", lastBeat, now - lastBeat,
                    now - lastBeat > options.HeartbeatStaleThreshold.TotalMilliseconds, health.GetValueOrDefault(id), record)
                {
                    IsTs = ts.Contains(id),
                });
            }
        }

        return result;
    }

    /// <summary>Every member of a sorted set of IDs scored by Redis ms, read in pages of <see cref="Page"/>.</summary>
    private async Task<List<(string Id, long LastBeat)>> ReadScoresAsync(RedisKey key)
    {
        var members = new List<(string Id, long LastBeat)>();
        for (long rank = 0; ; rank += Page)
        {
            var page = await redis.Database.SortedSetRangeByRankWithScoresAsync(key, rank, rank + Page - 1).ConfigureAwait(false);
            members.AddRange(page.Select(e => ((string)e.Element!, (long)e.Score)));
            if (page.Length < Page)
            {
                return members;
            }
        }
    }

    /// <summary>
    /// Parses the heartbeat monitor's health entry <c>{warnings}|{lastWarn}|{state}</c> (written by
    /// <c>monitor_check.lua</c>, which reads it back with the same rule: two decimal integers and a word).
    /// </summary>
    public static bool TryParseHealth(string? value, out HealthWarnings? warnings)
    {
        warnings = null;
        var parts = value?.Split('|');
        if (parts is not { Length: 3 } ||
            !int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var count) ||
            !long.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var lastWarn) ||
            parts[2].Length == 0 || !parts[2].All(char.IsAsciiLetter))
        {
            return false;
        }

        warnings = new HealthWarnings(count, lastWarn, parts[2]);
        return true;
    }

    public static async Task<IReadOnlyList<SpawnRequest>> ReadSpawnRequestsAsync(SpawnRequests spawns)
    {
        var requests = new List<SpawnRequest>();
        foreach (var newId in await spawns.ListAsync().ConfigureAwait(false))
        {
            if (await spawns.GetAsync(newId).ConfigureAwait(false) is { } request)
            {
                requests.Add(request);
            }
        }

        return requests;
    }

    /// <summary>
    /// The escalations that are not over: of coordinators declared dead and still in the health hash (their escalation's
    /// steps are not done), and of replacements requested within the escalation TTL whose record is not final. Found
    /// through the health hash and the spawn index, never by scanning; one MGET.
    /// </summary>
    public async Task<IReadOnlyList<OpenEscalation>> ReadOpenEscalationsAsync(SpawnRequests spawns, long now)
    {
        var database = redis.Database;
        var dead = new HashSet<string>(StringComparer.Ordinal);
        foreach (var entry in await database.HashGetAllAsync(Keys.Health).ConfigureAwait(false))
        {
            if (((string?)entry.Value)?.EndsWith("|dead", StringComparison.Ordinal) == true && Ids.IsValidName(entry.Name))
            {
                dead.Add(entry.Name!);
            }
        }

        foreach (var newId in await spawns.ListAsync(now - (options.EscalationTtlSeconds * 1000L)).ConfigureAwait(false))
        {
            if (await spawns.GetAsync(newId).ConfigureAwait(false) is { ReplacesCoordinatorId: { } replaced } && Ids.IsValidName(replaced))
            {
                dead.Add(replaced);
            }
        }

        var ids = dead.Order(StringComparer.Ordinal).ToList();
        var values = ids.Count == 0 ? [] : await database.StringGetAsync([.. ids.Select(id => Keys.Escalation(id))]).ConfigureAwait(false);
        var open = new List<OpenEscalation>();
        for (var i = 0; i < ids.Count; i++)
        {
            if (values[i].IsNull)
            {
                continue;
            }

            if (!Json.TryDeserialize<EscalationRecord>((string?)values[i], out var record, out var error))
            {
                InspectionLog.Skipped(logger, Keys.Escalation(ids[i])!, error);
                continue;
            }

            if (record!.Step == EscalationSteps.Cleaned && EscalationStatus.IsFinal(record.Status))
            {
                continue;
            }

            var state = record.Step == EscalationSteps.Cleaned ? "waiting-for-replacement"
                : record.LeaseUntil > now ? "running"
                : "stuck";
            open.Add(new OpenEscalation(record, state, record.LeaseUntil > now ? record.LeaseUntil - now : null));
        }

        return open;
    }
}
