using System.Globalization;
using System.Text.Json;
using Cfn.Coordination.Detection;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Signals;

using Cfn.Coordination.Tests.Infrastructure;
using StackExchange.Redis;

namespace Cfn.Coordination.Tests.Recovery;

/// <summary>
/// Malformed values in Redis (SPEC §2.9 "raise events instead of throwing", W24; §7.9 item 10; §7.14 item 3 in spirit):
/// the monitor, the stuck-wait check and the escalation log and count what they cannot read
/// (<c>monitor_malformed_values_total{key_type}</c>) and keep handling every other coordinator in the same pass. The
/// monitor tests use a database of their own so a pass sees exactly the coordinators planted here.
/// </summary>
[Collection(RedisCollection.Name)]
public sealed class MalformedStateTests(RedisServer server)
{
    private static readonly JsonSerializerOptions WebJson = new(JsonSerializerDefaults.Web);

    /// <summary>A dead-looking coordinator: registry score and K1 both <paramref name="ageMs"/> old, its swarm recorded.</summary>
    private static async Task PlantStaleAsync(IDatabase db, string id, string swarm, long now, long ageMs)
    {
        var ts = now - ageMs;
        await db.SortedSetAddAsync(Keys.Registry, id, ts);
        await db.HashSetAsync(Keys.Swarms, id, swarm);
        await db.StringSetAsync(Keys.Heartbeat(id), string.Create(CultureInfo.InvariantCulture,
            $"{{\"coordinatorId\":\"{id}\",\"swarmId\":\"{swarm}\",\"timestamp\":{ts},\"lastHeartbeat\":{ts},\"sequence\":1,\"instanceId\":\"x\",\"epoch\":1,\"status\":\"idle\"}}"),
            TimeSpan.FromMinutes(10));
    }

    [Fact]
    public async Task Monitor_MalformedHeartbeatJson_CountedAndOtherCoordinatorDeclaredDeadInSamePass()
    {
        await using var h = Harness.Create(server);
        await using var db = await DedicatedDatabase.CreateAsync(server, h, DedicatedDatabase.MalformedStateTests);
        var recovery = new RecoveryMetrics(h.Registry);
        await using var handler = new TimeoutHandler(db.Redis, h.Keys, RecoveryKit.FastOptions(maxWarnings: 1), h.Metrics, recovery,
            TestIds.New("handler"));
        var now = await RedisKit.NowAsync(db.Database);
        var bad = TestIds.New("bad");
        var good = TestIds.New("good");
        var swarm = TestIds.New("swarm");
        await db.Database.SortedSetAddAsync(Keys.Registry, bad, now - 90_000); // older: judged first
        await db.Database.StringSetAsync(Keys.Heartbeat(bad), "{\"coordinatorId\":\"" + bad + "\",\"swarmId\":", TimeSpan.FromMinutes(10));
        await PlantStaleAsync(db.Database, good, swarm, now, 60_000);

        var pass = await handler.Monitor.RunOnceAsync();

        Assert.True(pass.RedisAvailable);
        Assert.Contains(pass.Deaths, d => d.CoordinatorId == good && d.SwarmId == swarm);
        var badDeath = Assert.Single(pass.Deaths, d => d.CoordinatorId == bad);
        Assert.Equal("unknown", badDeath.SwarmId);
        Assert.Equal(1, recovery.MalformedValues.WithLabels("heartbeat").Value);
        Assert.Single(RecoveryKit.Lines(h, "Heartbeat key exists but data is malformed", bad));
        Assert.Equal(EscalationOutcome.Escalated, pass.Deaths.Single(d => d.CoordinatorId == good).Escalation?.Outcome);
    }

