using Cfn.Coordination.Inspection;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Resilience;
using Cfn.Coordination.Tests.Infrastructure;
using StackExchange.Redis;

namespace Cfn.Coordination.Tests.Inspection;

/// <summary>
/// The operators' read model against a real redis-server, in a database of its own (it reads the global registry, health
/// hash, spawn index and deadlines index): real coordinators and records planted as the library writes them, and
/// malformed values, which are skipped (or, for locks, shown with their error) with one log line naming the key.
/// </summary>
[Collection(RedisCollection.Name)]
public sealed class CoordinationInspectorTests(RedisServer server)
{
    private const string Skipped = "Inspection skipped a malformed record";

    private static EscalationRecord Escalation(string dead, string swarm, string replacement, long now, string step, long leaseUntil) => new()
    {
        DeadCoordinatorId = dead,
        SwarmId = swarm,
        Timestamp = now - 5_000,
        Status = EscalationStatus.Escalated,
        NewCoordinatorId = replacement,
        FencingToken = 7,
        Step = step,
        LeaseOwner = "handler-1",
        LeaseUntil = leaseUntil,
    };

    [Fact]
    public async Task ReadStatus_RealCoordinatorsAndPlantedRecords_EveryPartReadAndMalformedOnesSkippedWithALogLine()
    {
        await using var h = Harness.Create(server);
        await using var db = await DedicatedDatabase.CreateAsync(server, h, DedicatedDatabase.InspectionTests);
        var options = new RecoveryOptions();
        var parent = await db.StartAsync(h, "parent-1", "swarm-a");
        var child = await db.StartAsync(h, "child-1", "swarm-a");
        var checker = await db.StartAsync(h, "checker-1", Keys.ValidatorSwarm);
        using var cts = new CancellationTokenSource();
        var wait = parent.Waiter.WaitForAcksAsync(["child-1"], "parent-1:child-1:validation:1:x", TimeSpan.FromSeconds(30), cts.Token);
        Assert.True(await EventuallyAsync(async () =>
            ((string?)await db.Database.StringGetAsync(Keys.Activity("parent-1")))?.Contains("blocking", StringComparison.Ordinal) == true,
            TimeSpan.FromSeconds(10)));

        var now = await RedisTime.NowMsAsync(db.Database);
        // A stale member with the monitor's warnings, one with an unreadable health entry, one with an unreadable activity record.
        await db.Database.SortedSetAddAsync(Keys.Registry, "stale-1", now - 600_000);
        await db.Database.HashSetAsync(Keys.Swarms, "stale-1", "swarm-a");
        await db.Database.HashSetAsync(Keys.Health, "stale-1", $"2|{now - 1_000}|warning");
        await db.Database.HashSetAsync(Keys.Health, "child-1", "two warnings");
        await db.Database.StringSetAsync(Keys.Activity("checker-1"), "{\"coordinatorId\":");

        // A replacement requested for dead-1 (its escalation running under a live lease), and dead-2 declared dead with a
        // malformed escalation record.
        var spawns = new SpawnRequests(db.Database, h.Redis.Time, options.EscalationTtlSeconds);
        Assert.True(await spawns.CreateAsync(new SpawnRequest
        {
            NewCoordinatorId = "repl-1", ReplacesCoordinatorId = "dead-1", SwarmId = "swarm-a", Timestamp = now - 3_000,
            Status = SpawnStatus.Pending, Reason = "coordinator_timeout", UpdatedAt = now - 3_000,
        }));
        await db.Database.StringSetAsync(Keys.Escalation("dead-1"),
            Json.Serialize(Escalation("dead-1", "swarm-a", "repl-1", now, EscalationSteps.Locked, now + 20_000)));
        await db.Database.HashSetAsync(Keys.Health, "dead-2", $"3|{now}|dead");
        await db.Database.StringSetAsync(Keys.Escalation("dead-2"), "not json");

        var breakers = new CircuitBreakerRegistry(Prometheus.Metrics.NewCustomRegistry());
        _ = breakers.Redis;
        await using var publisher = new BreakerStatePublisher(breakers, db.Database, "process-1", "coordinator");
        await publisher.PublishAsync();

        var status = await new CoordinationInspector(db.Redis, options).ReadStatusAsync();
        await cts.CancelAsync();
        await wait;

        Assert.InRange(status.Now, now, now + 60_000);
        var parentRow = Assert.Single(status.Coordinators, c => c.CoordinatorId == "parent-1");
        Assert.Equal("swarm-a", parentRow.SwarmId);
        Assert.False(parentRow.Stale);
        Assert.True(parentRow.Blocking);
        Assert.Equal("child-1", parentRow.Activity!.WaitingFor);
        Assert.Equal("parent-1:child-1:validation:1:x", parentRow.Activity.WaitingForSignal);
        var stale = Assert.Single(status.Coordinators, c => c.CoordinatorId == "stale-1");
        Assert.True(stale.Stale);
        Assert.InRange(stale.HeartbeatAgeMs, 600_000, 700_000);
        Assert.Equal(new HealthWarnings(2, now - 1_000, "warning"), stale.Health);
        Assert.Null(Assert.Single(status.Coordinators, c => c.CoordinatorId == "child-1").Health);
        var validator = Assert.Single(status.Coordinators, c => c.CoordinatorId == "checker-1");
        Assert.True(validator.IsValidator);
        Assert.Null(validator.Activity);
        Assert.Equal([new SwarmSummary("swarm-a", 2, 1, 1), new SwarmSummary(Keys.ValidatorSwarm, 1, 0, 0)],
            status.Swarms.OrderBy(s => s.SwarmId == Keys.ValidatorSwarm).ToList());

        var request = Assert.Single(status.SpawnRequests);
        Assert.Equal(("repl-1", "dead-1"), (request.NewCoordinatorId, request.ReplacesCoordinatorId));
        var open = Assert.Single(status.Escalations);
        Assert.Equal("dead-1", open.Record.DeadCoordinatorId);
        Assert.Equal("running", open.State);
        Assert.InRange(open.LeaseLeftMs!.Value, 1, 20_000);
        var report = Assert.Single(status.Breakers);
        Assert.Equal(("process-1", "closed"), (report.ProcessId, report.Breakers["redis"]));

        Assert.Single(RecoveryKit.Lines(h, Skipped, "coordinator:health[child-1]"));
        Assert.Single(RecoveryKit.Lines(h, Skipped, (string)Keys.Activity("checker-1")!));
        Assert.Single(RecoveryKit.Lines(h, Skipped, (string)Keys.Escalation("dead-2")!));
    }

