using System.Globalization;
using Cfn.Coordination.Background;
using Cfn.Coordination.Identity;
using Cfn.Coordination.Metrics;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Swarms;
using Cfn.Coordination.Tests.Infrastructure;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using StackExchange.Redis;

namespace Cfn.Coordination.Tests.Background;

/// <summary>
/// No background loop dies of one bad record or one bad pass: the shared loop helper keeps going and counts
/// (<c>background_loop_errors_total{loop,scope}</c>), readiness' rule (stopped, or stale for three intervals) holds, and
/// the timeout handler's and swarm manager's real loops log, count and skip malformed records of every kind they read
/// (bad JSON, an invalid ID, a 25-digit number, a wrong Redis type) while a good record in the same pass is handled.
/// </summary>
[Collection(RedisCollection.Name)]
public sealed class LoopHealthTests(RedisServer server)
{
    [Fact]
    public async Task RunPeriodic_PassThrows_LoopKeepsRunningAndCountsEachFailure()
    {
        await using var h = Harness.Create(server);
        var loops = h.Redis.Loops;
        var logger = h.LoggerFactory.CreateLogger("test");
        var handle = loops.Register(LoopNames.BatchCleanup, null, TimeSpan.FromMilliseconds(20));
        var calls = 0;
        using var stop = new CancellationTokenSource();
        var loop = BackgroundLoop.RunPeriodicAsync(handle, TimeSpan.FromMilliseconds(20), TimeProvider.System, () =>
        {
            // Two passes throw what the old loops did not catch (an invalid ID read back, an overflow), then they succeed.
            return ++calls switch
            {
                1 => throw new InvalidIdException("coordinatorId", Ids.NameRule, "a b"),
                2 => throw new OverflowException("Value was either too large or too small for an Int64."),
                _ => Task.CompletedTask,
            };
        }, logger, stop.Token);

        Assert.True(await EventuallyAsync(() => Task.FromResult(handle.Passes >= 3), TimeSpan.FromSeconds(10)));
        Assert.False(loop.IsCompleted);
        Assert.Equal(2, loops.Errors.WithLabels(LoopNames.BatchCleanup, "pass").Value);
        Assert.Equal(2, RecoveryKit.Lines(h, "Background loop pass failed loop=batch_cleanup").Count);
        Assert.Single(RecoveryKit.Lines(h, "Background loop pass failed", "OverflowException"));
        Assert.Contains(loops.Snapshot(), s => s.Loop == LoopNames.BatchCleanup && s.State == LoopStatus.Running);

        // A stop on purpose: the cancellation is not swallowed as an error, and the loop leaves the registry.
        await stop.CancelAsync();
        await loop;
        Assert.Equal(2, loops.Errors.WithLabels(LoopNames.BatchCleanup, "pass").Value);
        Assert.DoesNotContain(loops.Snapshot(), s => s.Loop == LoopNames.BatchCleanup);
    }

    [Fact]
    public void Unhealthy_PeriodicStaleAfterThreeIntervals_WakeDrivenOnlyWhenStopped()
    {
        var time = new FakeTimeProvider(DateTimeOffset.Parse("2026-12-01T00:00:00Z", CultureInfo.InvariantCulture));
        var loops = LoopHealth.Detached(time);
        var logger = Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;
        var periodic = loops.Register(LoopNames.StuckWaits, null, TimeSpan.FromSeconds(1));
        var pump = loops.Register(LoopNames.InboxPump, "coord-1", interval: null);

        time.Advance(TimeSpan.FromMilliseconds(2900));
        Assert.Empty(loops.Unhealthy());
        time.Advance(TimeSpan.FromMilliseconds(200));
        var stale = Assert.Single(loops.Unhealthy());
        Assert.Equal((LoopNames.StuckWaits, LoopStatus.Stale), (stale.Name, stale.State));

        periodic.PassCompleted(); // it runs again: healthy again
        time.Advance(TimeSpan.FromHours(1)); // a quiet pump is not a stuck one
        periodic.PassCompleted();
        Assert.Empty(loops.Unhealthy());

        pump.Ended(asked: false, logger, "InvalidOperationException: boom");
        var stopped = Assert.Single(loops.Unhealthy());
        Assert.Equal(("inbox_pump/coord-1", LoopStatus.Stopped, "InvalidOperationException: boom"), (stopped.Name, stopped.State, stopped.LastError));

        periodic.Ended(asked: true, logger); // stopped on purpose: gone, not failing
        Assert.DoesNotContain(loops.Snapshot(), s => s.Loop == LoopNames.StuckWaits);
        Assert.Throws<ArgumentException>(() => loops.Register("made_up_loop", null, null)); // the label set is bounded
    }