    [Fact]
    public async Task Monitor_HeartbeatKeyOfWrongType_OtherCoordinatorsStillDeclaredDead()
    {
        // A K1 that is not a string (e.g. an operator's mistake, or a foreign writer) must be skipped like malformed
        // JSON, not end every pass: otherwise no coordinator is ever declared dead again while it exists.
        await using var h = Harness.Create(server);
        await using var db = await DedicatedDatabase.CreateAsync(server, h, DedicatedDatabase.MalformedStateTests);
        var recovery = new RecoveryMetrics(h.Registry);
        await using var handler = new TimeoutHandler(db.Redis, h.Keys, RecoveryKit.FastOptions(), h.Metrics, recovery, TestIds.New("handler"));
        var now = await RedisKit.NowAsync(db.Database);
        var wrongType = TestIds.New("hash");
        var good = TestIds.New("good");
        await db.Database.SortedSetAddAsync(Keys.Registry, wrongType, now - 90_000);
        await db.Database.HashSetAsync(Keys.Heartbeat(wrongType), "timestamp", now - 90_000);
        await PlantStaleAsync(db.Database, good, TestIds.New("swarm"), now, 60_000);

        var (death, _) = await RecoveryKit.RunUntilDeadAsync(h, handler.Monitor, good, TimeSpan.FromSeconds(6));

        Assert.True(death is not null,
            $"{good} was never declared dead; passes: ok={recovery.MonitorPasses.WithLabels("ok").Value}, " +
            $"redis_unavailable={recovery.MonitorPasses.WithLabels("redis_unavailable").Value}; last log: {(h.Messages.Count > 0 ? h.Messages[^1] : "none")}");
    }

    [Fact]
    public async Task StuckWaits_MalformedActivityJson_CountedAndOtherWaitReportedInSameCheck()
    {
        await using var h = Harness.Create(server);
        await using var db = await DedicatedDatabase.CreateAsync(server, h, DedicatedDatabase.MalformedStateTests);
        var recovery = new RecoveryMetrics(h.Registry);
        var options = new RecoveryOptions { StuckWaitGrace = TimeSpan.FromMilliseconds(200), HeartbeatStaleThreshold = TimeSpan.FromSeconds(30) };
        var detector = new StuckWaitDetector(db.Redis, options, h.Metrics, recovery);
        var now = await RedisKit.NowAsync(db.Database);
        var bad = TestIds.New("bad");
        var good = TestIds.New("good");
        var swarm = TestIds.New("swarm");
        await db.Database.SortedSetAddAsync(Keys.Registry, [new SortedSetEntry(bad, now), new SortedSetEntry(good, now)]); // both alive
        await db.Database.StringSetAsync(Keys.Activity(bad), "{\"coordinatorId\":", TimeSpan.FromMinutes(10));
        await db.Database.SortedSetAddAsync(Keys.Deadlines, bad, now - 20_000); // overdue, and first in the index
        await Detection.StuckWaitDetectorTests.PlantWaitAsync(db.Database, good, swarm, $"{good}:peer-x:completion:1:1", now - 10_000, 300);

        var found = await detector.CheckAsync();

        Assert.Single(found, s => s.CoordinatorId == good);
        Assert.DoesNotContain(found, s => s.CoordinatorId == bad);
        Assert.Equal(1, recovery.MalformedValues.WithLabels("activity").Value);
        Assert.Single(RecoveryKit.Lines(h, "Malformed activity record skipped", bad));
        Assert.Equal(1, h.Metrics.TimeoutEvents.WithLabels(good, "blocking", "blocking").Value);
        Assert.Equal(0, h.Metrics.TimeoutEvents.WithLabels(bad, "blocking", "blocking").Value);
    }

    [Fact]
    public async Task StuckWaits_ActivityKeyOfWrongType_OtherWaitStillReported()
    {
        await using var h = Harness.Create(server);
        await using var db = await DedicatedDatabase.CreateAsync(server, h, DedicatedDatabase.MalformedStateTests);
        var recovery = new RecoveryMetrics(h.Registry);
        var options = new RecoveryOptions { StuckWaitGrace = TimeSpan.FromMilliseconds(200), HeartbeatStaleThreshold = TimeSpan.FromSeconds(30) };
        var detector = new StuckWaitDetector(db.Redis, options, h.Metrics, recovery);
        var now = await RedisKit.NowAsync(db.Database);
        var bad = TestIds.New("list");
        var good = TestIds.New("good");
        await db.Database.SortedSetAddAsync(Keys.Registry, [new SortedSetEntry(bad, now), new SortedSetEntry(good, now)]);
        await db.Database.ListRightPushAsync(Keys.Activity(bad), "not a string");
        await db.Database.SortedSetAddAsync(Keys.Deadlines, bad, now - 20_000);
        await Detection.StuckWaitDetectorTests.PlantWaitAsync(db.Database, good, TestIds.New("swarm"), $"{good}:peer-x:completion:1:1", now - 10_000, 300);

        var found = await detector.CheckAsync();

        Assert.Single(found, s => s.CoordinatorId == good);
    }

