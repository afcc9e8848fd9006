using System.Diagnostics;
using System.Text.Json.Nodes;
using Cfn.Coordination;
using Cfn.Coordination.Acks;
using Cfn.Coordination.Signals;

namespace Cfn.Bench.Rows;

/// <summary>
/// a: ACK written → waiter released. One waiter blocks on one peer; the peer ACKs after a random 0–100 ms. Each sample
/// runs from just before the peer sends its ACK script to the moment the waiter's continuation runs (the wait's task
/// completed). Each wait is independent and starts after the previous one ended; a sample's clock starts when its ACK
/// is sent, so a slow sample never delays or hides another (no coordinated omission).
/// The floor beside it is a PING after the same random 0–100 ms pause (<c>idle_ping</c>): the process and Redis are
/// idle before every ACK, and the first round trip after an idle pause costs several times a back-to-back PING here.
/// </summary>
internal sealed class A_AckRelease : IRow
{
    public string Key => "a";

    public async Task<RowResult> RunAsync(BenchContext ctx)
    {
        var waits = ctx.Quick ? 50 : 200;
        var waiter = await ctx.StartAsync(ctx.Id("a-waiter", 0));
        var peer = await ctx.StartAsync(ctx.Id("a-peer", 0));
        var random = new Random(6);
        var samples = new List<double>();
        var ackCalls = new List<double>();
        for (var i = 0; i < waits; i++)
        {
            var signalId = $"{waiter.Id}:{peer.Id}:completion:{i}:a";
            var waiting = WaitAndStampAsync(waiter, peer.Id, signalId);
            await Task.Delay(random.Next(0, 101));
            var sent = Stopwatch.GetTimestamp();
            await peer.Acks.AcknowledgeAsync(signalId, waiter.Id, SignalTypes.Completion, null, 0);
            ackCalls.Add(Stats.Ms(sent, Stopwatch.GetTimestamp()));
            var (result, released) = await waiting;
            Require(result);
            samples.Add(Stats.Ms(sent, released));
        }

        await BenchContext.DropAsync([waiter, peer]);
        var idlePings = new List<double>();
        for (var i = 0; i < waits; i++)
        {
            await Task.Delay(random.Next(0, 101));
            var start = Stopwatch.GetTimestamp();
            await ctx.Database.PingAsync();
            idlePings.Add(Stats.Ms(start, Stopwatch.GetTimestamp()));
        }

        var idlePing = Stats.Summary(idlePings);
        var summary = Stats.Summary(samples);
        summary["waits"] = waits;
        summary["measured_from"] = "just before the ACK script is sent";
        summary["measured_to"] = "the waiter's continuation after WaitForAcksAsync completes";
        summary["ack_call"] = Stats.Summary(ackCalls); // the peer's AcknowledgeAsync alone: the part of a spent before the wake-up
        summary["idle_ping"] = idlePing; // a PING after the same random pause: the round-trip floor for this row
        var met = Stats.Get(summary, "p50_ms") <= 0.5 && Stats.Get(summary, "p99_ms") <= 2;
        return new RowResult(summary,
        [
            new TableLine("a", "ACK written → waiter released", $"1 waiter, 1 peer ACKing at a random 0–100 ms; {waits} waits",
                $"{Stats.Describe(summary)}; a PING after the same pause: p50 {Stats.F(Stats.Get(idlePing, "p50_ms"))} ms, p99 {Stats.F(Stats.Get(idlePing, "p99_ms"))} ms",
                $"{ctx.Floor.Multiple(summary)}; ×{Stats.F(Stats.Get(summary, "p50_ms") / Stats.Get(idlePing, "p50_ms"))} (p50) / ×{Stats.F(Stats.Get(summary, "p99_ms") / Stats.Get(idlePing, "p99_ms"))} (p99) the PING after a pause",
                "p50 155 ms, p99 200 ms", "p50 ≤ 0.5 ms, p99 ≤ 2 ms", met),
        ]);
    }

    internal static async Task<(AckWaitResult Result, long ReleasedAt)> WaitAndStampAsync(Coordinator waiter, string peerId, string signalId)
    {
        var result = await waiter.Waiter.WaitForAcksAsync([peerId], signalId, TimeSpan.FromSeconds(30));
        return (result, Stopwatch.GetTimestamp());
    }

    internal static void Require(AckWaitResult result)
    {
        if (result.Status != AckWaitStatus.Completed)
        {
            throw new InvalidOperationException($"wait {result.SignalId} ended {result.StatusLabel}, not completed");
        }
    }
}
