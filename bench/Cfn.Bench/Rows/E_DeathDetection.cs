using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using Cfn.Coordination;
using Cfn.Coordination.Detection;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;

namespace Cfn.Bench.Rows;

/// <summary>
/// e: how long after the configured time a death is detected. N coordinators run their real heartbeat loops every
/// 200 ms (own connection, HEARTBEAT_INTERVAL 200 ms); each stops at a random moment like a crash (heartbeats end,
/// nothing is removed). A running HeartbeatMonitor (stale threshold 2 s, monitor interval 200 ms, 3 warnings) confirms
/// the deaths. Lateness = the moment this process hears of the death − (the last heartbeat's registry time + the
/// configured death time, threshold + (warnings − 1) × interval). Both clocks are this machine's (Redis on loopback).
/// </summary>
internal sealed class E_DeathDetection : IRow
{
    private static readonly TimeSpan Threshold = TimeSpan.FromSeconds(2);
    private static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(200);

    public string Key => "e";

    public async Task<RowResult> RunAsync(BenchContext ctx)
    {
        var count = ctx.Quick ? 10 : 40;
        var spread = TimeSpan.FromSeconds(ctx.Quick ? 1 : 4);
        await ctx.FlushAsync();
        var options = new CoordinationOptions { HeartbeatInterval = TimeSpan.FromMilliseconds(200) };
        await using var beating = await RedisContext.ConnectAsync(ctx.Configuration, options);
        var recovery = new RecoveryOptions { HeartbeatStaleThreshold = Threshold, MonitorInterval = Interval, MaxWarnings = 3, EnableAutoEscalation = false };
        var deathAfterMs = (long)recovery.DeathAfter.TotalMilliseconds;
        var detected = new ConcurrentDictionary<string, long>(StringComparer.Ordinal);
        var monitor = new HeartbeatMonitor(ctx.Redis, recovery, ctx.Metrics,
            new RecoveryMetrics(Prometheus.Metrics.NewCustomRegistry()), escalation: null, "bench-e-monitor");
        monitor.CoordinatorDied += death => detected.TryAdd(death.CoordinatorId, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());

        var coordinators = new List<Coordinator>();
        for (var i = 0; i < count; i++)
        {
            coordinators.Add(await ctx.StartAsync(ctx.Id("e", i), beating, heartbeat: true));
        }

        monitor.Start();
        await Task.Delay(TimeSpan.FromSeconds(1)); // every coordinator beats a few times first
        var random = new Random(6);
        var lastBeat = new ConcurrentDictionary<string, long>(StringComparer.Ordinal);
        var crashes = coordinators.Select(async c =>
        {
            await Task.Delay(TimeSpan.FromMilliseconds(random.Next(0, (int)spread.TotalMilliseconds)));
            await c.AbandonAsync();
            lastBeat[c.Id] = (long)(await ctx.Database.SortedSetScoreAsync(Keys.Registry, c.Id) ?? double.NaN);
        }).ToList();
        await Task.WhenAll(crashes);

        var deadline = DateTime.UtcNow + recovery.DeathAfter + TimeSpan.FromSeconds(5);
        while (detected.Count < count && DateTime.UtcNow < deadline)
        {
            await Task.Delay(50);
        }

        await monitor.DisposeAsync(); // once: a second DisposeAsync throws ObjectDisposedException
        foreach (var c in coordinators)
        {
            await c.DisposeAsync();
        }

        await ctx.FlushAsync();
        var late = detected.Where(d => lastBeat.ContainsKey(d.Key)).Select(d => (double)(d.Value - (lastBeat[d.Key] + deathAfterMs))).ToList();
        var summary = Stats.Summary(late);
        summary["coordinators"] = count;
        summary["heartbeat_interval_ms"] = 200;
        summary["stale_threshold_ms"] = (long)Threshold.TotalMilliseconds;
        summary["monitor_interval_ms"] = (long)Interval.TotalMilliseconds;
        summary["max_warnings"] = recovery.MaxWarnings;
        summary["configured_death_after_ms"] = deathAfterMs;
        summary["not_detected"] = count - late.Count;
        var met = late.Count == count && Stats.Get(summary, "p99_ms") <= 250;
        return new RowResult(summary,
        [
            new TableLine("e", "death detected beyond the configured time",
                $"{count} coordinators beating every 200 ms stop at random; stale threshold 2 s + 2 warnings × 200 ms = {deathAfterMs} ms",
                Stats.Describe(summary) + (late.Count < count ? $"; {count - late.Count} not detected" : ""),
                "—", "up to one check interval", "p99 ≤ 250 ms", met),
        ]);
    }
}
