using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using StackExchange.Redis;

namespace Cfn.Bench.Rows;

/// <summary>
/// g: batch cleanup (Recovery/BatchCleanup) of N stale coordinators, each with its registry entry and six keys
/// (heartbeat, inbox, signal view, activity, one ACK, one idempotency record; heartbeat 700 s old against the 600 s
/// threshold). Total time and the longest single command, from SLOWLOG with every command logged during the run
/// (slowlog-log-slower-than 0; both settings are restored afterwards).
/// </summary>
internal sealed class G_BatchCleanup : IRow
{
    public string Key => "g";

    public async Task<RowResult> RunAsync(BenchContext ctx)
    {
        var count = ctx.Quick ? 1_000 : 10_000;
        await ctx.FlushAsync();
        var now = await RedisTime.NowMsAsync(ctx.Database);
        var stale = now - 700_000;
        var ttl = TimeSpan.FromHours(1);
        for (var i = 0; i < count; i += 500)
        {
            var batch = ctx.Database.CreateBatch();
            var writes = new List<Task>();
            for (var j = i; j < Math.Min(count, i + 500); j++)
            {
                var id = ctx.Id("g", j);
                var peer = ctx.Id("g-peer", 0);
                var heartbeat = string.Create(CultureInfo.InvariantCulture,
                    $"{{\"coordinatorId\":\"{id}\",\"swarmId\":\"bench\",\"timestamp\":{stale},\"lastHeartbeat\":{stale},\"sequence\":1}}");
                writes.Add(batch.StringSetAsync(Keys.Heartbeat(id), heartbeat, ttl));
                // A pending signal as cfn keeps it: the inbox entry and K2 mirroring it (a K2 alone is a TS signal, which cleanups keep).
                writes.Add(batch.StreamAddAsync(Keys.Inbox(id), "signal", $"{{\"receiverId\":\"{id}\"}}"));
                writes.Add(batch.StringSetAsync(Keys.Signal(id), $"{{\"receiverId\":\"{id}\"}}", ttl));
                writes.Add(batch.StringSetAsync(Keys.Activity(id), $"{{\"coordinatorId\":\"{id}\"}}", ttl));
                writes.Add(batch.StringSetAsync(Keys.Ack(id, $"{peer}:{id}:completion:1:1"), "{}", ttl));
                writes.Add(batch.StringSetAsync(Keys.Idempotency($"{peer}:{id}:completion:1:2"), "1", ttl));
                writes.Add(batch.SortedSetAddAsync(Keys.Registry, id, stale));
            }

            batch.Execute();
            await Task.WhenAll(writes);
        }

        var options = new RecoveryOptions { CleanupStaleThresholdSeconds = 600 };
        var metrics = new RecoveryMetrics(Prometheus.Metrics.NewCustomRegistry());
        var cleanup = new BatchCleanup(ctx.Redis, options, metrics, new CoordinatorCleanup(ctx.Redis, options, metrics));
        var slowerThan = (await ctx.Server.ConfigGetAsync("slowlog-log-slower-than")).Single().Value;
        var maxLen = (await ctx.Server.ConfigGetAsync("slowlog-max-len")).Single().Value;
        BatchCleanupReport report;
        CommandTrace[] traces;
        double elapsed;
        try
        {
            await ctx.Server.ConfigSetAsync("slowlog-max-len", "1000000");
            await ctx.Server.ConfigSetAsync("slowlog-log-slower-than", "0");
            await ctx.Server.SlowlogResetAsync();
            var clock = Stopwatch.StartNew();
            report = await cleanup.RunAsync(dryRun: false);
            elapsed = clock.Elapsed.TotalMilliseconds;
            await ctx.Server.ConfigSetAsync("slowlog-log-slower-than", slowerThan);
            traces = await ctx.Server.SlowlogGetAsync(1_000_000);
        }
        finally
        {
            await ctx.Server.ConfigSetAsync("slowlog-log-slower-than", slowerThan);
            await ctx.Server.SlowlogResetAsync();
            await ctx.Server.ConfigSetAsync("slowlog-max-len", maxLen);
        }

        var commands = traces
            .Where(t => t.Arguments.Length > 0 && ((string?)t.Arguments[0])?.ToUpperInvariant() is not ("CONFIG" or "SLOWLOG"))
            .ToList();
        var longest = commands.MaxBy(t => t.Duration);
        var longestMs = longest is null ? 0 : longest.Duration.TotalMilliseconds;
        var longestName = longest is null ? "none" : string.Join(' ', longest.Arguments.Take(2).Select(a => (string?)a));
        await ctx.FlushAsync();

        var json = new JsonObject
        {
            ["stale_coordinators"] = count,
            ["keys_seeded"] = count * 6,
            ["total_ms"] = Stats.Round(elapsed, 1),
            ["stale_found"] = report.StaleFound,
            ["keys_deleted"] = report.KeysDeleted,
            ["errors"] = report.Errors,
            ["exit_code"] = report.ExitCode,
            ["commands"] = commands.Count,
            ["longest_command_ms"] = Stats.Round(longestMs, 3),
            ["longest_command"] = longestName,
        };
        var met = elapsed <= 5000 && longestMs <= 50 && report.StaleFound == count && report.Errors == 0;
        return new RowResult(json,
        [
            new TableLine("g", "batch cleanup", $"{count:N0} stale coordinators with their keys ({count * 6:N0} keys)",
                $"{Stats.F(elapsed)} ms in all, {report.KeysDeleted:N0} keys deleted, {commands.Count:N0} commands; longest command {Stats.F(longestMs)} ms ({longestName})",
                "—", "fails at 2,700", "≤ 5 s, longest single Redis command ≤ 50 ms (SLOWLOG)", met),
        ]);
    }
}
