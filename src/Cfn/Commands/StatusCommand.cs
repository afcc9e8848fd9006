using System.CommandLine;
using System.Globalization;
using System.Text;
using Cfn.Coordination;
using Cfn.Coordination.Activity;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Resilience;
using StackExchange.Redis;

namespace Cfn.Commands;

/// <summary>
/// <c>cfn status</c>: swarms, coordinators (heartbeat age, warnings, blocking state and whom they wait for), spawn
/// requests and every process's circuit breakers, read from Redis (the registry, the activity records,
/// <c>coordinator:health</c>, the spawn index and the published breaker states).
/// </summary>
internal static class StatusCommand
{
    private const int Page = 500;

    public static Command Create()
    {
        var command = new Command("status", "Print swarms, coordinators and spawn requests as seen in Redis (REDIS_URL or REDIS_HOST/REDIS_PORT/...).");
        command.SetAction(async (_, _) =>
        {
            RedisSettings settings;
            try
            {
                settings = RedisSettings.FromEnvironment();
            }
            catch (ArgumentException e)
            {
                await Console.Error.WriteLineAsync("status: " + e.Message).ConfigureAwait(false);
                return 2;
            }

            await using var redis = await RedisContext.ConnectAsync(settings.ToConfiguration(), new CoordinationOptions()).ConfigureAwait(false);
            try
            {
                await Console.Out.WriteAsync(await RenderAsync(redis, RecoveryOptions.FromEnvironment()).ConfigureAwait(false)).ConfigureAwait(false);
                return 0;
            }
            catch (Exception e) when (e is RedisException or TimeoutException)
            {
                await Console.Error.WriteLineAsync($"Redis connection failed (host: {settings.Host}, port: {settings.Port}): {RedisErrors.FirstClause(e)}")
                    .ConfigureAwait(false);
                return 1;
            }
        });
        return command;
    }

