using System.Text.RegularExpressions;
using Cfn.Coordination.Identity;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;

using Cfn.Coordination.Tests.Infrastructure;

namespace Cfn.Coordination.Tests.Recovery;

/// <summary>Spawn requests K9 (SPEC K9, D7): statuses moved by compare-and-set, kept as history, indexed without SCAN.</summary>
[Collection(RedisCollection.Name)]
public sealed partial class SpawnRequestsTests(RedisServer server)
{
    private const int TtlSeconds = 3600;

    private static SpawnRequest NewRequest(string swarm, long timestamp, string? id = null) => new()
    {
        NewCoordinatorId = id ?? SpawnRequests.NewCoordinatorId(timestamp),
        ReplacesCoordinatorId = TestIds.New("dead"),
        SwarmId = swarm,
        Timestamp = timestamp,
        Status = SpawnStatus.Pending,
        Reason = "replacement",
        RequestedBy = "test",
        UpdatedAt = timestamp,
    };

    private static SpawnRequests Spawns(Harness h) => new(h.Database, TimeProvider.System, TtlSeconds);

    [Fact]
    public async Task TryMoveAsync_PendingSpawningReady_EachStepStoredAndKeptAsHistory()
    {
        await using var h = Harness.Create(server);
        var spawns = Spawns(h);
        var now = await RedisKit.NowAsync(h.Database);
        var request = NewRequest(TestIds.New("swarm"), now);
        Assert.True(await spawns.CreateAsync(request));

        Assert.True(await spawns.TryMoveAsync(request.NewCoordinatorId, SpawnStatus.Pending, SpawnStatus.Spawning));
        var spawning = await spawns.GetAsync(request.NewCoordinatorId);
        Assert.Equal(SpawnStatus.Spawning, spawning!.Status);
        Assert.True(await spawns.TryMoveAsync(request.NewCoordinatorId, SpawnStatus.Spawning, SpawnStatus.Ready));

        var ready = await spawns.GetAsync(request.NewCoordinatorId);
        Assert.NotNull(ready);
        Assert.Equal(SpawnStatus.Ready, ready.Status);
        Assert.True(ready.UpdatedAt >= request.UpdatedAt);
        Assert.Null(ready.Error);
        Assert.Equal(request.ReplacesCoordinatorId, ready.ReplacesCoordinatorId);
        Assert.Equal(request.SwarmId, ready.SwarmId);
        Assert.Equal("high", ready.Priority);
        Assert.True(await h.Database.KeyExistsAsync(Keys.Spawn(request.NewCoordinatorId)), "a ready request is history, not deleted");
    }

    [Fact]
    public async Task TryMoveAsync_PendingToCancelled_Moves()
    {
        await using var h = Harness.Create(server);
        var spawns = Spawns(h);
        var now = await RedisKit.NowAsync(h.Database);
        var request = NewRequest(TestIds.New("swarm"), now);
        await spawns.CreateAsync(request);

        Assert.True(await spawns.TryMoveAsync(request.NewCoordinatorId, SpawnStatus.Pending, SpawnStatus.Cancelled));

        Assert.Equal(SpawnStatus.Cancelled, (await spawns.GetAsync(request.NewCoordinatorId))!.Status);
        Assert.False(await spawns.TryMoveAsync(request.NewCoordinatorId, SpawnStatus.Pending, SpawnStatus.Spawning));
    }

    [Fact]
    public async Task TryMoveAsync_SpawningToFailedWithError_ErrorStored()
    {
        await using var h = Harness.Create(server);
        var spawns = Spawns(h);
        var now = await RedisKit.NowAsync(h.Database);
        var request = NewRequest(TestIds.New("swarm"), now);
        await spawns.CreateAsync(request);
        await spawns.TryMoveAsync(request.NewCoordinatorId, SpawnStatus.Pending, SpawnStatus.Spawning);

        Assert.True(await spawns.TryMoveAsync(request.NewCoordinatorId, SpawnStatus.Spawning, SpawnStatus.Failed, "image pull failed"));

        var failed = await spawns.GetAsync(request.NewCoordinatorId);
        Assert.Equal(SpawnStatus.Failed, failed!.Status);
        Assert.Equal("image pull failed", failed.Error);
    }

