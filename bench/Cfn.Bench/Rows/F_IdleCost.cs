using System.Text.Json.Nodes;
using Cfn.Coordination;
using Cfn.Coordination.Acks;

namespace Cfn.Bench.Rows;

/// <summary>
/// f: the idle cost of waiting. N coordinators in this process (no heartbeat loops, so every command seen is the
/// waits' own) each wait for one ACK that never comes, from a peer that is a live cfn coordinator (registered, so it
/// announces its ACKs and the fallback check need not read them; a peer outside the registry, e.g. a TS coordinator,
/// has its ACK read once per fallback period, reported as <c>unregistered_peer_*</c> from a shorter second window). Once every wait has made its first read, nothing happens for
/// the window: Redis commands per second over it (INFO commandstats delta, server-wide) and the managed memory each
/// waiter holds (GC.GetTotalMemory(true) delta over starting the waits, / N).
/// </summary>
internal sealed class F_IdleCost : IRow
{
    public string Key => "f";

    public async Task<RowResult> RunAsync(BenchContext ctx)
    {
        var count = ctx.Quick ? 1_000 : 10_000;
        var window = TimeSpan.FromSeconds(ctx.Quick ? 3 : 10);
        await ctx.FlushAsync();
        var memoryBefore = GC.GetTotalMemory(forceFullCollection: true);
        var coordinators = await ctx.StartManyAsync("f", count);
        var memoryCoordinators = GC.GetTotalMemory(forceFullCollection: true);
        using var cancel = new CancellationTokenSource();
        await ctx.ResetStatsAsync();
        var peer = await ctx.StartAsync(ctx.Id("f-peer", 0));
        var waits = coordinators
            .Select((c, i) => c.Waiter.WaitForAcksAsync([peer.Id], $"{c.Id}:{peer.Id}:completion:0:f{i}", TimeSpan.FromHours(1), cancel.Token))
            .ToList();
        // Every wait reads once when it starts (in the script that announces it), then sleeps on its wake-up.
        var settle = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (await ScriptCallsAsync(ctx) < count && DateTime.UtcNow < settle)
        {
            await Task.Delay(100);
        }

        await Task.Delay(500);
        var memoryWaits = GC.GetTotalMemory(forceFullCollection: true);
        var fallbackBefore = ctx.Redis.Wakeups.FallbackReads;
        await ctx.ResetStatsAsync();
        await Task.Delay(window);
        var calls = await ctx.CommandCallsAsync();
        var fallback = ctx.Redis.Wakeups.FallbackReads - fallbackBefore;
        var stillWaiting = waits.Count(w => !w.IsCompleted);
        await cancel.CancelAsync();
        var results = await Task.WhenAll(waits);
        var (unregisteredPerSecond, unregisteredKeysPerSecond) = await UnregisteredPeerAsync(ctx, coordinators, window / 2);
        await BenchContext.DropAsync([.. coordinators, peer]);
        await ctx.FlushAsync();

        var commands = calls.Values.Sum();
        var perSecond = commands / window.TotalSeconds;
        var otherThanFallback = commands - fallback;
        var perWaiter = (memoryWaits - memoryCoordinators) / (double)count;
        var json = new JsonObject
        {
            ["waiters"] = count,
            ["idle_seconds"] = window.TotalSeconds,
            ["commands"] = commands,
            ["commands_per_s"] = Stats.Round(perSecond, 2),
            ["fallback_mget_commands"] = fallback,
            ["commands_other_than_fallback"] = otherThanFallback,
            ["commands_by_name"] = new JsonObject(calls.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value))),
            ["managed_bytes_per_waiter"] = Stats.Round(perWaiter, 0),
            ["managed_bytes_per_coordinator"] = Stats.Round((memoryCoordinators - memoryBefore) / (double)count, 0),
            ["still_waiting_at_end"] = stillWaiting,
            ["unregistered_peer_commands_per_s"] = Stats.Round(unregisteredPerSecond, 2),
            ["unregistered_peer_keys_read_per_s"] = Stats.Round(unregisteredKeysPerSecond, 0),
            ["cancelled"] = results.Count(r => r.Status == AckWaitStatus.Cancelled),
        };
        var met = commands == 0 && perWaiter <= 4096;
        return new RowResult(json,
        [
            new TableLine("f", "idle cost of waiting", $"{count:N0} waiting coordinators in one process, nothing happening for {window.TotalSeconds:0} s",
                $"{Stats.F(perSecond)} Redis commands/s in all ({fallback} fallback MGETs, {otherThanFallback} other commands in {window.TotalSeconds:0} s); {Stats.F(perWaiter)} B managed memory per waiter (+{Stats.F((memoryCoordinators - memoryBefore) / (double)count)} B per coordinator). Waiting on an unregistered (TS) peer instead: {Stats.F(unregisteredPerSecond)} commands/s reading {Stats.F(unregisteredKeysPerSecond)} keys/s",
                "—", "10 GET/s per waiter", "0 Redis commands/s for the waits (heartbeats apart); ≤ 4 KiB managed memory per waiter", met),
        ]);
    }

    /// <summary>
    /// The same waits on a peer outside the registry (as a TS coordinator is): the fallback check reads each wait's ACK
    /// key once per period. Returns commands/s and ACK keys read/s over <paramref name="window"/>.
    /// </summary>
    private static async Task<(double CommandsPerSecond, double KeysPerSecond)> UnregisteredPeerAsync(
        BenchContext ctx, List<Coordinator> coordinators, TimeSpan window)
    {
        using var cancel = new CancellationTokenSource();
        var absent = ctx.Id("f-absent", 0);
        var waits = coordinators
            .Select((c, i) => c.Waiter.WaitForAcksAsync([absent], $"{c.Id}:{absent}:completion:0:u{i}", TimeSpan.FromHours(1), cancel.Token))
            .ToList();
        await Task.Delay(TimeSpan.FromSeconds(2)); // every wait's first read, and the look-up of the peer
        await ctx.ResetStatsAsync();
        var keysBefore = ctx.Redis.Wakeups.FallbackKeysRead;
        await Task.Delay(window);
        var calls = await ctx.CommandCallsAsync();
        var keys = ctx.Redis.Wakeups.FallbackKeysRead - keysBefore;
        await cancel.CancelAsync();
        await Task.WhenAll(waits);
        var seconds = window.TotalSeconds;
        return (calls.Values.Sum() / seconds, keys / seconds);
    }

    private static async Task<long> ScriptCallsAsync(BenchContext ctx)
    {
        var calls = await ctx.CommandCallsAsync();
        return calls.GetValueOrDefault("evalsha") + calls.GetValueOrDefault("eval");
    }
}