    [Fact]
    public async Task Escalation_MalformedWorkItemAndInboxEntry_CountedOthersHandedOver()
    {
        await using var h = Harness.Create(server);
        var recovery = new RecoveryMetrics(h.Registry);
        var options = new RecoveryOptions();
        var service = new EscalationService(h.Redis, h.Keys, options, recovery, new CoordinatorCleanup(h.Redis, options, recovery));
        var swarm = TestIds.New("swarm");
        var dead = await h.StartAsync(swarmId: swarm);
        var peer = await h.StartAsync(swarmId: swarm);
        await dead.Work.CreateAsync("good", JsonDocument.Parse("{\"n\":1}").RootElement);
        await h.Database.StringSetAsync(Keys.Work(swarm, dead.Id, "bad"), "[1,2", TimeSpan.FromMinutes(10));
        await h.Database.SetAddAsync(Keys.Owned(swarm, dead.Id), "bad"); // listed in its owner's index, as a real item would be
        var first = await peer.Signals.SendAsync(dead.Id, SignalTypes.Completion, 1);
        await h.Database.StreamAddAsync(Keys.Inbox(dead.Id), "signal", "{\"messageId\":");
        var last = await peer.Signals.SendAsync(dead.Id, SignalTypes.Completion, 2);
        await dead.AbandonAsync();
        var fence = await h.Database.StringIncrementAsync(Keys.Epoch(dead.Id));

        var result = await service.EscalateAsync(dead.Id, swarm, fence, dead.Heartbeats.LastSentAt, "handler-x");

        Assert.Equal(EscalationOutcome.Escalated, result.Outcome);
        Assert.Equal(1, result.Work!.Transferred);
        Assert.Equal(1, result.Work.Failed);
        Assert.Equal(2, result.SignalsHandedOver);
        Assert.Equal(1, recovery.MalformedValues.WithLabels("work").Value);
        Assert.Equal(1, recovery.MalformedValues.WithLabels("signal").Value);
        var newId = result.NewCoordinatorId!;
        Assert.True(await h.Database.KeyExistsAsync(Keys.Work(swarm, newId, "good")));
        var handed = await h.Database.StreamRangeAsync(Keys.Inbox(newId));
        Assert.Equal(2, handed.Length);
        var signals = handed.Select(e => JsonSerializer.Deserialize<Signal>((string)e["signal"]!, WebJson)!)
            .ToList();
        Assert.Equal([first.MessageId, last.MessageId], signals.Select(s => s.HandedOverFrom));
        Assert.All(signals, s => Assert.True(SignalSignatures.Verify(h.Keys, s)));
    }

    [Fact]
    public async Task Escalation_GarbageEscalationRecordLeftBehind_StillEscalates()
    {
        await using var h = Harness.Create(server);
        var recovery = new RecoveryMetrics(h.Registry);
        var options = new RecoveryOptions();
        var service = new EscalationService(h.Redis, h.Keys, options, recovery, new CoordinatorCleanup(h.Redis, options, recovery));
        var swarm = TestIds.New("swarm");
        var dead = await h.StartAsync(swarmId: swarm);
        await dead.AbandonAsync();
        await h.Database.StringSetAsync(Keys.Escalation(dead.Id), "not json at all", TimeSpan.FromMinutes(10));

        var result = await service.EscalateAsync(dead.Id, swarm, await h.Database.StringIncrementAsync(Keys.Epoch(dead.Id)),
            dead.Heartbeats.LastSentAt, "handler-x");

        Assert.Equal(EscalationOutcome.Escalated, result.Outcome);
        using var k8 = JsonDocument.Parse((string)(await h.Database.StringGetAsync(Keys.Escalation(dead.Id)))!);
        Assert.Equal(result.NewCoordinatorId, k8.RootElement.GetProperty("newCoordinatorId").GetString());
    }
}
