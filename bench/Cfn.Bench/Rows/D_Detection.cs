using System.Diagnostics;
using System.Text.Json.Nodes;
using Cfn.Coordination.Detection;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using StackExchange.Redis;

namespace Cfn.Bench.Rows;

/// <summary>
/// d: one detection pass (HeartbeatMonitor.RunOnceAsync) over N registered coordinators, 1 % of them stale, beside
/// 100,000 unrelated keys: its time and every command Redis executed during it (INFO commandstats, which counts the
/// commands run inside scripts too).
/// </summary>
internal sealed class D_Detection : IRow
{
    public string Key => "d";

    public async Task<RowResult> RunAsync(BenchContext ctx)
    {
        var unrelated = ctx.Quick ? 10_000 : 100_000;
        for (var i = 0; i < unrelated; i += 1000)
        {
            var batch = ctx.Database.CreateBatch();
            var writes = Enumerable.Range(i, 1000)
                .Select(j => batch.StringSetAsync($"bench-unrelated:{ctx.Run}:{j}", "x", TimeSpan.FromHours(1))).ToList();
            batch.Execute();
            await Task.WhenAll(writes);
        }

        await WarmUpAsync(ctx);
        var runs = new JsonArray();
        var lines = new List<TableLine>();
        foreach (var count in ctx.Quick ? new[] { 1_000, 10_000 } : [1_000, 10_000, 100_000])
        {
            await ctx.Database.KeyDeleteAsync([Keys.Registry, Keys.Health]);
            var now = await RedisTime.NowMsAsync(ctx.Database);
            for (var i = 0; i < count; i += 1000)
            {
                var entries = Enumerable.Range(i, Math.Min(1000, count - i))
                    .Select(j => new SortedSetEntry(ctx.Id("d", j), j % 100 == 0 ? now - 200_000 : now))
                    .ToArray();
                await ctx.Database.SortedSetAddAsync(Keys.Registry, entries);
            }

            await using var monitor = new HeartbeatMonitor(ctx.Redis, new RecoveryOptions(), ctx.Metrics,
                new RecoveryMetrics(Prometheus.Metrics.NewCustomRegistry()), escalation: null, "bench-monitor");
            await ctx.ResetStatsAsync();
            var clock = Stopwatch.StartNew();
            var pass = await monitor.RunOnceAsync();
            var elapsed = clock.Elapsed.TotalMilliseconds;
            var commands = (await ctx.CommandCallsAsync()).Values.Sum();
            runs.Add(new JsonObject
            {
                ["coordinators"] = count,
                ["stale"] = count / 100,
                ["judged"] = pass.Checked,
                ["pass_ms"] = Stats.Round(elapsed, 2),
                ["commands"] = commands,
            });
            lines.Add(new TableLine("d", "one detection pass (1 % stale)", $"{count:N0} registered + {unrelated:N0} unrelated keys",
                $"{Stats.F(elapsed)} ms, {commands:N0} Redis commands", $"×{Stats.F(elapsed / ctx.Floor.PingP50Ms)} (p50)",
                count == 100_000 ? "10.3 s and 100,001 commands at 100,000" : "—",
                "≤ 50 ms, commands growing with the stale count only", elapsed <= 50));
        }

        await ctx.FlushAsync();
        return new RowResult(new JsonObject { ["unrelated_keys"] = unrelated, ["runs"] = runs }, lines);
    }

    /// <summary>One pass over 100 coordinators (one stale) first, so the measured passes do not pay for JIT compilation.</summary>
    private static async Task WarmUpAsync(BenchContext ctx)
    {
        var now = await RedisTime.NowMsAsync(ctx.Database);
        await ctx.Database.SortedSetAddAsync(Keys.Registry,
            Enumerable.Range(0, 100).Select(j => new SortedSetEntry(ctx.Id("d-warm", j), j == 0 ? now - 200_000 : now)).ToArray());
        await using var monitor = new HeartbeatMonitor(ctx.Redis, new RecoveryOptions(), ctx.Metrics,
            new RecoveryMetrics(Prometheus.Metrics.NewCustomRegistry()), escalation: null, "bench-monitor-warm");
        await monitor.RunOnceAsync();
    }
}
