using System.Text.Json;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Tests.Infrastructure;
using Microsoft.Extensions.Time.Testing;
using StackExchange.Redis;

namespace Cfn.Coordination.Tests.Swarms;

/// <summary>
/// SPEC K8: the escalation record of a dead coordinator moves <c>replacement_requested → replaced | failed</c> when the
/// swarm manager settles the replacement's spawn request (ready, or failed by its host or by the spawn timeout).
/// </summary>
[Collection(SwarmsCollection.Name)]
public sealed class EscalationSettlementTests(RedisServer server)
{
    private const string Swarm = "swarm-esc";

    private static async Task<JsonElement> K8Async(SwarmWorld world, string deadId)
    {
        var raw = (string?)await world.Database.StringGetAsync(Keys.Escalation(deadId));
        Assert.True(raw is not null, $"K8 of {deadId} is missing");
        return JsonDocument.Parse(raw).RootElement.Clone();
    }

    private static async Task<string?> K8StatusAsync(SwarmWorld world, string deadId) =>
        (await K8Async(world, deadId)).GetProperty("status").GetString();

    /// <summary>A K8 record as <see cref="EscalationService"/> writes it (SET with the 3600 s TTL).</summary>
    private static async Task WriteK8Async(SwarmWorld world, string deadId, string newId, string status)
    {
        var now = await RedisTime.NowMsAsync(world.Database);
        var record = new EscalationRecord
        {
            DeadCoordinatorId = deadId,
            SwarmId = Swarm,
            Timestamp = now,
            Status = status,
            NewCoordinatorId = newId,
            LastHeartbeat = now - 120_000,
            DetectedBy = "monitor-test",
            FencingToken = 2,
            WorkItemsTransferred = 3,
            SignalsHandedOver = 1,
        };
        await world.Database.StringSetAsync(Keys.Escalation(deadId), Json.Serialize(record), TimeSpan.FromSeconds(3600));
    }