    [Fact]
    public async Task ReadOpenEscalations_LeaseRunOutOrStepsDone_StuckOrWaitingForReplacement_FinalOnesLeftOut()
    {
        await using var h = Harness.Create(server);
        await using var db = await DedicatedDatabase.CreateAsync(server, h, DedicatedDatabase.InspectionTests);
        var now = await RedisTime.NowMsAsync(db.Database);
        foreach (var id in new[] { "stuck-1", "cleaned-1", "over-1" })
        {
            await db.Database.HashSetAsync(Keys.Health, id, $"3|{now}|dead");
        }

        await db.Database.StringSetAsync(Keys.Escalation("stuck-1"),
            Json.Serialize(Escalation("stuck-1", "swarm-a", "r-1", now, EscalationSteps.WorkTransferred, now - 1_000)));
        await db.Database.StringSetAsync(Keys.Escalation("cleaned-1"),
            Json.Serialize(Escalation("cleaned-1", "swarm-a", "r-2", now, EscalationSteps.Cleaned, 0)));
        await db.Database.StringSetAsync(Keys.Escalation("over-1"),
            Json.Serialize(Escalation("over-1", "swarm-a", "r-3", now, EscalationSteps.Cleaned, 0) with { Status = EscalationStatus.Replaced }));

        var open = await new CoordinationInspector(db.Redis).ReadOpenEscalationsAsync();

        Assert.Equal([("cleaned-1", "waiting-for-replacement", (long?)null), ("stuck-1", "stuck", null)],
            open.Select(e => (e.Record.DeadCoordinatorId, e.State, e.LeaseLeftMs)).ToList());
    }

    [Fact]
    public async Task ReadLocks_EscalationCleanupLockAndWorkItems_MalformedOnesShownWithTheirErrorAndLogged()
    {
        await using var h = Harness.Create(server);
        await using var db = await DedicatedDatabase.CreateAsync(server, h, DedicatedDatabase.InspectionTests);
        var coordinator = await db.StartAsync(h, "locked-1", "swarm-l");
        var now = await RedisTime.NowMsAsync(db.Database);
        Assert.NotNull((await coordinator.Work.CreateAsync("w-1")).Item);
        await db.Database.StringSetAsync(Keys.Work("swarm-l", "locked-1", "w-bad"), "{broken");
        // locked-1 replaces old-1: its spawn request names it, and old-1's escalation record is unreadable.
        await db.Database.StringSetAsync(Keys.Spawn("locked-1"), Json.Serialize(new SpawnRequest
        {
            NewCoordinatorId = "locked-1", ReplacesCoordinatorId = "old-1", SwarmId = "swarm-l", Timestamp = now,
            Status = SpawnStatus.Spawning, Reason = "coordinator_timeout", UpdatedAt = now,
        }));
        await db.Database.StringSetAsync(Keys.Escalation("old-1"), "[]", TimeSpan.FromMinutes(5));
        await db.Database.StringSetAsync(Keys.Escalation("locked-1"),
            Json.Serialize(Escalation("locked-1", "swarm-l", "next-1", now, EscalationSteps.Locked, now + 5_000)), TimeSpan.FromMinutes(10));
        await db.Database.StringSetAsync(Keys.CleanupLock, "token-1", TimeSpan.FromSeconds(30));

        var locks = await CoordinationInspector.ReadLocksAsync(coordinator);

        Assert.Equal(("locked-1", coordinator.Epoch, coordinator.Epoch, false), (locks.CoordinatorId, locks.Epoch, locks.CurrentEpoch, locks.Superseded));
        Assert.Equal(["declared_dead", "replacement"], locks.Escalations.Select(e => e.Role));
        var own = locks.Escalations[0];
        Assert.Equal(("next-1", 7L, (string?)null), (own.Record!.NewCoordinatorId, own.Record.FencingToken, own.Error));
        Assert.InRange(own.TtlMs!.Value, 1, 600_000);
        var replaced = locks.Escalations[1];
        Assert.Equal((string)Keys.Escalation("old-1")!, replaced.Key);
        Assert.Null(replaced.Record);
        Assert.NotNull(replaced.Error);
        Assert.True(locks.CleanupLock.Held);
        Assert.Equal("token-1", locks.CleanupLock.Token);
        Assert.InRange(locks.CleanupLock.TtlMs!.Value, 1, 30_000);
        var good = Assert.Single(locks.WorkFences, f => f.Item is not null);
        Assert.Equal(("w-1", "locked-1", coordinator.Epoch), (good.Item!.WorkId, good.Item.AssignedTo, good.Item.OwnerEpoch));
        var bad = Assert.Single(locks.WorkFences, f => f.Item is null);
        Assert.Equal((string)Keys.Work("swarm-l", "locked-1", "w-bad")!, bad.Key);
        Assert.NotNull(bad.Error);
        Assert.Single(RecoveryKit.Lines(h, Skipped, bad.Key));
        Assert.Single(RecoveryKit.Lines(h, Skipped, replaced.Key));

        // A newer epoch in Redis means this instance is superseded, whether or not it knows yet.
        await db.Database.StringIncrementAsync(Keys.Epoch("locked-1"));
        Assert.True((await CoordinationInspector.ReadLocksAsync(coordinator)).Superseded);
    }

