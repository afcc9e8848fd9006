using System.Collections.Concurrent;
using System.Globalization;
using Cfn.Coordination.Acks;
using Cfn.Coordination.Detection;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Tests.Infrastructure;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Cfn.Coordination.Tests.Detection;

/// <summary>
/// Stuck waits (SPEC §2.10 C# MUST: reason <c>blocking</c>, one count per incident, a handled marker; L16; W31, W34):
/// a coordinator whose heartbeat is fresh but which is still blocking past its wait's deadline plus the grace.
/// The library ends its own waits, so a hung wait is simulated by writing K7 and the deadlines entry by hand for a
/// live coordinator.
/// </summary>
[Collection(RedisCollection.Name)]
public sealed class StuckWaitDetectorTests(RedisServer server)
{
    private static RecoveryOptions Options(int graceMs = 200) => new()
    {
        StuckWaitGrace = TimeSpan.FromMilliseconds(graceMs),
        HeartbeatStaleThreshold = TimeSpan.FromSeconds(5),
        MonitorInterval = TimeSpan.FromMilliseconds(100),
    };

    /// <summary>Writes a running wait into K7 and the deadlines index, as a coordinator stuck in it would have.</summary>
    internal static async Task PlantWaitAsync(IDatabase database, string id, string swarm, string signalId, long blockingSince, long timeoutMs)
    {
        var k7 = string.Create(CultureInfo.InvariantCulture,
            $$"""{"coordinatorId":"{{id}}","swarmId":"{{swarm}}","lastActivity":{{blockingSince}},"iteration":1,"status":"blocking","waitingFor":"peer-x","waitingForSignal":"{{signalId}}","blockingSince":{{blockingSince}},"timeoutMs":{{timeoutMs}}}""");
        await database.StringSetAsync(Keys.Activity(id), k7, TimeSpan.FromMinutes(10));
        await database.SortedSetAddAsync(Keys.Deadlines, id, blockingSince + timeoutMs);
    }

    [Fact]
    public async Task CheckAsync_LiveCoordinatorPastDeadline_ReportedOnceThenAgainForANewWait()
    {
        await using var h = Harness.Create(server, o => o.HeartbeatInterval = TimeSpan.FromMilliseconds(100));
        var swarm = TestIds.New("swarm");
        var c = await h.StartAsync(swarmId: swarm, heartbeatLoop: true);
        var detector = new StuckWaitDetector(h.Redis, Options(), h.Metrics, new RecoveryMetrics(h.Registry));
        var events = new ConcurrentBag<StuckWait>();
        detector.StuckWaitDetected += events.Add;
        var signalId = $"{c.Id}:peer-x:completion:1:111";
        try
        {
            var now = await RedisKit.NowAsync(h.Database);
            await PlantWaitAsync(h.Database, c.Id, swarm, signalId, now - 10_000, 300);

            var first = await detector.CheckAsync();

            var stuck = Assert.Single(first, s => s.CoordinatorId == c.Id);
            Assert.Equal(signalId, stuck.SignalId);
            Assert.Equal("peer-x", stuck.WaitingFor);
            Assert.Equal(300, stuck.TimeoutMs);
            Assert.InRange(stuck.BlockedForMs, 10_000, 30_000);
            Assert.Equal(1, h.Metrics.TimeoutEvents.WithLabels(c.Id, "blocking", "blocking").Value);
            Assert.Equal(LogLevel.Warning, Assert.Single(RecoveryKit.Lines(h, "Coordinator timeout detected", $"coordinator={c.Id} ")).Level);
            Assert.Equal(LogLevel.Error, Assert.Single(RecoveryKit.Lines(h, "Coordinator timeout event", $"coordinator={c.Id} ")).Level);
            Assert.Single(events, e => e.CoordinatorId == c.Id);

            // The same wait is not counted again.
            var second = await detector.CheckAsync();
            Assert.DoesNotContain(second, s => s.CoordinatorId == c.Id);
            Assert.Equal(1, h.Metrics.TimeoutEvents.WithLabels(c.Id, "blocking", "blocking").Value);
            Assert.Single(RecoveryKit.Lines(h, "Coordinator timeout detected", $"coordinator={c.Id} "));

            // A new wait (another blockingSince) that hangs too is a new incident.
            await PlantWaitAsync(h.Database, c.Id, swarm, signalId, now - 5_000, 300);
            var third = await detector.CheckAsync();
            Assert.Single(third, s => s.CoordinatorId == c.Id);
            Assert.Equal(2, h.Metrics.TimeoutEvents.WithLabels(c.Id, "blocking", "blocking").Value);

            // A stuck wait is not a heartbeat failure (W31).
            Assert.Equal(0, h.Metrics.HeartbeatFailures.WithLabels(c.Id, "stale", "stale").Value);
            Assert.Equal(0, h.Metrics.TimeoutEvents.WithLabels(c.Id, "heartbeat", "heartbeat").Value);
        }
        finally
        {
            await RecoveryKit.ForgetAsync(h.Database, c.Id);
        }
    }

