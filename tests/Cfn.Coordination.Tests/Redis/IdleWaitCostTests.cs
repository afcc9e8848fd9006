using Cfn.Coordination.Acks;
using Cfn.Coordination.Tests.Infrastructure;
using Microsoft.Extensions.Time.Testing;

namespace Cfn.Coordination.Tests.Redis;

/// <summary>
/// D3: an idle waiter costs no Redis commands; the only background reads are the process-wide fallback check, one
/// batched MGET per period however many waits there are. Reads INFO commandstats, which counts every client of the
/// server, so it runs on a redis-server of its own (the other test project's processes share the test command's).
/// </summary>
[Collection(IsolatedRedisCollection.Name)]
public sealed class IdleWaitCostTests : IAsyncLifetime
{
    private PrivateRedisServer _own = null!;
    private RedisServer _server = null!;

    public async Task InitializeAsync()
    {
        _own = await PrivateRedisServer.StartAsync();
        _server = await RedisServer.ConnectToAsync(_own.Endpoint);
    }

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        await _own.DisposeAsync();
    }

    private const int Coordinators = 10;
    private const int WaitsPerCoordinator = 10;
    private const int Waits = Coordinators * WaitsPerCoordinator;

    private static readonly string[] ReadCommands = ["mget", "get", "evalsha", "eval", "xreadgroup", "exists", "xread", "scan", "keys"];

    [Fact]
    public async Task HundredIdleWaits_SlowFallback_SendNoCommandsForTwoSeconds()
    {
        await using var h = await Harness.CreateIsolatedAsync(_server, o => o.AckFallbackPollInterval = TimeSpan.FromSeconds(30));
        using var cts = new CancellationTokenSource();
        var waits = await StartIdleWaitsAsync(h, cts.Token);
        try
        {
            await _server.Server.ConfigResetStatisticsAsync();
            // A negative check: two idle seconds bring no read; no event marks a command not sent.
            await Task.Delay(TimeSpan.FromSeconds(2));
            var stats = await CommandCallsAsync();

            Assert.All(waits, w => Assert.False(w.IsCompleted));
            foreach (var command in ReadCommands)
            {
                Assert.True(stats.GetValueOrDefault(command) == 0,
                    $"{stats.GetValueOrDefault(command)} {command} calls while {Waits} waits were idle; all: {Describe(stats)}");
            }
        }
        finally
        {
            await cts.CancelAsync();
            var results = await Task.WhenAll(waits);
            Assert.All(results, r => Assert.Equal(AckWaitStatus.Cancelled, r.Status));
        }
    }

    [Fact]
    public async Task HundredIdleWaits_FastFallback_OneBatchedMgetPerTick()
    {
        // The fallback check runs on the process's clock: a fake one, moved tick by tick.
        var interval = TimeSpan.FromMilliseconds(250);
        const int Ticks = 8;
        var time = new FakeTimeProvider();
        await using var h = await Harness.CreateIsolatedAsync(_server, o => o.AckFallbackPollInterval = interval, time);
        using var cts = new CancellationTokenSource();
        var waits = await StartIdleWaitsAsync(h, cts.Token);
        try
        {
            await _server.Server.ConfigResetStatisticsAsync();
            var readsBefore = h.Redis.Wakeups.FallbackReads;
            for (var tick = 1; tick <= Ticks; tick++)
            {
                // A tick short of the interval sends nothing; the last millisecond brings exactly one batched read.
                time.Advance(interval - TimeSpan.FromMilliseconds(1));
                Assert.Equal(tick - 1, h.Redis.Wakeups.FallbackReads - readsBefore);
                time.Advance(TimeSpan.FromMilliseconds(1));
                var expected = tick;
                await EventuallyAsync(() => h.Redis.Wakeups.FallbackReads - readsBefore >= expected, $"fallback tick {tick} sent no read");
                Assert.Equal(tick, h.Redis.Wakeups.FallbackReads - readsBefore);
            }

            // Each read is one MGET (100 keys, well under a batch) and its reply must be in before the count.
            var stats = await EventuallyAsync(CommandCallsAsync, s => s.GetValueOrDefault("mget") >= Ticks, "the MGETs never reached the server",
                describe: Describe);

            Assert.All(waits, w => Assert.False(w.IsCompleted));
            Assert.Equal(Ticks, stats.GetValueOrDefault("mget"));
            Assert.Equal(Ticks, h.Redis.Wakeups.FallbackReads - readsBefore);
            Assert.Equal(0, stats.GetValueOrDefault("get"));
            Assert.Equal(0, stats.GetValueOrDefault("evalsha") + stats.GetValueOrDefault("eval"));
            Assert.Equal(0, stats.GetValueOrDefault("xreadgroup"));
        }
        finally
        {
            await cts.CancelAsync();
            await Task.WhenAll(waits);
        }
    }

    /// <summary>
    /// Starts 10 coordinators × 10 waits for ACKs that never come, and returns once every wait has done its first
    /// read and gone to sleep (measured with INFO commandstats: one script call per wait).
    /// </summary>
    private async Task<List<Task<AckWaitResult>>> StartIdleWaitsAsync(Harness h, CancellationToken cancellationToken)
    {
        var coordinators = new List<Coordinator>();
        for (var i = 0; i < Coordinators; i++)
        {
            coordinators.Add(await h.StartAsync(swarmId: "swarm-idle"));
        }

        await _server.Server.ConfigResetStatisticsAsync();
        var waits = new List<Task<AckWaitResult>>();
        foreach (var c in coordinators)
        {
            for (var j = 0; j < WaitsPerCoordinator; j++)
            {
                waits.Add(c.Waiter.WaitForAcksAsync([TestIds.New("absent-peer")], TestIds.New("sig"), TimeSpan.FromMinutes(5), cancellationToken));
            }
        }

        // A wait's first read is part of the script that announces it (wait_begin.lua).
        await EventuallyAsync(CommandCallsAsync,
            stats => stats.GetValueOrDefault("evalsha") + stats.GetValueOrDefault("eval") >= Waits &&
                     h.Metrics.BlockingActive.WithLabels(coordinators[^1].Id, "swarm-idle", "none").Value == 1,
            "waits never settled", TimeSpan.FromSeconds(30), pollMs: 50, describe: Describe);

        // Let the last replies reach their waiters before counting. Kept as a pause: a wait going to sleep after its reply
        // has no observable event (the server-side count above is the last one there is).
        await Task.Delay(300, CancellationToken.None);
        Assert.All(waits, w => Assert.False(w.IsCompleted));
        return waits;
    }

    private Task<Dictionary<string, long>> CommandCallsAsync() => Cfn.Bench.CommandStats.CallsAsync(_server.Server);

    private static string Describe(Dictionary<string, long> stats) =>
        string.Join(", ", stats.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key}={kv.Value}"));
}
