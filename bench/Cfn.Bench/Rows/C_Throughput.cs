using System.Diagnostics;
using System.Text.Json.Nodes;
using Cfn.Coordination;
using Cfn.Coordination.Signals;

namespace Cfn.Bench.Rows;

/// <summary>
/// c: full cycles per second with P concurrent sender/receiver pairs in one process. A cycle: the sender sends a
/// signal and waits for its ACK (SendAndWaitAsync: one script does both), the receiver takes it from its inbox
/// (Inbox.ReadAllAsync verifies and ACKs it before handing it out), and the sender's verified wait completes. Cycles are counted in a window after a short warm-up; CPU of this
/// process and of redis-server (from /proc) over the same window, in % of one core.
/// </summary>
internal sealed class C_Throughput : IRow
{
    public string Key => "c";

    public async Task<RowResult> RunAsync(BenchContext ctx)
    {
        var pairCounts = ctx.PairCounts ?? (ctx.Quick ? new[] { 1, 10, 100 } : [1, 10, 100, 1000]);
        var window = TimeSpan.FromSeconds(ctx.Quick ? 2 : 20);
        var warmup = TimeSpan.FromSeconds(ctx.Quick ? 0.5 : 2);
        var redisPid = await ctx.RedisPidAsync();
        var runs = new JsonArray();
        var lines = new List<TableLine>();
        foreach (var pairs in pairCounts)
        {
            var senders = await ctx.StartManyAsync($"c{pairs}-s", pairs);
            var receivers = await ctx.StartManyAsync($"c{pairs}-r", pairs);
            using var stopReceiving = new CancellationTokenSource();
            var stopSending = false;
            var measuring = false;
            long cycles = 0;
            var latencies = new List<double>[pairs];
            var receiving = receivers.Select(r => ReceiveAsync(r, stopReceiving.Token)).ToList();
            var sending = Enumerable.Range(0, pairs).Select(i => Task.Run(async () =>
            {
                latencies[i] = [];
                while (!Volatile.Read(ref stopSending))
                {
                    var start = Stopwatch.GetTimestamp();
                    var result = await senders[i].Waiter.SendAndWaitAsync(receivers[i].Id, SignalTypes.Completion, 0, timeout: TimeSpan.FromSeconds(60));
                    A_AckRelease.Require(result.Wait);
                    if (Volatile.Read(ref measuring))
                    {
                        Interlocked.Increment(ref cycles);
                        latencies[i].Add(Stats.Ms(start, Stopwatch.GetTimestamp()));
                    }
                }
            })).ToList();

            await Task.Delay(warmup);
            var cpuSelf = ProcessCpu.Self();
            var cpuRedis = ProcessCpu.Seconds(redisPid);
            await ctx.ResetStatsAsync();
            // Every allocation of this process in the window (both sides of each cycle run here), divided by the cycles.
            var allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
            var clock = Stopwatch.StartNew();
            Volatile.Write(ref measuring, true);
            await Task.Delay(window);
            Volatile.Write(ref measuring, false);
            var elapsed = clock.Elapsed.TotalSeconds;
            var counted = Interlocked.Read(ref cycles);
            var allocatedPerCycle = counted == 0 ? 0 : (GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore) / (double)counted;
            var calls = await ctx.CommandCallsAsync();
            var usec = await ctx.CommandMicrosecondsAsync();
            var selfPct = (ProcessCpu.Self() - cpuSelf) / elapsed * 100;
            var redisPct = ProcessCpu.Seconds(redisPid) - cpuRedis is { } r ? r / elapsed * 100 : (double?)null;
            Volatile.Write(ref stopSending, true);
            await Task.WhenAll(sending);
            await stopReceiving.CancelAsync();
            await Task.WhenAll(receiving);
            await BenchContext.DropAsync([.. senders, .. receivers]);
            await ctx.FlushAsync();

            var perSecond = counted / elapsed;
            var cycle = Stats.Summary(latencies.SelectMany(l => l));
            var run = new JsonObject
            {
                ["pairs"] = pairs,
                ["seconds"] = Stats.Round(elapsed, 2),
                ["cycles"] = counted,
                ["cycles_per_s"] = Stats.Round(perSecond, 1),
                ["cycle_latency"] = cycle,
                ["allocated_bytes_per_cycle"] = Math.Round(allocatedPerCycle),
                ["redis_commands_per_cycle"] = counted == 0 ? null : Stats.Round(calls.Values.Sum() / (double)counted, 2),
                ["redis_commands_by_name"] = new JsonObject(calls.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value))),
                ["redis_usec_per_cycle_by_name"] = counted == 0 ? null : new JsonObject(usec.OrderByDescending(kv => kv.Value)
                    .Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)Stats.Round(kv.Value / (double)counted, 2)))),
                ["bench_cpu_us_per_cycle"] = counted == 0 ? null : Stats.Round(selfPct / 100 * elapsed * 1e6 / counted, 1),
                ["redis_cpu_us_per_cycle"] = counted == 0 || redisPct is null ? null : Stats.Round(redisPct.Value / 100 * elapsed * 1e6 / counted, 1),
                ["bench_cpu_pct_of_one_core"] = Stats.Round(selfPct, 1),
                ["redis_cpu_pct_of_one_core"] = redisPct is { } p ? Stats.Round(p, 1) : null,
            };
            runs.Add(run);
            if (counted > 0)
            {
                // Where Redis's time goes, per cycle: calls and µs of each command (a script's µs include the commands it calls).
                Console.WriteLine($"   c {pairs}: per cycle: bench CPU {run["bench_cpu_us_per_cycle"]} µs, redis CPU {run["redis_cpu_us_per_cycle"]} µs, " +
                    $"{allocatedPerCycle / 1024:0.0} KB allocated; commands (calls, µs): " +
                    string.Join(", ", calls.OrderByDescending(kv => kv.Value).Select(kv =>
                        $"{kv.Key} {kv.Value / (double)counted:0.00} {usec.GetValueOrDefault(kv.Key) / (double)counted:0.0}")));
            }

            var cpu = $"CPU: bench {Stats.F(selfPct)} %, redis {(redisPct is { } q ? Stats.F(q) + " %" : "n/a")} (of one core)";
            lines.Add(new TableLine("c", "full cycles per second (send → inbox → ACK → verified wait)",
                $"{pairs:N0} concurrent pairs, {window.TotalSeconds:0.#} s",
                $"{perSecond:N0} cycles/s ({(counted == 0 ? 0 : calls.Values.Sum() / (double)counted):0.0} Redis commands per cycle); cycle p50 {Stats.F(Stats.Get(cycle, "p50_ms"))} ms, p99 {Stats.F(Stats.Get(cycle, "p99_ms"))} ms; {allocatedPerCycle / 1024:0.0} KB allocated per cycle (both sides); {cpu}",
                $"cycle p50 ×{Stats.F(Stats.Get(cycle, "p50_ms") / ctx.Floor.PingP50Ms)}",
                pairs == 100 ? "513/s at 100 pairs" : "—", pairs == 100 ? "≥ 10,000/s at 100 pairs" : "—",
                pairs == 100 ? perSecond >= 10_000 : null));
        }

        return new RowResult(new JsonObject { ["runs"] = runs }, lines);
    }

    internal static async Task ReceiveAsync(Coordinator receiver, CancellationToken stop)
    {
        try
        {
            await foreach (var _ in receiver.Inbox.ReadAllAsync(stop))
            {
                // Handed out = verified and ACKed; asking for the next one consumes it.
            }
        }
        catch (OperationCanceledException)
        {
        }
    }
}