    [Fact]
    public async Task CheckAsync_OverdueWithinGrace_NotReportedUntilGracePasses()
    {
        await using var h = Harness.Create(server, o => o.HeartbeatInterval = TimeSpan.FromMilliseconds(100));
        var swarm = TestIds.New("swarm");
        var c = await h.StartAsync(swarmId: swarm, heartbeatLoop: true);
        var detector = new StuckWaitDetector(h.Redis, Options(graceMs: 1500), h.Metrics, new RecoveryMetrics(h.Registry));
        try
        {
            var now = await RedisKit.NowAsync(h.Database);
            await PlantWaitAsync(h.Database, c.Id, swarm, $"{c.Id}:peer-x:completion:1:222", now - 300, 200); // 100 ms overdue

            Assert.DoesNotContain(await detector.CheckAsync(), s => s.CoordinatorId == c.Id);

            var reported = await EventuallyAsync(
                async () => (await detector.CheckAsync()).Any(s => s.CoordinatorId == c.Id), TimeSpan.FromSeconds(8), 100);
            Assert.True(reported, "the wait was never reported after the grace");
            Assert.True(await RedisKit.NowAsync(h.Database) - (now - 100) >= 1500, "reported before the grace had passed");
            Assert.Equal(1, h.Metrics.TimeoutEvents.WithLabels(c.Id, "blocking", "blocking").Value);
        }
        finally
        {
            await RecoveryKit.ForgetAsync(h.Database, c.Id);
        }
    }

    [Fact]
    public async Task CheckAsync_DeadCoordinatorWithStaleRegistryScore_NotReportedAsStuck()
    {
        await using var h = Harness.Create(server);
        var detector = new StuckWaitDetector(h.Redis, Options(), h.Metrics, new RecoveryMetrics(h.Registry));
        var dead = TestIds.New("coord");
        var unregistered = TestIds.New("coord");
        var swarm = TestIds.New("swarm");
        try
        {
            var now = await RedisKit.NowAsync(h.Database);
            await h.Database.SortedSetAddAsync(Keys.Registry, dead, now - 60_000); // heartbeat a minute old: the monitor's case
            await PlantWaitAsync(h.Database, dead, swarm, $"{dead}:peer-x:completion:1:333", now - 10_000, 300);
            await PlantWaitAsync(h.Database, unregistered, swarm, $"{unregistered}:peer-x:completion:1:334", now - 10_000, 300);

            var found = await detector.CheckAsync();

            Assert.DoesNotContain(found, s => s.CoordinatorId == dead || s.CoordinatorId == unregistered);
            Assert.Equal(0, h.Metrics.TimeoutEvents.WithLabels(dead, "blocking", "blocking").Value);
            Assert.Equal(0, h.Metrics.TimeoutEvents.WithLabels(unregistered, "blocking", "blocking").Value);
            Assert.Empty(RecoveryKit.Lines(h, "Coordinator timeout detected", dead));
        }
        finally
        {
            await RecoveryKit.ForgetAsync(h.Database, dead, unregistered);
            await h.Database.KeyDeleteAsync([Keys.Activity(dead), Keys.Activity(unregistered)]);
        }
    }

    [Fact]
    public async Task CheckAsync_NormalWaitTimesOutOnItsOwn_CountedOnceByCoordinatorNeverByDetector()
    {
        await using var h = Harness.Create(server, o => o.HeartbeatInterval = TimeSpan.FromMilliseconds(100));
        var c = await h.StartAsync(swarmId: TestIds.New("swarm"), heartbeatLoop: true);
        var detector = new StuckWaitDetector(h.Redis, Options(graceMs: 1000), h.Metrics, new RecoveryMetrics(h.Registry));
        var peer = TestIds.New("peer");
        try
        {
            var wait = c.Waiter.WaitForAcksAsync([peer], $"{c.Id}:{peer}:completion:1:444", TimeSpan.FromMilliseconds(300));
            var reported = new List<StuckWait>();
            // Checks until the wait has timed out on its own and 2.5 s have passed: over twice the detector's 1 s grace. A
            // negative check (never reported) over a window of the Redis clock, which judges the grace: no event to await.
            var until = DateTime.UtcNow.AddMilliseconds(2500);
            while (!wait.IsCompleted || DateTime.UtcNow < until)
            {
                reported.AddRange(await detector.CheckAsync());
                await Task.Delay(50);
            }

            var result = await wait;
            Assert.Equal(AckWaitStatus.Timeout, result.Status);
            Assert.DoesNotContain(reported, s => s.CoordinatorId == c.Id);
            Assert.Equal(1, h.Metrics.TimeoutEvents.WithLabels(c.Id, "blocking", "blocking").Value);
            Assert.Empty(RecoveryKit.Lines(h, "Coordinator timeout detected", $"coordinator={c.Id} "));
            Assert.Null(await h.Database.SortedSetScoreAsync(Keys.Deadlines, c.Id));
        }
        finally
        {
            await RecoveryKit.ForgetAsync(h.Database, c.Id);
        }
    }
}
