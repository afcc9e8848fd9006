using System.Collections;
using Cfn.Coordination.Background;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Tests.Infrastructure;
using Microsoft.Extensions.Time.Testing;

namespace Cfn.Coordination.Tests.Recovery;

/// <summary>Database 35 (flushed by every test) belongs to this collection alone, so monitors and cleanups judge only their own coordinators.</summary>
[CollectionDefinition(Name)]
public sealed class EnvironmentDatabaseCollection : ICollectionFixture<RedisServer>
{
    public const string Name = "environment-db8";

    public const int Database = 35;
}

/// <summary>
/// SPEC §3.6: the timeout handler's variables, read by <see cref="RecoveryOptions.FromEnvironment"/>, change what a
/// real <see cref="TimeoutHandler"/> does to crashed coordinators on the real server (database 35).
/// </summary>
[Collection(EnvironmentDatabaseCollection.Name)]
public sealed class EnvironmentEffectTests(RedisServer server)
{
    private static RecoveryOptions Read(params (string Name, string Value)[] variables)
    {
        var env = new Hashtable();
        foreach (var (name, value) in variables)
        {
            env[name] = value;
        }

        return RecoveryOptions.FromEnvironment(env, new CoordinationOptions());
    }

    [Fact]
    public async Task StaleThresholdMonitorIntervalMaxWarnings_DeclareDeadAfterThresholdPlusWarnings()
    {
        await using var h = Harness.Create(server);
        await using var db = await DedicatedDatabase.CreateAsync(server, h, EnvironmentDatabaseCollection.Database);
        var options = Read(("HEARTBEAT_STALE_THRESHOLD_MS", "400"), ("HEARTBEAT_MONITOR_INTERVAL_MS", "150"), ("HEARTBEAT_MAX_WARNINGS", "2"),
            ("ENABLE_AUTO_ESCALATION", "false"));
        await using var handler = new TimeoutHandler(db.Redis, h.Keys, options, h.Metrics, new RecoveryMetrics(h.Registry), "env-handler");
        var victim = await db.StartAsync(h, TestIds.New("victim"), "env-swarm");
        var lastBeat = victim.Heartbeats.LastSentAt;
        await victim.AbandonAsync();

        var (death, seenAt) = await RecoveryKit.RunUntilDeadAsync(h, handler.Monitor, victim.Id, TimeSpan.FromSeconds(15));

        Assert.NotNull(death);
        Assert.Equal(2, death.Warnings); // HEARTBEAT_MAX_WARNINGS
        // Dead no sooner than HEARTBEAT_STALE_THRESHOLD_MS + (2 − 1) × HEARTBEAT_MONITOR_INTERVAL_MS of silence.
        Assert.True(death.StaleForMs >= 400 + 150, $"dead after {death.StaleForMs} ms");
        Assert.True(seenAt - lastBeat >= 400 + 150, $"dead {seenAt - lastBeat} ms after the last heartbeat");
        // ENABLE_AUTO_ESCALATION=false: the death is declared but not escalated.
        Assert.Null(death.Escalation);
        Assert.False(await db.Database.KeyExistsAsync(Keys.Escalation(victim.Id)));
    }

    [Fact]
    public async Task EnableAutoEscalation_Default_DeathIsEscalated()
    {
        await using var h = Harness.Create(server);
        await using var db = await DedicatedDatabase.CreateAsync(server, h, EnvironmentDatabaseCollection.Database);
        var options = Read(("HEARTBEAT_STALE_THRESHOLD_MS", "400"), ("HEARTBEAT_MONITOR_INTERVAL_MS", "100"));
        await using var handler = new TimeoutHandler(db.Redis, h.Keys, options, h.Metrics, new RecoveryMetrics(h.Registry), "env-handler");
        var victim = await db.StartAsync(h, TestIds.New("victim"), "env-swarm");
        await victim.AbandonAsync();

        var (death, _) = await RecoveryKit.RunUntilDeadAsync(h, handler.Monitor, victim.Id, TimeSpan.FromSeconds(15));

        Assert.NotNull(death);
        Assert.Equal(3, death.Warnings);
        Assert.NotNull(death.Escalation);
        Assert.True(await db.Database.KeyExistsAsync(Keys.Escalation(victim.Id)));
    }