    [Theory]
    [InlineData(SpawnStatus.Pending, SpawnStatus.Ready)]
    [InlineData(SpawnStatus.Pending, SpawnStatus.Pending)]
    [InlineData(SpawnStatus.Spawning, SpawnStatus.Pending)]
    [InlineData(SpawnStatus.Ready, SpawnStatus.Spawning)]
    [InlineData(SpawnStatus.Ready, SpawnStatus.Failed)]
    [InlineData(SpawnStatus.Failed, SpawnStatus.Ready)]
    [InlineData(SpawnStatus.Cancelled, SpawnStatus.Pending)]
    [InlineData(SpawnStatus.Pending, "bogus")]
    public async Task TryMoveAsync_IllegalTransition_RefusedAndUnchanged(string from, string to)
    {
        await using var h = Harness.Create(server);
        var spawns = Spawns(h);
        var now = await RedisKit.NowAsync(h.Database);
        var request = NewRequest(TestIds.New("swarm"), now) with { Status = from };
        await spawns.CreateAsync(request);
        var before = (string?)await h.Database.StringGetAsync(Keys.Spawn(request.NewCoordinatorId));

        Assert.False(SpawnStatus.IsAllowed(from, to));
        Assert.False(await spawns.TryMoveAsync(request.NewCoordinatorId, from, to));

        Assert.Equal(before, (string?)await h.Database.StringGetAsync(Keys.Spawn(request.NewCoordinatorId)));
    }

    [Fact]
    public async Task TryMoveAsync_WrongCurrentStatus_Refused()
    {
        await using var h = Harness.Create(server);
        var spawns = Spawns(h);
        var now = await RedisKit.NowAsync(h.Database);
        var request = NewRequest(TestIds.New("swarm"), now) with { Status = SpawnStatus.Spawning };
        await spawns.CreateAsync(request);

        Assert.False(await spawns.TryMoveAsync(request.NewCoordinatorId, SpawnStatus.Pending, SpawnStatus.Cancelled));
        Assert.False(await spawns.TryMoveAsync(TestIds.New("missing"), SpawnStatus.Pending, SpawnStatus.Spawning));

        Assert.Equal(SpawnStatus.Spawning, (await spawns.GetAsync(request.NewCoordinatorId))!.Status);
    }

    [Fact]
    public async Task TryMoveAsync_TenConcurrentClaims_ExactlyOneWins()
    {
        await using var h = Harness.Create(server);
        var spawns = Spawns(h);
        var now = await RedisKit.NowAsync(h.Database);
        var request = NewRequest(TestIds.New("swarm"), now);
        await spawns.CreateAsync(request);

        var results = await Task.WhenAll(Enumerable.Range(0, 10)
            .Select(_ => Task.Run(() => spawns.TryMoveAsync(request.NewCoordinatorId, SpawnStatus.Pending, SpawnStatus.Spawning))));

        Assert.Equal(1, results.Count(r => r));
        Assert.Equal(SpawnStatus.Spawning, (await spawns.GetAsync(request.NewCoordinatorId))!.Status);
    }

    [Fact]
    public async Task TryMoveAsync_TwoConcurrentClaimsFromTwoConnections_ExactlyOneWins()
    {
        await using var h = Harness.Create(server);
        var spawns = Spawns(h);
        var now = await RedisKit.NowAsync(h.Database);
        await using var other = await server.ConnectAsync();
        var otherSpawns = new SpawnRequests(other.GetDatabase(), TimeProvider.System, TtlSeconds);
        for (var round = 0; round < 20; round++)
        {
            var request = NewRequest(TestIds.New("swarm"), now);
            await spawns.CreateAsync(request);

            var results = await Task.WhenAll(
                Task.Run(() => spawns.TryMoveAsync(request.NewCoordinatorId, SpawnStatus.Pending, SpawnStatus.Spawning)),
                Task.Run(() => otherSpawns.TryMoveAsync(request.NewCoordinatorId, SpawnStatus.Pending, SpawnStatus.Spawning)));

            Assert.Equal(1, results.Count(r => r));
        }
    }