    [Fact]
    public async Task TimeoutHandler_MalformedRecordsOfEveryKind_LoggedCountedAndGoodRecordsStillHandled()
    {
        await using var h = Harness.Create(server);
        await using var db = await DedicatedDatabase.CreateAsync(server, h, DedicatedDatabase.LoopHealthTests);
        var recovery = new RecoveryMetrics(h.Registry);
        var options = new RecoveryOptions
        {
            EnableHeartbeatMonitoring = false, // the batch cleanup and the stuck-wait/deadlock loops are under test here
            StuckWaitGrace = TimeSpan.FromMilliseconds(100),
            CleanupInterval = TimeSpan.FromMilliseconds(150),
            CleanupStaleThresholdSeconds = 60,
        };
        var database = db.Database;
        var now = await RedisKit.NowAsync(database);

        // Batch cleanup: a heartbeat whose timestamp has 25 digits (long.Parse threw and ended the loop), and a good stale one.
        const string overflow = "bad-timestamp";
        await database.StringSetAsync(Keys.Heartbeat(overflow), "{\"coordinatorId\":\"bad-timestamp\",\"timestamp\":1234567890123456789012345}");
        const string gone = "good-stale";
        var old = now - 3_600_000;
        await database.SortedSetAddAsync(Keys.Registry, gone, old);
        await database.StringSetAsync(Keys.Heartbeat(gone), $"{{\"coordinatorId\":\"gone\",\"timestamp\":{old}}}");
        await database.StringSetAsync(Keys.Activity(gone), "{}");

        // Stuck waits and deadlocks (fresh heartbeats, overdue waits): bad JSON, a wrong Redis type, an invalid waitingFor
        // ID, and a good pair that waits for each other.
        var blocking = $"{{\"coordinatorId\":\"x\",\"swarmId\":\"s\",\"lastActivity\":{now},\"status\":\"blocking\",\"blockingSince\":{now - 60_000},\"timeoutMs\":1000,\"waitingForSignal\":\"s\",\"waitingFor\":";
        foreach (var (id, activity) in new[]
                 {
                     ("bad-json", "{\"status\":\"blocking\","),
                     ("wrong-shape", "[1,2,3]"),
                     ("bad-waiting-for", blocking + "\"has space,also\"}"),
                     ("cycle-a", blocking + "\"cycle-b\"}"),
                     ("cycle-b", blocking + "\"cycle-a\"}"),
                 })
        {
            await database.SortedSetAddAsync(Keys.Registry, id, now + 60_000);
            await database.SortedSetAddAsync(Keys.Deadlines, id, now - 60_000);
            await database.StringSetAsync(Keys.Activity(id), activity);
        }

        await database.SortedSetAddAsync(Keys.Registry, "wrong-type", now + 60_000);
        await database.SortedSetAddAsync(Keys.Deadlines, "wrong-type", now - 60_000);
        await database.ListRightPushAsync(Keys.Activity("wrong-type"), "not a string");
        await database.SortedSetAddAsync(Keys.Deadlines, "bad id!", now - 60_000); // an ID read back that names no key

        await using var handler = new TimeoutHandler(db.Redis, h.Keys, options, h.Metrics, recovery, TestIds.New("handler"));
        handler.Start();

        // Both loops complete passes again and again over the same bad records.
        Assert.True(await EventuallyAsync(() => Task.FromResult(
            db.Redis.Loops.Snapshot().Count(s => s.Loop is LoopNames.StuckWaits or LoopNames.BatchCleanup && s.Passes >= 3) == 2),
            TimeSpan.FromSeconds(15)));
        Assert.All(db.Redis.Loops.Snapshot(), s => Assert.Equal(LoopStatus.Running, s.State));
        Assert.Equal(0, db.Redis.Loops.Errors.WithLabels(LoopNames.StuckWaits, "pass").Value);
        Assert.Equal(0, db.Redis.Loops.Errors.WithLabels(LoopNames.BatchCleanup, "pass").Value);

        // The 25-digit timestamp: counted, said, skipped; the good stale coordinator was cleaned up in the same run.
        Assert.True(recovery.MalformedValues.WithLabels("heartbeat").Value >= 1);
        Assert.NotEmpty(RecoveryKit.Lines(h, "Invalid or missing heartbeat for coordinator: bad-timestamp"));
        Assert.NotEmpty(RecoveryKit.Lines(h, "Deleted", "keys for coordinator good-stale"));
        Assert.False(await database.KeyExistsAsync(Keys.Heartbeat(gone)));

        // Bad JSON and the wrong type: counted as malformed activity; the invalid waitingFor ID: skipped by the deadlock check.
        Assert.True(recovery.MalformedValues.WithLabels("activity").Value >= 3);
        Assert.NotEmpty(RecoveryKit.Lines(h, "Malformed activity record skipped coordinator=bad-json"));
        Assert.NotEmpty(RecoveryKit.Lines(h, "Malformed activity record skipped coordinator=wrong-shape"));
        Assert.Null(await database.SortedSetScoreAsync(Keys.Deadlines, "bad id!"));
        Assert.NotEmpty(RecoveryKit.Lines(h, "Malformed activity record skipped coordinator=wrong-type"));
        Assert.NotEmpty(RecoveryKit.Lines(h, "Malformed activity record key=coordinator:activity:bad-waiting-for", "waitingFor holds an invalid ID"));
        Assert.True(handler.Deadlocks.MalformedValues >= 1);

        // The good records of the same passes: the cycle is found and the good overdue waits reported.
        var deadlock = Assert.Single(handler.LastDeadlocks!.Deadlocks);
        Assert.Equal(["cycle-a", "cycle-b"], deadlock.Coordinators.Order(StringComparer.Ordinal));
        Assert.NotEmpty(RecoveryKit.Lines(h, "Coordinator timeout detected coordinator=cycle-a"));
    }

