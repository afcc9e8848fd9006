using System.Diagnostics;
using System.Text.Json.Nodes;
using Cfn.Coordination.Signals;

namespace Cfn.Bench.Rows;

/// <summary>
/// b: last ACK → waiter released at a fan-in of N peers. One wait on N receivers (each ACKs its own signal ID, the
/// per-receiver overload); all but one ACK, the waiter settles, then the clock starts just before the last ACK is
/// sent and stops at the waiter's continuation.
/// </summary>
internal sealed class B_FanIn : IRow
{
    public string Key => "b";

    public async Task<RowResult> RunAsync(BenchContext ctx)
    {
        var sizes = ctx.Quick ? new[] { (10, 20), (100, 10) } : [(10, 100), (100, 50), (1000, 20)];
        var json = new JsonObject();
        var runs = new JsonArray();
        var lines = new List<TableLine>();
        foreach (var (peers, waits) in sizes)
        {
            var waiter = await ctx.StartAsync(ctx.Id($"b{peers}-waiter", 0));
            var receivers = await ctx.StartManyAsync($"b{peers}-peer", peers);
            var samples = new List<double>();
            for (var i = 0; i < waits; i++)
            {
                var signals = receivers.ToDictionary(r => r.Id, r => $"{waiter.Id}:{r.Id}:completion:{i}:b");
                var waiting = WaitAndStampAsync(waiter.Waiter, signals);
                foreach (var chunk in receivers.Take(peers - 1).Chunk(200))
                {
                    await Task.WhenAll(chunk.Select(r => r.Acks.AcknowledgeAsync(signals[r.Id], waiter.Id, SignalTypes.Completion, null, 0)));
                }

                await Task.Delay(Math.Max(20, peers / 10)); // let the waiter take in the first N−1 ACKs
                var last = receivers[^1];
                var sent = Stopwatch.GetTimestamp();
                await last.Acks.AcknowledgeAsync(signals[last.Id], waiter.Id, SignalTypes.Completion, null, 0);
                var (result, released) = await waiting;
                A_AckRelease.Require(result);
                samples.Add(Stats.Ms(sent, released));
            }

            await BenchContext.DropAsync([waiter, .. receivers]);
            await ctx.FlushAsync();
            var summary = Stats.Summary(samples);
            summary["peers"] = peers;
            summary["waits"] = waits;
            runs.Add(summary);
            var met = peers == 100 ? Stats.Get(summary, "p99_ms") <= 5 : (bool?)null;
            lines.Add(new TableLine("b", "last ACK → waiter released", $"fan-in of {peers:N0} peers; {waits} waits",
                Stats.Describe(summary), ctx.Floor.Multiple(summary), peers == 100 ? "127 ms p99 at 100" : "—",
                peers == 100 ? "p99 ≤ 5 ms at 100" : "—", met));
        }

        json["runs"] = runs;
        json["measured_from"] = "just before the last peer's ACK script is sent";
        return new RowResult(json, lines);
    }

    private static async Task<(Cfn.Coordination.Acks.AckWaitResult Result, long ReleasedAt)> WaitAndStampAsync(
        Cfn.Coordination.Acks.AckWaiter waiter, Dictionary<string, string> signals)
    {
        var result = await waiter.WaitForAcksAsync(signals, TimeSpan.FromSeconds(60));
        return (result, Stopwatch.GetTimestamp());
    }
}