    [Fact]
    public async Task CreateAsync_SameIdTwice_SecondRefusedFirstKept()
    {
        await using var h = Harness.Create(server);
        var spawns = Spawns(h);
        var now = await RedisKit.NowAsync(h.Database);
        var request = NewRequest(TestIds.New("swarm"), now);

        Assert.True(await spawns.CreateAsync(request));
        Assert.False(await spawns.CreateAsync(request with { SwarmId = TestIds.New("other"), Status = SpawnStatus.Ready }));

        var stored = await spawns.GetAsync(request.NewCoordinatorId);
        Assert.Equal(request.SwarmId, stored!.SwarmId);
        Assert.Equal(SpawnStatus.Pending, stored.Status);
        Assert.InRange((await h.Database.KeyTimeToLiveAsync(Keys.Spawn(request.NewCoordinatorId)))!.Value.TotalSeconds, TtlSeconds - 100, TtlSeconds);
    }

    [Fact]
    public async Task CreateAsync_InvalidIds_ThrowsAndWritesNothing()
    {
        await using var h = Harness.Create(server);
        var spawns = Spawns(h);
        var now = await RedisKit.NowAsync(h.Database);

        await Assert.ThrowsAsync<InvalidIdException>(() => spawns.CreateAsync(NewRequest("swarm-1", now, id: "bad:id")));
        await Assert.ThrowsAsync<InvalidIdException>(() => spawns.CreateAsync(NewRequest("bad swarm", now, id: "coord-ok-spawn")));

        Assert.False(await h.Database.KeyExistsAsync("coordinator:spawn:coord-ok-spawn"));
        Assert.Null(await h.Database.SortedSetScoreAsync(Keys.SpawnIndex, "coord-ok-spawn"));
    }

    [Fact]
    public async Task GetAsync_MissingOrMalformed_ReturnsNull()
    {
        await using var h = Harness.Create(server);
        var spawns = Spawns(h);
        var malformed = TestIds.New("coord");
        await h.Database.StringSetAsync(Keys.Spawn(malformed), "{oops", TimeSpan.FromMinutes(1));

        Assert.Null(await spawns.GetAsync(TestIds.New("missing")));
        Assert.Null(await spawns.GetAsync(malformed));
        Assert.False(await spawns.TryMoveAsync(malformed, SpawnStatus.Pending, SpawnStatus.Spawning));
    }

    [Fact]
    public async Task ListAsync_SinceTime_OldestFirstAndExpiredPruned()
    {
        await using var h = Harness.Create(server);
        var spawns = Spawns(h);
        var now = await RedisKit.NowAsync(h.Database);
        var swarm = TestIds.New("swarm");
        var a = NewRequest(swarm, now + 1);
        var b = NewRequest(swarm, now + 2);
        var c = NewRequest(swarm, now + 3);
        var expired = NewRequest(swarm, now - ((TtlSeconds + 60) * 1000L));
        foreach (var request in new[] { c, a, expired, b })
        {
            Assert.True(await spawns.CreateAsync(request));
        }

        var all = await spawns.ListAsync(now);
        var later = await spawns.ListAsync(now + 2);

        var mine = new[] { a.NewCoordinatorId, b.NewCoordinatorId, c.NewCoordinatorId };
        Assert.Equal(mine, all.Where(mine.Contains));
        Assert.Equal([b.NewCoordinatorId, c.NewCoordinatorId], later.Where(mine.Contains));
        Assert.DoesNotContain(expired.NewCoordinatorId, await spawns.ListAsync());
        Assert.Null(await h.Database.SortedSetScoreAsync(Keys.SpawnIndex, expired.NewCoordinatorId));
    }

    [Fact]
    public void NewCoordinatorId_ThousandIds_DnsCompatibleAndDistinct()
    {
        var ids = Enumerable.Range(0, 1000).Select(_ => SpawnRequests.NewCoordinatorId(1_700_000_000_000)).ToList();

        Assert.All(ids, id => Assert.Matches(NewIdPattern(), id));
        Assert.All(ids, id => Assert.True(Ids.IsValidName(id)));
        Assert.Equal(ids.Count, ids.Distinct(StringComparer.Ordinal).Count());
        Assert.StartsWith("coordinator-1700000000000-", ids[0], StringComparison.Ordinal);
    }

    [GeneratedRegex(@"^coordinator-\d{13}-[0-9a-z]{8}$")]
    private static partial Regex NewIdPattern();
}