    [Fact]
    public async Task SwarmManager_MalformedSpawnRequests_SkippedLoggedOnceCountedAndPassesComplete()
    {
        await using var h = Harness.Create(server);
        await using var db = await DedicatedDatabase.CreateAsync(server, h, DedicatedDatabase.LoopHealthTests);
        var database = db.Database;
        var now = await RedisKit.NowAsync(database);
        var local = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        // Bad JSON, a bad ID inside good JSON, and a good pending request for a swarm nobody runs.
        await database.StringSetAsync(Keys.Spawn("bad-json"), "{\"newCoordinatorId\":");
        await database.StringSetAsync(Keys.Spawn("bad-id"), Json.Serialize(new SpawnRequest
        {
            NewCoordinatorId = "bad-id", SwarmId = "has space", Timestamp = local, UpdatedAt = local, Status = SpawnStatus.Pending, Reason = "scale_up",
        }));
        await database.StringSetAsync(Keys.Spawn("good-one"), Json.Serialize(new SpawnRequest
        {
            NewCoordinatorId = "good-one", SwarmId = "swarm-good", Timestamp = local, UpdatedAt = local, Status = SpawnStatus.Pending, Reason = "scale_up",
        }));
        foreach (var id in new[] { "bad-json", "bad-id", "good-one" })
        {
            await database.SortedSetAddAsync(Keys.SpawnIndex, id, now);
        }

        var snapshot = await SwarmSnapshot.LoadAsync(database, 60_000, local - 60_000);
        Assert.Equal(["good-one"], snapshot.Requests.Select(r => r.NewCoordinatorId));

        await using var manager = new SwarmManager(db.Redis, new SwarmManagerOptions(), new RecoveryOptions(), new SwarmMetrics(h.Registry),
            TestIds.New("manager"));
        await manager.RunOnceAsync();
        await manager.RunOnceAsync();

        Assert.Equal(2, db.Redis.Loops.Errors.WithLabels(LoopNames.SwarmManager, "item").Value); // once per key, not per pass
        Assert.Single(RecoveryKit.Lines(h, "Background loop skipped a record loop=swarm_manager key=coordinator:spawn:bad-json", "malformed"));
        Assert.Single(RecoveryKit.Lines(h, "Background loop skipped a record loop=swarm_manager key=coordinator:spawn:bad-id"));
    }
}