    /// <summary>The status text.</summary>
    internal static async Task<string> RenderAsync(RedisContext redis, RecoveryOptions options)
    {
        var database = redis.Database;
        var now = await RedisTime.NowMsAsync(database).ConfigureAwait(false);
        var coordinators = new List<(string Id, long LastBeat)>();
        for (long rank = 0; ; rank += Page)
        {
            var page = await database.SortedSetRangeByRankWithScoresAsync(Keys.Registry, rank, rank + Page - 1).ConfigureAwait(false);
            coordinators.AddRange(page.Select(e => ((string)e.Element!, (long)e.Score)));
            if (page.Length < Page)
            {
                break;
            }
        }

        var health = (await database.HashGetAllAsync(Keys.Health).ConfigureAwait(false))
            .ToDictionary(e => (string)e.Name!, e => (string)e.Value!, StringComparer.Ordinal);
        var rows = new List<string[]>();
        var swarms = new SortedDictionary<string, (int Live, int Blocking, int Stale)>(StringComparer.Ordinal);
        for (var start = 0; start < coordinators.Count; start += Page)
        {
            var batch = coordinators.Skip(start).Take(Page).Where(c => Coordination.Identity.Ids.IsValidName(c.Id)).ToList();
            var swarmIds = await database.HashGetAsync(Keys.Swarms, batch.Select(c => (RedisValue)c.Id).ToArray()).ConfigureAwait(false);
            var activity = await database.StringGetAsync(batch.Select(c => Keys.Activity(c.Id)).ToArray()).ConfigureAwait(false);
            for (var i = 0; i < batch.Count; i++)
            {
                var (id, lastBeat) = batch[i];
                var swarm = (string?)swarmIds[i] ?? "unknown";
                var ageSeconds = (now - lastBeat) / 1000.0;
                var stale = now - lastBeat > options.HeartbeatStaleThreshold.TotalMilliseconds;
                Json.TryDeserialize<ActivityRecord>((string?)activity[i], out var record, out _);
                var blocking = record?.Status == "blocking";
                var counts = swarms.GetValueOrDefault(swarm);
                swarms[swarm] = (counts.Live + (stale ? 0 : 1), counts.Blocking + (blocking && !stale ? 1 : 0), counts.Stale + (stale ? 1 : 0));
                var warnings = health.TryGetValue(id, out var h) ? h.Split('|')[0] + "/" + options.MaxWarnings : "-";
                rows.Add([
                    id, swarm, ageSeconds.ToString("0.0", CultureInfo.InvariantCulture) + "s", stale ? "stale" : "live", warnings,
                    record?.Status ?? "-", blocking ? record!.WaitingFor ?? "-" : "-", blocking ? record!.WaitingForSignal ?? "-" : "-",
                ]);
            }
        }

        var text = new StringBuilder();
        text.AppendLine(CultureInfo.InvariantCulture, $"SWARMS ({swarms.Count})");
        Table(text, ["SWARM", "LIVE", "BLOCKING", "STALE"],
            swarms.Select(s => new[] { s.Key, Num(s.Value.Live), Num(s.Value.Blocking), Num(s.Value.Stale) }).ToList());
        text.AppendLine();
        // Validators are registry members too (swarm `validators`, heartbeat key validator:heartbeat:{id}): counted apart,
        // so the first number matches the runbook's `blocking:heartbeat:*` count (#2).
        var validatorRows = rows.Count(r => Keys.IsValidatorSwarm(r[1]));
        text.AppendLine(CultureInfo.InvariantCulture, $"COORDINATORS ({rows.Count - validatorRows}) AND VALIDATORS ({validatorRows})");
        Table(text, ["COORDINATOR", "SWARM", "HEARTBEAT AGE", "STATE", "WARNINGS", "ACTIVITY", "WAITING FOR", "SIGNAL"], rows);
        text.AppendLine();

        var spawns = new SpawnRequests(database, redis.Time, options.EscalationTtlSeconds);
        var spawnRows = new List<string[]>();
        foreach (var newId in await spawns.ListAsync().ConfigureAwait(false))
        {
            if (await spawns.GetAsync(newId).ConfigureAwait(false) is { } request)
            {
                spawnRows.Add([request.NewCoordinatorId, request.SwarmId, request.Status, request.Reason, request.ReplacesCoordinatorId ?? "-",
                    ((now - request.Timestamp) / 1000).ToString(CultureInfo.InvariantCulture) + "s"]);
            }
        }

        text.AppendLine(CultureInfo.InvariantCulture, $"SPAWN REQUESTS ({spawnRows.Count})");
        Table(text, ["NEW COORDINATOR", "SWARM", "STATUS", "REASON", "REPLACES", "AGE"], spawnRows);
        text.AppendLine();

        // Escalations not over (D17): running under a live lease, stuck (lease run out with steps left: the next monitor
        // pass of any timeout handler resumes it), or done with their steps and waiting for the replacement to start.
        var escalationRows = new List<string[]>();
        foreach (var record in await EscalationService.OpenAsync(database, spawns, now - (options.EscalationTtlSeconds * 1000L)).ConfigureAwait(false))
        {
            var state = record.Step == EscalationSteps.Cleaned ? "waiting-for-replacement"
                : record.LeaseUntil > now ? "running"
                : "stuck";
            var lease = record.LeaseUntil > now ? ((record.LeaseUntil - now) / 1000.0).ToString("0.0", CultureInfo.InvariantCulture) + "s" : "-";
            escalationRows.Add([record.DeadCoordinatorId, record.SwarmId, state, record.Status, record.Step, record.LeaseOwner ?? "-", lease,
                record.NewCoordinatorId, ((now - record.Timestamp) / 1000).ToString(CultureInfo.InvariantCulture) + "s"]);
        }

        text.AppendLine(CultureInfo.InvariantCulture, $"ESCALATIONS IN PROGRESS ({escalationRows.Count})");
        Table(text, ["DEAD COORDINATOR", "SWARM", "STATE", "STATUS", "STEP", "HANDLER", "LEASE LEFT", "REPLACEMENT", "AGE"], escalationRows);
        text.AppendLine();

        // Breakers live in each process; every cfn process publishes them (BreakerStatePublisher).
        var breakerRows = new List<string[]>();
        foreach (var report in await BreakerStatePublisher.ReadAllAsync(database).ConfigureAwait(false))
        {
            foreach (var (name, state) in report.Breakers.OrderBy(b => b.Key, StringComparer.Ordinal))
            {
                breakerRows.Add([report.ProcessId, report.Roles, name, state, ((now - report.UpdatedAt) / 1000).ToString(CultureInfo.InvariantCulture) + "s"]);
            }
        }

        text.AppendLine(CultureInfo.InvariantCulture, $"BREAKERS ({breakerRows.Count})");
        Table(text, ["PROCESS", "ROLES", "BREAKER", "STATE", "REPORTED"], breakerRows);
        return text.ToString();
    }

    private static string Num(int n) => n.ToString(CultureInfo.InvariantCulture);

    private static void Table(StringBuilder text, string[] header, List<string[]> rows)
    {
        var widths = header.Select((h, i) => Math.Max(h.Length, rows.Count == 0 ? 0 : rows.Max(r => r[i].Length))).ToArray();
        foreach (var row in rows.Prepend(header))
        {
            text.AppendLine(string.Join("  ", row.Select((cell, i) => cell.PadRight(widths[i]))).TrimEnd());
        }
    }
}