    [Fact]
    public async Task ReadBlockingActivity_DeadlineMembers_RecordsNamedByTheirKeyAndUnreadableOnesSkipped()
    {
        await using var h = Harness.Create(server);
        await using var db = await DedicatedDatabase.CreateAsync(server, h, DedicatedDatabase.InspectionTests);
        var waiter = await db.StartAsync(h, "waiter-1", "swarm-w");
        using var cts = new CancellationTokenSource();
        var wait = waiter.Waiter.WaitForAcksAsync(["peer-1"], "waiter-1:peer-1:validation:1:x", TimeSpan.FromSeconds(30), cts.Token);
        var inspector = new CoordinationInspector(db.Redis);
        Assert.True(await EventuallyAsync(async () => (await inspector.ReadBlockingActivityAsync()).Count == 1, TimeSpan.FromSeconds(10)));
        var now = await RedisTime.NowMsAsync(db.Database);
        await db.Database.SortedSetAddAsync(Keys.Deadlines, "garbled-1", now + 10_000);
        await db.Database.StringSetAsync(Keys.Activity("garbled-1"), "{");
        await db.Database.SortedSetAddAsync(Keys.Deadlines, "no bad ids", now + 10_000);
        await db.Database.SortedSetAddAsync(Keys.Deadlines, "gone-1", now + 10_000); // its record expired: nothing to show

        var records = await inspector.ReadBlockingActivityAsync();
        await cts.CancelAsync();
        await wait;

        var record = Assert.Single(records);
        Assert.Equal(("waiter-1", "blocking", "peer-1"), (record.CoordinatorId, record.Status, record.WaitingFor));
        Assert.Single(RecoveryKit.Lines(h, Skipped, (string)Keys.Activity("garbled-1")!));
        Assert.Single(RecoveryKit.Lines(h, Skipped, "no bad ids"));
        Assert.Empty(RecoveryKit.Lines(h, Skipped, "gone-1"));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => inspector.ReadBlockingActivityAsync(0));
    }

    [Fact]
    public async Task Describe_RunningWait_StateShowsItWithHeartbeatAndBreakers()
    {
        await using var h = Harness.Create(server);
        var coordinator = await h.StartAsync();
        using var cts = new CancellationTokenSource();
        var wait = coordinator.Waiter.WaitForAcksAsync(["peer-1"], coordinator.Id + ":peer-1:validation:1:x", TimeSpan.FromSeconds(30), cts.Token);
        Assert.True(await EventuallyAsync(() => Task.FromResult(CoordinationInspector.Describe(coordinator).RunningWaits == 1),
            TimeSpan.FromSeconds(10)));

        var state = CoordinationInspector.Describe(coordinator);
        var activity = CoordinationInspector.CurrentActivity(coordinator);
        await cts.CancelAsync();
        await wait;

        Assert.Equal((coordinator.Id, coordinator.Epoch, "blocking"), (state.CoordinatorId, state.Epoch, state.Status));
        Assert.Equal(["peer-1"], state.OldestWait!.WaitingFor);
        Assert.Equal((string)coordinator.HeartbeatKey!, state.Heartbeat.Key);
        Assert.Equal((long)h.Options.HeartbeatInterval.TotalMilliseconds, state.Heartbeat.IntervalMs);
        Assert.Equal("closed", state.Breakers["redis"]);
        Assert.Equal(("blocking", "peer-1"), (activity.Status, activity.WaitingFor));
        Assert.Equal("idle", CoordinationInspector.Describe(coordinator).Status);
    }
}
