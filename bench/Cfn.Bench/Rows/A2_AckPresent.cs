using System.Diagnostics;
using Cfn.Coordination.Signals;

namespace Cfn.Bench.Rows;

/// <summary>a2: the whole wait (call to completion) when the peer's ACK is already in Redis.</summary>
internal sealed class A2_AckPresent : IRow
{
    public string Key => "a2";

    public async Task<RowResult> RunAsync(BenchContext ctx)
    {
        var waits = ctx.Quick ? 100 : 200;
        var waiter = await ctx.StartAsync(ctx.Id("a2-waiter", 0));
        var peer = await ctx.StartAsync(ctx.Id("a2-peer", 0));
        var samples = new List<double>();
        for (var i = 0; i < waits; i++)
        {
            var signalId = $"{waiter.Id}:{peer.Id}:completion:{i}:a2";
            await peer.Acks.AcknowledgeAsync(signalId, waiter.Id, SignalTypes.Completion, null, 0);
            var start = Stopwatch.GetTimestamp();
            var result = await waiter.Waiter.WaitForAcksAsync([peer.Id], signalId, TimeSpan.FromSeconds(30));
            samples.Add(Stats.Ms(start, Stopwatch.GetTimestamp()));
            A_AckRelease.Require(result);
        }

        await BenchContext.DropAsync([waiter, peer]);
        var summary = Stats.Summary(samples);
        summary["waits"] = waits;
        var met = Stats.Get(summary, "p99_ms") <= 1;
        return new RowResult(summary,
        [
            new TableLine("a2", "whole wait when the ACK is already there", $"{waits} waits",
                Stats.Describe(summary), ctx.Floor.Multiple(summary), "100 ms", "p99 ≤ 1 ms", met),
        ]);
    }
}
