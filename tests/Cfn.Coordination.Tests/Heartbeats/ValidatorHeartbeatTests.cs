using Cfn.Coordination.Redis;
using Cfn.Coordination.Tests.Infrastructure;

namespace Cfn.Coordination.Tests.Heartbeats;

/// <summary>
/// Validators heartbeat to <c>validator:heartbeat:{id}</c>, never to K1, so the runbook's
/// <c>--scan --pattern "blocking:heartbeat:*" | wc -l</c> (SPEC §5 #2) counts coordinators only. The kind comes from the
/// swarm (<c>validators</c>), never from the ID.
/// </summary>
[Collection(RedisCollection.Name)]
public sealed class ValidatorHeartbeatTests(RedisServer server)
{
    [Fact]
    public async Task Validator_AnyId_WritesOwnHeartbeatKeyWithK1ShapeAndRegistryEntry_NoK1()
    {
        await using var h = Harness.Create(server, o => o.HeartbeatTtlSeconds = 123);
        // Named like a coordinator on purpose: a replacement validator is called coordinator-{ms}-{random}.
        var v = await h.StartAsync(TestIds.New("coordinator"), Keys.ValidatorSwarm);
        Assert.True(await v.Heartbeats.BeatAsync());

        Assert.True(v.IsValidator);
        Assert.Equal("validator:heartbeat:" + v.Id, (string?)v.HeartbeatKey);
        Assert.False(await h.Database.KeyExistsAsync("blocking:heartbeat:" + v.Id));
        var beat = await Probe.ReadJsonAsync(h.Database, "validator:heartbeat:" + v.Id);
        Assert.Equal(v.Id, beat.GetProperty("coordinatorId").GetString());
        Assert.Equal("validators", beat.GetProperty("swarmId").GetString());
        Assert.Equal(2, beat.GetProperty("sequence").GetInt64());
        Assert.Equal(v.InstanceId, beat.GetProperty("instanceId").GetString());
        Assert.Equal(v.Epoch, beat.GetProperty("epoch").GetInt64());
        var timestamp = beat.GetProperty("timestamp").GetInt64();
        Assert.Equal(timestamp, beat.GetProperty("lastHeartbeat").GetInt64());
        Assert.Equal(timestamp, v.Heartbeats.LastSentAt);
        Assert.InRange((await h.Database.KeyTimeToLiveAsync("validator:heartbeat:" + v.Id))!.Value.TotalSeconds, 100, 123);
        // Monitored as before: the registry entry (scored by the same beat) and the swarm hash that names the kind.
        Assert.Equal(timestamp, (long)(await h.Database.SortedSetScoreAsync(Keys.Registry, v.Id))!.Value);
        Assert.Equal("validators", (string?)await h.Database.HashGetAsync(Keys.Swarms, v.Id));

        await v.StopAsync();

        Assert.False(await h.Database.KeyExistsAsync("validator:heartbeat:" + v.Id));
        Assert.Null(await h.Database.SortedSetScoreAsync(Keys.Registry, v.Id));
    }

    [Fact]
    public async Task Coordinator_NamedLikeAValidator_WritesK1Only()
    {
        await using var h = Harness.Create(server);
        var c = await h.StartAsync(TestIds.New("validator"), TestIds.New("swarm"));

        Assert.False(c.IsValidator);
        var k1 = await Probe.ReadJsonAsync(h.Database, "blocking:heartbeat:" + c.Id);
        Assert.Equal(c.Id, k1.GetProperty("coordinatorId").GetString());
        Assert.False(await h.Database.KeyExistsAsync("validator:heartbeat:" + c.Id));
    }

    [Fact]
    public async Task SwarmOfCoordinatorsAndValidators_K1ScanCountsCoordinatorsOnly()
    {
        await using var h = Harness.Create(server);
        var run = TestIds.New("run"); // a common ID part, so the count is this test's own even on a shared database
        var coordinators = new List<Coordinator>();
        for (var i = 0; i < 3; i++)
        {
            coordinators.Add(await h.StartAsync($"{run}-c{i}", "swarm-" + run));
        }

        for (var i = 0; i < 2; i++)
        {
            await h.StartAsync($"{run}-v{i}", Keys.ValidatorSwarm);
        }

        // The runbook's SCAN, on this test's IDs.
        var k1 = new List<string>();
        var own = new List<string>();
        await foreach (var key in server.Server.KeysAsync(h.Database.Database, $"blocking:heartbeat:{run}-*", pageSize: 1000))
        {
            k1.Add(key!);
        }

        await foreach (var key in server.Server.KeysAsync(h.Database.Database, $"validator:heartbeat:{run}-*", pageSize: 1000))
        {
            own.Add(key!);
        }

        Assert.Equal(coordinators.Select(c => "blocking:heartbeat:" + c.Id).Order(StringComparer.Ordinal), k1.Order(StringComparer.Ordinal));
        Assert.Equal([$"validator:heartbeat:{run}-v0", $"validator:heartbeat:{run}-v1"], own.Order(StringComparer.Ordinal));
        var registered = await h.Database.SortedSetScoresAsync(Keys.Registry, [.. Enumerable.Range(0, 3).Select(i => (StackExchange.Redis.RedisValue)$"{run}-c{i}"),
            $"{run}-v0", $"{run}-v1"]);
        Assert.All(registered, score => Assert.NotNull(score));
    }
}
