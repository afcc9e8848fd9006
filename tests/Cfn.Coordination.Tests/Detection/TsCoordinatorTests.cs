using System.Globalization;
using Cfn.Coordination.Detection;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Tests.Infrastructure;
using StackExchange.Redis;
using Xunit.Abstractions;

namespace Cfn.Coordination.Tests.Detection;

/// <summary>
/// TS coordinators in a mixed fleet (issue 16, CFN_TS_COMPAT, SPEC D13, D5): they heartbeat K1 on their own clock and
/// never write the registry. Their heartbeats are written here with plain Redis commands, exactly as the TS code does
/// (<c>SETEX blocking:heartbeat:{id} 300 {"coordinatorId","lastHeartbeat","sequence","iteration","metadata"}</c>).
/// Each test has a database of its own (58 with the option on, 59 with it off): the watch keys are global.
/// </summary>
[Collection(RedisCollection.Name)]
public sealed class TsCoordinatorTests(RedisServer server, ITestOutputHelper output)
{
    private const int StaleMs = 500;
    private const int IntervalMs = 100;
    private static readonly TimeSpan FiveMinutes = TimeSpan.FromMinutes(5);

    /// <summary>Twice the 700 ms it takes a silent coordinator to die under <see cref="RecoveryKit.FastOptions"/>, plus one interval.</summary>
    private static readonly TimeSpan NeverDeadWindow = (2 * RecoveryKit.FastOptions().DeathAfter) + RecoveryKit.FastOptions().MonitorInterval;

