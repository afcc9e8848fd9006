using System.Text.Json;
using Cfn.Coordination.Acks;
using Cfn.Coordination.Detection;
using Cfn.Coordination.Inspection;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Tests.Infrastructure;
using Prometheus;

namespace Cfn.Coordination.Tests.Inspection;

/// <summary>
/// The live dashboard's read model (issue 15) through the real redis-server, on database 57 (flushed: the view reads
/// the whole registry): real waits make edges and a cycle, a real death (heartbeats stopped, the monitor's verdict)
/// reaches the timeline, and subscribers get what the snapshot and timeline say.
/// </summary>
[Collection(RedisCollection.Name)]
public sealed class LiveViewTests(RedisServer server)
{
    private const int Db = 57;

    [Fact]
    public async Task TwoCoordinatorsWaitingForEachOther_EdgesBothWaysACycleAndADeadlockInTheTimeline()
    {
        await using var h = Harness.Create(server, o => o.HeartbeatInterval = TimeSpan.FromMilliseconds(200));
        await using var db = await DedicatedDatabase.CreateAsync(server, h, Db);
        var a = await db.StartAsync(h, TestIds.New("coord-a"), "swarm-live", heartbeatLoop: true);
        var b = await db.StartAsync(h, TestIds.New("coord-b"), "swarm-live", heartbeatLoop: true);
        await using var view = new LiveView(db.Redis, new RecoveryOptions(), "test-process", ["timeout-handler"], TimeSpan.FromSeconds(1),
            new CollectorRegistry());
        var received = new List<(string Event, string Data)>();
        using var subscription = view.Subscribe((e, d) =>
        {
            lock (received)
            {
                received.Add((e, d));
            }
        });
        await view.RefreshAsync();

        using var stop = new CancellationTokenSource();
        var waitA = a.Waiter.WaitForAcksAsync([b.Id], TestIds.New("sig-a"), TimeSpan.FromSeconds(30), stop.Token);
        var waitB = b.Waiter.WaitForAcksAsync([a.Id], TestIds.New("sig-b"), TimeSpan.FromSeconds(30), stop.Token);
        await EventuallyAsync(async () =>
        {
            await view.RefreshAsync();
            using var s = JsonDocument.Parse(view.SnapshotJson);
            return s.RootElement.GetProperty("waits").GetProperty("cycles").GetArrayLength() == 1;
        }, "the cycle never showed in the snapshot", TimeSpan.FromSeconds(15));

        using (var snapshot = JsonDocument.Parse(view.SnapshotJson))
        {
            var edges = snapshot.RootElement.GetProperty("waits").GetProperty("edges").EnumerateArray()
                .Select(e => (e.GetProperty("from").GetString(), e.GetProperty("to").GetString())).ToHashSet();
            Assert.Contains((a.Id, b.Id), edges);
            Assert.Contains((b.Id, a.Id), edges);
            var rows = snapshot.RootElement.GetProperty("participants").EnumerateArray().ToDictionary(p => p.GetProperty("id").GetString()!);
            Assert.Equal("blocking", rows[a.Id].GetProperty("status").GetString());
            Assert.Equal([b.Id], rows[a.Id].GetProperty("waitingFor").EnumerateArray().Select(x => x.GetString()));
            Assert.Equal(a.Epoch, rows[a.Id].GetProperty("epoch").GetInt64());
            Assert.Equal(6, snapshot.RootElement.GetProperty("alerts").GetArrayLength());
        }

        var deadlock = Assert.Single(view.Timeline, t => t.Contains("\"kind\":\"deadlock\"", StringComparison.Ordinal));
        Assert.Contains(a.Id, deadlock, StringComparison.Ordinal);
        lock (received)
        {
            Assert.Contains(received, r => r.Event == "timeline" && r.Data == deadlock);
            Assert.Contains(received, r => r.Event == "snapshot" && r.Data.Contains("\"cycles\":[[", StringComparison.Ordinal));
        }

        // Force-unblocked (as the page's action does through the timeout handler's endpoint): the timeline says so.
        await using var handler = new TimeoutHandler(db.Redis, h.Keys, new RecoveryOptions(), h.Metrics, new RecoveryMetrics(h.Registry), TestIds.New("handler"));
        await handler.ForceUnblockAsync(a.Id);
        await view.RefreshAsync();
        Assert.Contains(view.Timeline, t => t.Contains("\"kind\":\"force_unblock\"", StringComparison.Ordinal) && t.Contains(a.Id, StringComparison.Ordinal));
        Assert.Equal(AckWaitStatus.Forced, (await waitA.WaitAsync(TimeSpan.FromSeconds(10))).Status);

        await stop.CancelAsync();
        await Task.WhenAll(waitA, waitB);
    }

    [Fact]
    public async Task CoordinatorWhoseHeartbeatsStop_WarnedThenDeclaredDead_OneDeathInTheTimelineWithWhatFollows()
    {
        await using var h = Harness.Create(server, o => o.HeartbeatInterval = TimeSpan.FromMilliseconds(100));
        await using var db = await DedicatedDatabase.CreateAsync(server, h, Db);
        var recovery = RecoveryKit.FastOptions();
        // Running as in a process: refreshed by its loop, and listening to the death notices.
        await using var view = new LiveView(db.Redis, recovery, "test-process", ["timeout-handler"], TimeSpan.FromMilliseconds(100), new CollectorRegistry());
        view.Start();
        await EventuallyAsync(() => view.SnapshotJson != "{}", "no first snapshot");
        var doomed = await db.StartAsync(h, TestIds.New("coord-doomed"), "swarm-live", heartbeatLoop: true);
        await EventuallyAsync(() => view.Timeline.Any(t => t.Contains(doomed.Id, StringComparison.Ordinal)), "never joined", TimeSpan.FromSeconds(10));
        Assert.Contains(view.Timeline, t => t.Contains("\"kind\":\"joined\"", StringComparison.Ordinal) && t.Contains(doomed.Id, StringComparison.Ordinal));

        await doomed.AbandonAsync(); // a crash: no more heartbeats, nothing removed
        await using var monitor = new HeartbeatMonitor(db.Redis, recovery, h.Metrics, new RecoveryMetrics(h.Registry), null, TestIds.New("monitor"));
        // The view refreshes while the monitor warns and then gives its verdict, as the page's reader would.
        var died = await EventuallyAsync(async () =>
        {
            await monitor.RunOnceAsync();
            return view.Timeline.Any(t => t.Contains("\"kind\":\"death\"", StringComparison.Ordinal) && t.Contains(doomed.Id, StringComparison.Ordinal));
        }, TimeSpan.FromSeconds(15));
        Assert.True(died, "the death never reached the timeline: " + string.Join("\n", view.Timeline) + "\n" + view.SnapshotJson);

        Assert.Contains(view.Timeline, t => t.Contains("\"kind\":\"warning\"", StringComparison.Ordinal) && t.Contains(doomed.Id, StringComparison.Ordinal));
        // Told once, by its notice, with what follows: this monitor has no escalation service, so nobody replaces it.
        var death = Assert.Single(view.Timeline, t => t.Contains("\"kind\":\"death\"", StringComparison.Ordinal) && t.Contains(doomed.Id, StringComparison.Ordinal));
        Assert.Contains("declared dead: no replacement", death, StringComparison.Ordinal);
    }
}