    [Fact]
    public async Task RealEscalation_ReplacementReady_RecordReplacedWithUpdatedAtAndTtlKept()
    {
        await using var world = await SwarmWorld.CreateAsync(server);
        await world.HostAsync();
        var dead = await Coordinator.StartAsync(world.Redis, world.H.Keys, TestIds.New("dead"), Swarm, world.H.Metrics, runHeartbeatLoop: false);
        await dead.Work.CreateAsync("w0");
        var lastBeat = dead.Heartbeats.LastSentAt;
        await dead.AbandonAsync();
        var fence = await world.Database.StringIncrementAsync(Keys.Epoch(dead.Id));
        var options = new RecoveryOptions();
        var metrics = new RecoveryMetrics(Prometheus.Metrics.NewCustomRegistry());
        var service = new EscalationService(world.Redis, world.H.Keys, options, metrics, new CoordinatorCleanup(world.Redis, options, metrics));
        var escalated = await service.EscalateAsync(dead.Id, Swarm, fence, lastBeat, "monitor-test");
        Assert.Equal(EscalationOutcome.Escalated, escalated.Outcome);
        var newId = escalated.NewCoordinatorId!;
        Assert.Equal(EscalationStatus.ReplacementRequested, await K8StatusAsync(world, dead.Id));
        var before = await RedisTime.NowMsAsync(world.Database);

        var manager = world.Manager();
        manager.Start();

        Assert.True(await EventuallyAsync(async () => await world.StatusOfAsync(newId) == SpawnStatus.Ready));
        Assert.True(await EventuallyAsync(async () => await K8StatusAsync(world, dead.Id) == EscalationStatus.Replaced));
        var k8 = await K8Async(world, dead.Id);
        Assert.Equal(newId, k8.GetProperty("newCoordinatorId").GetString());
        Assert.InRange(k8.GetProperty("updatedAt").GetInt64(), before - 1000, before + 30_000);
        Assert.Equal(Swarm, k8.GetProperty("swarmId").GetString());
        Assert.Equal(fence, k8.GetProperty("fencingToken").GetInt64());
        Assert.Equal(1, k8.GetProperty("workItemsTransferred").GetInt64());
        Assert.False(k8.TryGetProperty("error", out _));
        var ttl = await world.Database.KeyTimeToLiveAsync(Keys.Escalation(dead.Id));
        Assert.InRange(ttl!.Value.TotalSeconds, 3500, 3600);

        // Further passes change nothing and log the settlement once.
        var settled = (string?)await world.Database.StringGetAsync(Keys.Escalation(dead.Id));
        for (var i = 0; i < 3; i++)
        {
            await manager.RunOnceAsync();
        }

        Assert.Equal(settled, (string?)await world.Database.StringGetAsync(Keys.Escalation(dead.Id)));
        var line = Assert.Single(RecoveryKit.Lines(world.H, "Escalation record settled", dead.Id));
        Assert.Contains($"newCoordinator={newId}", line.Message, StringComparison.Ordinal);
        Assert.Contains("status=replaced", line.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task HostFailsTheReplacement_RecordFailedWithTheError()
    {
        await using var world = await SwarmWorld.CreateAsync(server);
        await world.HostAsync(factory: (_, _, _) => throw new InvalidOperationException("image pull failed"));
        var request = await world.RequestAsync(Swarm);
        var deadId = request.ReplacesCoordinatorId!;
        await WriteK8Async(world, deadId, request.NewCoordinatorId, EscalationStatus.ReplacementRequested);

        var manager = world.Manager();
        manager.Start();

        Assert.True(await EventuallyAsync(async () => await K8StatusAsync(world, deadId) == EscalationStatus.Failed));
        var k8 = await K8Async(world, deadId);
        Assert.Equal(SpawnStatus.Failed, await world.StatusOfAsync(request.NewCoordinatorId));
        Assert.Contains("image pull failed", k8.GetProperty("error").GetString(), StringComparison.Ordinal);
        Assert.Equal(request.NewCoordinatorId, k8.GetProperty("newCoordinatorId").GetString());
        Assert.True(k8.GetProperty("updatedAt").GetInt64() > 0);
        Assert.Equal(3, k8.GetProperty("workItemsTransferred").GetInt64());
        Assert.InRange((await world.Database.KeyTimeToLiveAsync(Keys.Escalation(deadId)))!.Value.TotalSeconds, 3500, 3600);
    }

    [Fact]
    public async Task SpawnTimeout_RecordFailed_RecordOfALaterIncidentLeftAlone()
    {
        await using var world = await SwarmWorld.CreateAsync(server);
        var stale = await RedisTime.NowMsAsync(world.Database) - 60_000;
        // Two replacements claimed by a host that never started them (spawn timeout 20 s, claimed a minute ago).
        var first = await world.RequestAsync(Swarm);
        var second = await world.RequestAsync(Swarm);
        foreach (var request in new[] { first, second })
        {
            var spawning = request with { Status = SpawnStatus.Spawning, UpdatedAt = stale, HostId = "host-gone" };
            await world.Database.StringSetAsync(Keys.Spawn(request.NewCoordinatorId), Json.Serialize(spawning), expiry: null, keepTtl: true);
        }

        // The first's escalation has not even recorded its hand-over yet; the second's record belongs to a later
        // incident of the same dead coordinator, with another replacement.
        await WriteK8Async(world, first.ReplacesCoordinatorId!, first.NewCoordinatorId, EscalationStatus.Escalated);
        await WriteK8Async(world, second.ReplacesCoordinatorId!, "coordinator-1-later000", EscalationStatus.ReplacementRequested);
        var untouched = (string?)await world.Database.StringGetAsync(Keys.Escalation(second.ReplacesCoordinatorId!));

        var pass = await world.Manager().RunOnceAsync();

        Assert.Equal(2, pass.Failed);
        var k8 = await K8Async(world, first.ReplacesCoordinatorId!);
        Assert.Equal(EscalationStatus.Failed, k8.GetProperty("status").GetString());
        Assert.Contains("no heartbeat within 20000 ms", k8.GetProperty("error").GetString(), StringComparison.Ordinal);
        Assert.Equal(untouched, (string?)await world.Database.StringGetAsync(Keys.Escalation(second.ReplacesCoordinatorId!)));
    }

    [Fact]
    public async Task ReplacementNoHostTookInTime_RequestFailed_WorkHandedToItBackAtTheFrontOfTheQueue()
    {
        await using var world = await SwarmWorld.CreateAsync(server);
        // A real escalation hands two items to a replacement; no coordinator host exists to start it.
        await using var dead = await Coordinator.StartAsync(world.Redis, world.H.Keys, TestIds.New("stranding"), Swarm, runHeartbeatLoop: false);
        foreach (var workId in new[] { "stranded-0", "stranded-1" })
        {
            Assert.True((await dead.Work.CreateAsync(workId, JsonDocument.Parse("{\"input\":{\"n\":1}}").RootElement)).Succeeded);
        }

        await dead.AbandonAsync();
        var fence = await world.Database.StringIncrementAsync(Keys.Epoch(dead.Id));
        var escalation = new EscalationService(world.Redis, world.H.Keys, new RecoveryOptions(), new RecoveryMetrics(world.Registry),
            new CoordinatorCleanup(world.Redis, new RecoveryOptions(), new RecoveryMetrics(world.Registry)));
        var result = await escalation.EscalateAsync(dead.Id, Swarm, fence, 0, "handler-test");
        Assert.Equal(EscalationOutcome.Escalated, result.Outcome);
        var newId = result.NewCoordinatorId!;
        Assert.Equal(SpawnStatus.Pending, await world.StatusOfAsync(newId));

        var options = SwarmWorld.Options();
        options.SpawnTimeout = TimeSpan.FromMilliseconds(300);
        // The spawn timeout is judged on the manager's own clock: a fake one, set to when the request was written.
        var requestedAt = (await world.Spawns.GetAsync(newId))!.UpdatedAt;
        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(requestedAt));
        await using var timed = new RedisContext(world.Redis.Multiplexer, world.H.Options, database: DedicatedDatabase.SwarmTests, time: time,
            loggerFactory: world.H.LoggerFactory);
        await using var manager = new SwarmManager(timed, options, new RecoveryOptions(), world.Metrics, TestIds.New("manager"), expectedCoordinators: 12);

        time.Advance(TimeSpan.FromMilliseconds(300));
        await manager.RunOnceAsync();
        Assert.Equal(SpawnStatus.Pending, await world.StatusOfAsync(newId)); // 300 ms is within the timeout

        time.Advance(TimeSpan.FromMilliseconds(1));
        await manager.RunOnceAsync();

        Assert.Equal(SpawnStatus.Failed, await world.StatusOfAsync(newId));
        Assert.Equal(EscalationStatus.Failed, await K8StatusAsync(world, dead.Id));
        var queued = (await world.Database.ListRangeAsync(Keys.SwarmQueue(Swarm))).Select(v => JsonDocument.Parse((string)v!).RootElement).ToList();
        Assert.Equal(["stranded-0", "stranded-1"], queued.Select(q => q.GetProperty("workId").GetString()).Order());
        Assert.All(queued, q => Assert.Equal(newId, q.GetProperty("releasedBy").GetString()));
        foreach (var workId in new[] { "stranded-0", "stranded-1" })
        {
            Assert.Contains("\"status\":\"released\"", (string?)await world.Database.StringGetAsync(Keys.Work(Swarm, newId, workId)), StringComparison.Ordinal);
        }
    }
}