    [Fact]
    public async Task Monitor_TsHeartbeatKeepsChangingWithSkewedClock_NeverWarnedThenDiesOnceItStops()
    {
        await using var h = Harness.Create(server, o => o.TsCompat = true);
        await using var db = await DedicatedDatabase.CreateAsync(server, h, DedicatedDatabase.TsCompatTests);
        await using var handler = new TimeoutHandler(db.Redis, h.Keys, RecoveryKit.FastOptions(), h.Metrics, new RecoveryMetrics(h.Registry), TestIds.New("handler"));
        var past = TestIds.New("ts");
        var future = TestIds.New("ts");
        var wallNow = DateTimeOffset.UtcNow;
        await TsCoordinators.DiscoverAsync(db.Database, [(past, null), (future, null)]);

        // Beating every ~50 ms with lastHeartbeat five minutes behind and five minutes ahead of the real time.
        var sequence = 0;
        var until = DateTime.UtcNow + NeverDeadWindow;
        while (DateTime.UtcNow < until)
        {
            sequence++;
            await WriteTsAsync(db.Database, past, wallNow - FiveMinutes, sequence);
            await WriteTsAsync(db.Database, future, wallNow + FiveMinutes, sequence);
            var pass = await handler.Monitor.RunOnceAsync();
            Assert.Empty(pass.Deaths);
            await Task.Delay(50);
        }

        Assert.Empty(RecoveryKit.Lines(h, "Stale heartbeat detected"));
        Assert.Empty(RecoveryKit.Lines(h, "malformed"));
        // Watched, and scored on the Redis clock, not by lastHeartbeat.
        var redisNow = await RedisKit.NowAsync(db.Database);
        foreach (var id in new[] { past, future })
        {
            var score = await db.Database.SortedSetScoreAsync(Keys.TsCoordinators, id);
            Assert.NotNull(score);
            Assert.InRange(redisNow - (long)score.Value, 0, 1000);
            Assert.Equal(
                string.Create(CultureInfo.InvariantCulture, $"{(id == past ? wallNow - FiveMinutes : wallNow + FiveMinutes).ToUnixTimeMilliseconds()}:{sequence}"),
                (string?)await db.Database.HashGetAsync(Keys.TsHeartbeats, id));
        }

        // A clock five minutes ahead does not hide a death: the one that stops writing dies; the other lives on.
        var (death, _) = await RunUntilDeadWhileBeatingAsync(db, handler, future, past, wallNow - FiveMinutes, sequence);
        Assert.NotNull(death);
        Assert.Empty(RecoveryKit.Lines(h, "Stale heartbeat detected", $"coordinator={past} "));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Monitor_TsHeartbeatStops_WarnedThenDeadOnTimeEscalatedAndEveryKeyGone(bool keyExpires)
    {
        await using var h = Harness.Create(server, o => o.TsCompat = true);
        await using var db = await DedicatedDatabase.CreateAsync(server, h, DedicatedDatabase.TsCompatTests);
        var recovery = new RecoveryMetrics(h.Registry);
        await using var handler = new TimeoutHandler(db.Redis, h.Keys, RecoveryKit.FastOptions(), h.Metrics, recovery, TestIds.New("handler"));
        var id = TestIds.New("ts");
        var swarm = TestIds.New("swarm");
        // lastHeartbeat ten minutes old: judged by it, the coordinator would die at once.
        await WriteTsAsync(db.Database, id, DateTimeOffset.UtcNow - TimeSpan.FromMinutes(10), 42);
        Assert.Equal(1, await TsCoordinators.DiscoverAsync(db.Database, [(id, swarm)]));
        await handler.Monitor.RunOnceAsync();
        var lastSeen = (long)(await db.Database.SortedSetScoreAsync(Keys.TsCoordinators, id))!.Value;
        if (keyExpires)
        {
            Assert.True(await db.Database.KeyDeleteAsync(Keys.Heartbeat(id)));
        }

        var (death, seenAt) = await RecoveryKit.RunUntilDeadAsync(h, handler.Monitor, id, TimeSpan.FromSeconds(10));

        Assert.NotNull(death);
        output.WriteLine($"dead {seenAt - lastSeen} ms after its heartbeat was last seen to change (bound {StaleMs + (2 * IntervalMs)} ms + one pass)");
        // Dead after threshold + (maxWarnings − 1) × interval from the change last seen, and within one more pass (+ slack).
        Assert.True(seenAt - lastSeen >= StaleMs + (2 * IntervalMs), $"dead {seenAt - lastSeen} ms after its heartbeat was last seen to change");
        Assert.True(seenAt - lastSeen <= StaleMs + (3 * IntervalMs) + 2500, $"dead only {seenAt - lastSeen} ms after its heartbeat was last seen to change");
        Assert.Equal(3, death.Warnings);
        Assert.Equal(swarm, death.SwarmId); // from its discovery: a TS K1 names no swarm
        var stale = RecoveryKit.Lines(h, "Stale heartbeat detected", $"coordinator={id} ");
        Assert.Equal(2, stale.Count);
        Assert.Single(RecoveryKit.Lines(h, "Marking coordinator as DEAD", $"coordinator={id} "));
        Assert.Empty(RecoveryKit.Lines(h, "malformed", id));
        Assert.Equal(1, h.Metrics.TimeoutEvents.WithLabels(id, "heartbeat", "heartbeat").Value);
        Assert.Equal(1, recovery.DeadCoordinators.WithLabels(swarm).Value);
        Assert.Equal(EscalationOutcome.Escalated, death.Escalation?.Outcome);
        var replacement = death.Escalation!.NewCoordinatorId!;
        var spawn = (string?)await db.Database.StringGetAsync(Keys.Spawn(replacement));
        Assert.NotNull(spawn);
        Assert.Contains($"\"replacesCoordinatorId\":\"{id}\"", spawn, StringComparison.Ordinal);

        // It left the watch as a cfn coordinator leaves the registry, and nothing of it is left under blocking:.
        Assert.Null(await db.Database.SortedSetScoreAsync(Keys.TsCoordinators, id));
        Assert.False(await db.Database.HashExistsAsync(Keys.TsHeartbeats, id));
        Assert.False(await db.Database.KeyExistsAsync(Keys.Heartbeat(id)));
        Assert.False(await db.Database.HashExistsAsync(Keys.Health, id));
        Assert.Empty(await ScanAsync(db, $"blocking:*{id}*"));

        // Later passes judge it no more (no dead_already forever).
        for (var i = 0; i < 3; i++)
        {
            Assert.Empty((await handler.Monitor.RunOnceAsync()).Deaths);
            await Task.Delay(IntervalMs);
        }

        Assert.Single(RecoveryKit.Lines(h, "Marking coordinator as DEAD", $"coordinator={id} "));
    }

    [Fact]
    public async Task Monitor_TsHeartbeatStopsAutoEscalationOff_GivenUpWithoutReplacementAndNotFoundAgain()
    {
        await using var h = Harness.Create(server, o => o.TsCompat = true);
        await using var db = await DedicatedDatabase.CreateAsync(server, h, DedicatedDatabase.TsCompatTests);
        var options = RecoveryKit.FastOptions();
        options.EnableAutoEscalation = false;
        await using var handler = new TimeoutHandler(db.Redis, h.Keys, options, h.Metrics, new RecoveryMetrics(h.Registry), TestIds.New("handler"));
        var id = TestIds.New("ts");
        await WriteTsAsync(db.Database, id, DateTimeOffset.UtcNow, 1);
        Assert.Equal(1, await handler.DiscoverTsCoordinatorsAsync());

        var (death, _) = await RecoveryKit.RunUntilDeadAsync(h, handler.Monitor, id, TimeSpan.FromSeconds(10));

        Assert.NotNull(death);
        Assert.Null(death.Escalation);
        Assert.Equal("unknown", death.SwarmId);
        Assert.Single(RecoveryKit.Lines(h, "Auto escalation disabled", $"coordinator={id}"));
        Assert.Empty(await db.Database.SortedSetRangeByRankAsync(Keys.SpawnIndex));
        Assert.Null(await db.Database.SortedSetScoreAsync(Keys.TsCoordinators, id));
        Assert.False(await db.Database.HashExistsAsync(Keys.TsHeartbeats, id));
        // Its frozen K1 went with it (as TS's own dead-coordinator cleanup does), so the scan does not find it again.
        Assert.False(await db.Database.KeyExistsAsync(Keys.Heartbeat(id)));
        Assert.Equal(0, await handler.DiscoverTsCoordinatorsAsync());
        for (var i = 0; i < 3; i++)
        {
            Assert.Empty((await handler.Monitor.RunOnceAsync()).Deaths);
            await Task.Delay(IntervalMs);
        }

        Assert.Single(RecoveryKit.Lines(h, "Marking coordinator as DEAD", $"coordinator={id} "));
    }

    [Fact]
    public async Task Monitor_TsCoordinatorWarnedThenBeatsAgain_Recovered()
    {
        await using var h = Harness.Create(server, o => o.TsCompat = true);
        await using var db = await DedicatedDatabase.CreateAsync(server, h, DedicatedDatabase.TsCompatTests);
        await using var monitor = new HeartbeatMonitor(db.Redis, RecoveryKit.FastOptions(), h.Metrics, new RecoveryMetrics(h.Registry), null, TestIds.New("monitor"));
        var id = TestIds.New("ts");
        await WriteTsAsync(db.Database, id, DateTimeOffset.UtcNow, 1);
        await TsCoordinators.DiscoverAsync(db.Database, [(id, null)]);
        await EventuallyAsync(async () =>
        {
            await monitor.RunOnceAsync();
            return RecoveryKit.Lines(h, "Stale heartbeat detected", $"coordinator={id} ").Count > 0;
        }, "the silent TS coordinator was never warned about", TimeSpan.FromSeconds(10), pollMs: 50);

        await WriteTsAsync(db.Database, id, DateTimeOffset.UtcNow, 2);
        var pass = await monitor.RunOnceAsync();

        Assert.Equal(1, pass.Recovered);
        Assert.Single(RecoveryKit.Lines(h, "Coordinator recovered from warning state", $"coordinator={id} "));
        Assert.False(await db.Database.HashExistsAsync(Keys.Health, id));
        Assert.NotNull(await db.Database.SortedSetScoreAsync(Keys.TsCoordinators, id));
    }

    [Fact]
    public async Task Discovery_ScanFindsTsHeartbeatsOnly_AndAnIdThatStartsAsCfnLeavesTheWatch()
    {
        await using var h = Harness.Create(server, o => o.TsCompat = true);
        await using var db = await DedicatedDatabase.CreateAsync(server, h, DedicatedDatabase.TsCompatTests);
        await using var handler = new TimeoutHandler(db.Redis, h.Keys, RecoveryKit.FastOptions(), h.Metrics, new RecoveryMetrics(h.Registry), TestIds.New("handler"));
        var swarm = TestIds.New("swarm");
        var ts = TestIds.New("ts");
        var cfn = await db.StartAsync(h, TestIds.New("coord"), swarm);
        var handWritten = TestIds.New("hand"); // a cfn-shaped K1 outside the registry (a cfn coordinator being cleaned)
        var tsShapedRegistered = TestIds.New("reg"); // a TS-shaped K1 whose ID the registry holds
        await WriteTsAsync(db.Database, ts, DateTimeOffset.UtcNow, 7);
        await db.Database.StringSetAsync(Keys.Heartbeat(handWritten),
            $"{{\"coordinatorId\":\"{handWritten}\",\"swarmId\":\"{swarm}\",\"timestamp\":1,\"lastHeartbeat\":1,\"sequence\":1,\"instanceId\":\"i\"}}");
        await WriteTsAsync(db.Database, tsShapedRegistered, DateTimeOffset.UtcNow, 1);
        await db.Database.SortedSetAddAsync(Keys.Registry, tsShapedRegistered, await RedisKit.NowAsync(db.Database));

        Assert.Equal(1, await handler.DiscoverTsCoordinatorsAsync());
        Assert.Equal(0, await handler.DiscoverTsCoordinatorsAsync()); // found once

        var watched = await db.Database.HashGetAllAsync(Keys.TsHeartbeats);
        var entry = Assert.Single(watched);
        Assert.Equal(ts, (string?)entry.Name);
        Assert.Equal("", (string?)entry.Value); // found, no heartbeat sampled yet
        Assert.False(await db.Database.HashExistsAsync(Keys.Swarms, ts));

        // Traffic: a registered ID and an invalid one are not watched; a swarm is recorded with a new ID.
        var sender = TestIds.New("ts");
        Assert.Equal(1, await TsCoordinators.DiscoverAsync(db.Database, [(sender, swarm), (cfn.Id, swarm), ("not valid!", swarm)]));
        Assert.Equal(swarm, (string?)await db.Database.HashGetAsync(Keys.Swarms, sender));
        Assert.False(await db.Database.HashExistsAsync(Keys.TsHeartbeats, cfn.Id));

        await handler.Monitor.RunOnceAsync();
        Assert.NotNull(await db.Database.SortedSetScoreAsync(Keys.TsCoordinators, ts));
        Assert.Null(await db.Database.SortedSetScoreAsync(Keys.TsCoordinators, sender)); // no heartbeat seen: not judged
        Assert.Equal("7", ((string)(await db.Database.HashGetAsync(Keys.TsHeartbeats, ts))!).Split(':')[1]);

        // The TS coordinator is restarted as a cfn one under its ID: it leaves the watch, and the registry judges it.
        var migrated = await db.StartAsync(h, ts, swarm);
        await handler.Monitor.RunOnceAsync();
        Assert.Null(await db.Database.SortedSetScoreAsync(Keys.TsCoordinators, ts));
        Assert.False(await db.Database.HashExistsAsync(Keys.TsHeartbeats, ts));
        Assert.NotNull(await db.Database.SortedSetScoreAsync(Keys.Registry, ts));
        Assert.Equal(0, await handler.DiscoverTsCoordinatorsAsync()); // its K1 is a cfn one now
        Assert.False(migrated.IsSuperseded);
        await db.Database.SortedSetRemoveAsync(Keys.Registry, tsShapedRegistered);
    }

    [Fact]
    public async Task Monitor_TsCompatOff_StoppedTsHeartbeatUntouchedAndNoWatchKeyWritten()
    {
        await using var h = Harness.Create(server); // TsCompat off (the default)
        await using var db = await DedicatedDatabase.CreateAsync(server, h, DedicatedDatabase.TsCompatOffTests);
        await using var handler = new TimeoutHandler(db.Redis, h.Keys, RecoveryKit.FastOptions(), h.Metrics, new RecoveryMetrics(h.Registry), TestIds.New("handler"));
        var id = TestIds.New("ts");
        await WriteTsAsync(db.Database, id, DateTimeOffset.UtcNow - TimeSpan.FromMinutes(10), 3);
        var written = (string?)await db.Database.StringGetAsync(Keys.Heartbeat(id));
        handler.Start();

        var until = DateTime.UtcNow + NeverDeadWindow;
        while (DateTime.UtcNow < until)
        {
            Assert.Empty((await handler.Monitor.RunOnceAsync()).Deaths);
            await Task.Delay(50);
        }

        Assert.Equal(written, (string?)await db.Database.StringGetAsync(Keys.Heartbeat(id)));
        Assert.False(await db.Database.KeyExistsAsync(Keys.TsCoordinators));
        Assert.False(await db.Database.KeyExistsAsync(Keys.TsHeartbeats));
        Assert.Empty(RecoveryKit.Lines(h, id));
        Assert.DoesNotContain(db.Redis.Loops.Snapshot(), l => l.Loop == Cfn.Coordination.Background.LoopNames.TsDiscovery);
    }

    [Fact]
    public async Task Monitor_ForgedWatchedValues_PassGoesOnAndTheRealOneStillDies()
    {
        await using var h = Harness.Create(server, o => o.TsCompat = true);
        await using var db = await DedicatedDatabase.CreateAsync(server, h, DedicatedDatabase.TsCompatTests);
        var recovery = new RecoveryMetrics(h.Registry);
        await using var handler = new TimeoutHandler(db.Redis, h.Keys, RecoveryKit.FastOptions(), h.Metrics, recovery, TestIds.New("handler"));
        var good = TestIds.New("ts");
        await WriteTsAsync(db.Database, good, DateTimeOffset.UtcNow, 1);
        var forged = new Dictionary<string, string>
        {
            [TestIds.New("notjson")] = "not json {",
            [TestIds.New("array")] = "[1,2,3]",
            [TestIds.New("string")] = "\"lastHeartbeat\":5",
            [TestIds.New("badnum")] = "{\"lastHeartbeat\":\"soon\",\"sequence\":1}",
            [TestIds.New("huge")] = "{\"lastHeartbeat\":1" + new string('9', 400) + ",\"sequence\":1}",
            [TestIds.New("deep")] = new string('[', 200) + new string(']', 200),
        };
        foreach (var (id, value) in forged)
        {
            await db.Database.StringSetAsync(Keys.Heartbeat(id), value, TimeSpan.FromSeconds(300));
        }

        var wrongType = TestIds.New("hash");
        await db.Database.HashSetAsync(Keys.Heartbeat(wrongType), "lastHeartbeat", "1");
        // Watched as if seen before (so they are judged), plus an entry no key can be built for.
        var now = await RedisKit.NowAsync(db.Database);
        foreach (var id in forged.Keys.Append(wrongType))
        {
            await db.Database.HashSetAsync(Keys.TsHeartbeats, id, "1:1");
            await db.Database.SortedSetAddAsync(Keys.TsCoordinators, id, now);
        }

        await db.Database.HashSetAsync(Keys.TsHeartbeats, "not valid!", "");
        Assert.Equal(1, await handler.DiscoverTsCoordinatorsAsync()); // only the real TS heartbeat (the huge number is one too, but watched already)

        var (death, _) = await RecoveryKit.RunUntilDeadAsync(h, handler.Monitor, good, TimeSpan.FromSeconds(10));

        Assert.NotNull(death);
        Assert.Equal(0, recovery.MonitorPasses.WithLabels("error").Value);
        Assert.False(await db.Database.HashExistsAsync(Keys.TsHeartbeats, "not valid!"));
        // The values that are no heartbeat are reported once each; the huge number is a TS heartbeat (its raw text is the sample).
        foreach (var id in forged.Keys.Where(k => !k.StartsWith("huge", StringComparison.Ordinal)).Append(wrongType))
        {
            Assert.Single(RecoveryKit.Lines(h, "malformed", $"coordinator={id};"));
        }

        Assert.Empty(RecoveryKit.Lines(h, "malformed", $"coordinator={good};"));
    }

    [Fact]
    public async Task Cleanup_FreshTsCoordinator_RefusedUnlessForced()
    {
        await using var h = Harness.Create(server, o => o.TsCompat = true);
        await using var db = await DedicatedDatabase.CreateAsync(server, h, DedicatedDatabase.TsCompatTests);
        await using var handler = new TimeoutHandler(db.Redis, h.Keys, RecoveryKit.FastOptions(), h.Metrics, new RecoveryMetrics(h.Registry), TestIds.New("handler"));
        var id = TestIds.New("ts");
        await WriteTsAsync(db.Database, id, DateTimeOffset.UtcNow - TimeSpan.FromHours(1), 1);
        await TsCoordinators.DiscoverAsync(db.Database, [(id, null)]);
        await handler.Monitor.RunOnceAsync();

        var refused = await handler.CleanupAsync(id);

        Assert.True(refused.Refused);
        Assert.True(await db.Database.KeyExistsAsync(Keys.Heartbeat(id)));
        Assert.NotNull(await db.Database.SortedSetScoreAsync(Keys.TsCoordinators, id));

        var forced = await handler.CleanupAsync(id, force: true);

        Assert.False(forced.Refused);
        Assert.False(await db.Database.KeyExistsAsync(Keys.Heartbeat(id)));
        Assert.Null(await db.Database.SortedSetScoreAsync(Keys.TsCoordinators, id));
        Assert.False(await db.Database.HashExistsAsync(Keys.TsHeartbeats, id));
        Assert.Single(RecoveryKit.Lines(h, "Forced cleanup of a coordinator whose heartbeat is fresh", $"coordinator={id}"));
    }

    /// <summary>What a TS coordinator's <c>registerHeartbeat</c> writes (its own clock; no timestamp, instanceId or swarmId).</summary>
    private static Task<bool> WriteTsAsync(IDatabase database, string id, DateTimeOffset clock, int sequence) =>
        database.StringSetAsync(Keys.Heartbeat(id),
            string.Create(CultureInfo.InvariantCulture,
                $"{{\"coordinatorId\":\"{id}\",\"lastHeartbeat\":{clock.ToUnixTimeMilliseconds()},\"sequence\":{sequence},\"iteration\":3,\"metadata\":{{\"phase\":\"p\"}}}}"),
            TimeSpan.FromSeconds(300));

    /// <summary>Passes until <paramref name="silent"/> is dead, while <paramref name="beating"/> keeps writing.</summary>
    private static async Task<(CoordinatorDeath? Death, long Sequence)> RunUntilDeadWhileBeatingAsync(
        DedicatedDatabase db, TimeoutHandler handler, string silent, string beating, DateTimeOffset clock, int sequence)
    {
        CoordinatorDeath? death = null;
        await EventuallyAsync(async () =>
        {
            sequence++;
            await WriteTsAsync(db.Database, beating, clock, sequence);
            var pass = await handler.Monitor.RunOnceAsync();
            Assert.DoesNotContain(pass.Deaths, d => d.CoordinatorId == beating);
            death = pass.Deaths.FirstOrDefault(d => d.CoordinatorId == silent);
            return death is not null;
        }, $"{silent} was never declared dead", TimeSpan.FromSeconds(10), pollMs: 50);
        return (death, sequence);
    }

    private async Task<List<string>> ScanAsync(DedicatedDatabase db, string pattern)
    {
        var keys = new List<string>();
        await foreach (var key in server.Server.KeysAsync(db.Index, pattern, pageSize: 1000))
        {
            keys.Add(key!);
        }

        return keys;
    }
}
