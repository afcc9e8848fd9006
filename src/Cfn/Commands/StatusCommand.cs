using System.CommandLine;
using System.Globalization;
using System.Text;
using Cfn.Coordination;
using Cfn.Coordination.Inspection;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using StackExchange.Redis;

namespace Cfn.Commands;

/// <summary>
/// <c>cfn status</c>: swarms, coordinators (heartbeat age, warnings, blocking state and whom they wait for), spawn
/// requests and every process's circuit breakers, read from Redis (the registry, the activity records,
/// <c>coordinator:health</c>, the spawn index and the published breaker states).
/// </summary>
internal static class StatusCommand
{
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

            try
            {
                await using var redis = await RedisContext.ConnectAsync(settings.ToOptions(), new CoordinationOptions()).ConfigureAwait(false);
                await Console.Out.WriteAsync(await RenderAsync(redis, RecoveryOptions.FromEnvironment()).ConfigureAwait(false)).ConfigureAwait(false);
                return 0;
            }
            catch (Exception e) when (RedisErrors.IsTransient(e))
            {
                await Console.Error.WriteLineAsync($"Redis connection failed ({settings.Display}): {RedisErrors.FirstClause(e)}").ConfigureAwait(false);
                return 1;
            }
        });
        return command;
    }

    /// <summary>The status text: the read model's <see cref="CoordinationStatus"/> as tables.</summary>
    internal static async Task<string> RenderAsync(RedisContext redis, RecoveryOptions options)
    {
        var status = await new CoordinationInspector(redis, options).ReadStatusAsync().ConfigureAwait(false);
        var now = status.Now;
        var text = new StringBuilder();
        text.AppendLine(CultureInfo.InvariantCulture, $"SWARMS ({status.Swarms.Count})");
        Table(text, ["SWARM", "LIVE", "BLOCKING", "STALE"],
            status.Swarms.Select(s => new[] { s.SwarmId, Num(s.Live), Num(s.Blocking), Num(s.Stale) }).ToList());
        text.AppendLine();
        var rows = new List<string[]>();
        foreach (var c in status.Coordinators)
        {
            var blocking = c.Activity?.Status == "blocking";
            rows.Add([
                c.IsTs ? c.CoordinatorId + " (ts)" : c.CoordinatorId, c.SwarmId, (c.HeartbeatAgeMs / 1000.0).ToString("0.0", CultureInfo.InvariantCulture) + "s",
                c.Stale ? "stale" : "live", c.Health is { } h ? Num(h.Warnings) + "/" + Num(options.MaxWarnings) : "-",
                c.Activity?.Status ?? "-", blocking ? c.Activity!.WaitingFor ?? "-" : "-", blocking ? c.Activity!.WaitingForSignal ?? "-" : "-",
            ]);
        }

        // Validators are registry members too (swarm `validators`, with a heartbeat key of their own): counted apart,
        // so the first number matches the runbook's count of coordinator heartbeat keys.
        var validatorRows = status.Coordinators.Count(c => c.IsValidator);
        text.AppendLine(CultureInfo.InvariantCulture, $"COORDINATORS ({rows.Count - validatorRows}) AND VALIDATORS ({validatorRows})");
        Table(text, ["COORDINATOR", "SWARM", "HEARTBEAT AGE", "STATE", "WARNINGS", "ACTIVITY", "WAITING FOR", "SIGNAL"], rows);
        text.AppendLine();

        var spawnRows = status.SpawnRequests.Select(r => new[]
        {
            r.NewCoordinatorId, r.SwarmId, r.Status, r.Reason, r.ReplacesCoordinatorId ?? "-",
            ((now - r.Timestamp) / 1000).ToString(CultureInfo.InvariantCulture) + "s",
        }).ToList();
        text.AppendLine(CultureInfo.InvariantCulture, $"SPAWN REQUESTS ({spawnRows.Count})");
        Table(text, ["NEW COORDINATOR", "SWARM", "STATUS", "REASON", "REPLACES", "AGE"], spawnRows);
        text.AppendLine();

        // Escalations not over (SPEC D17): running under a live lease, stuck (the next monitor pass of any timeout handler
        // resumes it), or done with their steps and waiting for the replacement to start.
        var escalationRows = status.Escalations.Select(e => new[]
        {
            e.Record.DeadCoordinatorId, e.Record.SwarmId, e.State, e.Record.Status, e.Record.Step, e.Record.LeaseOwner ?? "-",
            e.LeaseLeftMs is { } left ? (left / 1000.0).ToString("0.0", CultureInfo.InvariantCulture) + "s" : "-",
            e.Record.NewCoordinatorId, ((now - e.Record.Timestamp) / 1000).ToString(CultureInfo.InvariantCulture) + "s",
        }).ToList();
        text.AppendLine(CultureInfo.InvariantCulture, $"ESCALATIONS IN PROGRESS ({escalationRows.Count})");
        Table(text, ["DEAD COORDINATOR", "SWARM", "STATE", "STATUS", "STEP", "HANDLER", "LEASE LEFT", "REPLACEMENT", "AGE"], escalationRows);
        text.AppendLine();

        // Breakers live in each process; every cfn process publishes them.
        var breakerRows = status.Breakers
            .SelectMany(report => report.Breakers.OrderBy(b => b.Key, StringComparer.Ordinal).Select(b => new[]
            {
                report.ProcessId, report.Roles, b.Key, b.Value, ((now - report.UpdatedAt) / 1000).ToString(CultureInfo.InvariantCulture) + "s",
            }))
            .ToList();
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