    [Fact]
    public async Task EnableHeartbeatMonitoring_False_DeadCoordinatorNotDeclaredDead()
    {
        await using var h = Harness.Create(server);
        await using var db = await DedicatedDatabase.CreateAsync(server, h, EnvironmentDatabaseCollection.Database);
        var options = Read(("ENABLE_HEARTBEAT_MONITORING", "false"), ("HEARTBEAT_STALE_THRESHOLD_MS", "300"), ("HEARTBEAT_MONITOR_INTERVAL_MS", "100"));
        var victim = await db.StartAsync(h, TestIds.New("victim"), "env-swarm");
        await victim.AbandonAsync();
        await using var handler = new TimeoutHandler(db.Redis, h.Keys, options, h.Metrics, new RecoveryMetrics(h.Registry), "env-handler");

        handler.Start();
        // Shows that nobody is declared dead: five times the 300 ms stale threshold this test configures. A negative check:
        // with monitoring off no pass runs whose end could be awaited.
        await Task.Delay(1500);

        Assert.False(handler.Monitor.IsRunning);
        Assert.Contains(h.Messages, m => m.StartsWith("Heartbeat monitoring DISABLED", StringComparison.Ordinal));
        Assert.DoesNotContain(h.Messages, m => m.Contains("Marking coordinator as DEAD", StringComparison.Ordinal) && m.Contains(victim.Id, StringComparison.Ordinal));
        Assert.True(await db.Database.KeyExistsAsync(Keys.Heartbeat(victim.Id)));
        Assert.False(await db.Database.KeyExistsAsync(Keys.Escalation(victim.Id)));
    }

    [Theory]
    [InlineData("1", true)]
    [InlineData("600", false)]
    public async Task CleanupStaleThresholdSeconds_SilentForTwoSeconds_CleanedOnlyBelowThreshold(string seconds, bool cleaned)
    {
        await using var h = Harness.Create(server);
        await using var db = await DedicatedDatabase.CreateAsync(server, h, EnvironmentDatabaseCollection.Database);
        var options = Read(("CLEANUP_STALE_THRESHOLD_SECONDS", seconds));
        var handler = new TimeoutHandler(db.Redis, h.Keys, options, h.Metrics, new RecoveryMetrics(h.Registry), "env-handler");
        var victim = await db.StartAsync(h, TestIds.New("victim"), "env-swarm");
        var lastBeat = (long)(await db.Database.SortedSetScoreAsync(Keys.Registry, victim.Id))!.Value;
        await victim.AbandonAsync();
        // Silent for two whole seconds on the Redis clock, as the cleanup counts age (whole seconds of TIME).
        await EventuallyAsync(async () => (await RedisTime.NowMsAsync(db.Database) / 1000) - (lastBeat / 1000) >= 2,
            "the Redis clock never moved two seconds past the last heartbeat");

        var report = await handler.BatchCleanup.RunAsync(dryRun: false);

        Assert.Equal(cleaned, report.StaleCoordinatorIds.Contains(victim.Id));
        Assert.Equal(!cleaned, await db.Database.KeyExistsAsync(Keys.Heartbeat(victim.Id)));
        await handler.DisposeAsync();
    }

    [Theory]
    [InlineData("200", true)]
    [InlineData("300000", false)]
    public async Task CleanupIntervalMs_BatchCleanupRunsEveryInterval(string value, bool runs)
    {
        await using var h = Harness.Create(server);
        var time = new FakeTimeProvider();
        await using var db = await DedicatedDatabase.CreateAsync(server, h, EnvironmentDatabaseCollection.Database, time);
        // The stuck-wait check every 100 ms is the witness that each step of the clock has been acted on.
        var options = Read(("CLEANUP_INTERVAL_MS", value), ("ACTIVITY_CHECK_INTERVAL_MS", "100"));
        await using var handler = new TimeoutHandler(db.Redis, h.Keys, options, h.Metrics, new RecoveryMetrics(h.Registry), "env-handler");

        handler.Start();
        await FakeClock.AdvanceAsync(time, db.Redis.Loops, TimeSpan.FromMilliseconds(1500), TimeSpan.FromMilliseconds(100), LoopNames.StuckWaits, LoopNames.BatchCleanup);

        var started = h.Messages.Count(m => m == "Starting blocking coordination cleanup");
        Assert.Equal(runs ? 7 : 0, started); // 1.5 s of the handler's clock holds seven 200 ms periods
    }

    [Theory]
    [InlineData("100", true)]
    [InlineData("60000", false)]
    public async Task ActivityCheckIntervalMs_StuckWaitAndDeadlockCheckRunsEveryInterval(string value, bool runs)
    {
        await using var h = Harness.Create(server);
        var time = new FakeTimeProvider();
        await using var db = await DedicatedDatabase.CreateAsync(server, h, EnvironmentDatabaseCollection.Database, time);
        // The cleanup every 100 ms is the witness that each step of the clock has been acted on.
        var options = Read(("ACTIVITY_CHECK_INTERVAL_MS", value), ("CLEANUP_INTERVAL_MS", "100"));
        await using var handler = new TimeoutHandler(db.Redis, h.Keys, options, h.Metrics, new RecoveryMetrics(h.Registry), "env-handler");

        handler.Start();
        await FakeClock.AdvanceAsync(time, db.Redis.Loops, TimeSpan.FromMilliseconds(1500), TimeSpan.FromMilliseconds(100), LoopNames.BatchCleanup, LoopNames.StuckWaits);

        Assert.Equal(TimeSpan.FromMilliseconds(long.Parse(value, System.Globalization.CultureInfo.InvariantCulture)), options.StuckWaitGrace);
        Assert.Equal(runs, handler.LastDeadlocks is not null);
    }
}
