using System.Text.Json;
using System.Text.RegularExpressions;
using Cfn.Coordination.Acks;
using Cfn.Coordination.Tests.Infrastructure;
using Microsoft.Extensions.Time.Testing;
using StackExchange.Redis;

namespace Cfn.Coordination.Tests.Activity;

/// <summary>K7 <c>coordinator:activity:{id}</c> (SPEC K7, D5, W32): written on progress, kept alive by heartbeats.</summary>
[Collection(RedisCollection.Name)]
public sealed partial class ActivityRecorderTests(RedisServer server)
{
    [Fact]
    public async Task StartAsync_WritesActivity_WithRequiredFields()
    {
        await using var h = Harness.Create(server);
        var swarm = TestIds.New("swarm");
        var c = await h.StartAsync(swarmId: swarm);

        var raw = await ReadRawAsync(h.Database, "coordinator:activity:" + c.Id);
        var k7 = Parse(raw);
        var redisNow = await Probe.RedisNowMsAsync(h.Database);

        Assert.Equal(c.Id, k7.GetProperty("coordinatorId").GetString());
        Assert.Equal(swarm, k7.GetProperty("swarmId").GetString());
        Assert.True(k7.GetProperty("lastActivity").TryGetInt64(out var lastActivity));
        Assert.Matches(LastActivityRegex(), raw); // bare integer: the runbook's bash arithmetic ($LAST / 1000) needs it
        Assert.InRange(redisNow - lastActivity, -2000, 2000);
        Assert.Equal(0, k7.GetProperty("iteration").GetInt32());
        Assert.Equal("idle", k7.GetProperty("status").GetString());
        Assert.False(k7.TryGetProperty("waitingFor", out _));
        Assert.Equal(lastActivity, c.Activity.LastActivity);
    }

    [Fact]
    public async Task RecordAsync_ProcessClockIn2001_LastActivityIsRedisTime()
    {
        var fake = new FakeTimeProvider(new DateTimeOffset(2001, 9, 9, 1, 46, 40, TimeSpan.Zero));
        await using var h = Harness.Create(server, time: fake);
        var c = await h.StartAsync();

        await c.SetIterationAsync(1);
        var redisNow = await Probe.RedisNowMsAsync(h.Database);
        var lastActivity = Parse(await ReadRawAsync(h.Database, "coordinator:activity:" + c.Id)).GetProperty("lastActivity").GetInt64();

        Assert.InRange(redisNow - lastActivity, -2000, 2000);
    }

    [Fact]
    public async Task BeatAsync_ExistingActivity_RefreshesTtlWithoutMovingLastActivity()
    {
        await using var h = Harness.Create(server);
        var c = await h.StartAsync();
        var key = "coordinator:activity:" + c.Id;
        var before = await ReadRawAsync(h.Database, key);
        Assert.True(await h.Database.KeyExpireAsync(key, TimeSpan.FromSeconds(50)));
        // Both clocks are Redis's: wait until its TIME has passed the last activity (so a moved one would show) and the
        // 50 s TTL has run down below 50 s (so only a refresh can lift it above).
        var lastActivity = Parse(before).GetProperty("lastActivity").GetInt64();
        await EventuallyAsync(async () => await Probe.RedisNowMsAsync(h.Database) > lastActivity &&
                                          await h.Database.KeyTimeToLiveAsync(key) is { } left && left < TimeSpan.FromSeconds(50),
            "the Redis clock never moved past the last activity");

        Assert.True(await c.Heartbeats.BeatAsync());

        var after = await ReadRawAsync(h.Database, key);
        Assert.Equal(Parse(before).GetProperty("lastActivity").GetInt64(), Parse(after).GetProperty("lastActivity").GetInt64());
        Assert.Equal(before, after);
        var ttl = await h.Database.KeyTimeToLiveAsync(key);
        Assert.NotNull(ttl);
        Assert.True(ttl.Value.TotalSeconds > 50, $"TTL {ttl} was not refreshed");
        Assert.True(ttl.Value.TotalSeconds <= h.Options.ActivityTtlSeconds);
    }

    [Fact]
    public async Task SetIterationAsync_NewIteration_MovesLastActivityAndIteration()
    {
        await using var h = Harness.Create(server);
        var c = await h.StartAsync();
        var key = "coordinator:activity:" + c.Id;
        var before = Parse(await ReadRawAsync(h.Database, key)).GetProperty("lastActivity").GetInt64();
        await EventuallyAsync(async () => await Probe.RedisNowMsAsync(h.Database) > before, "the Redis clock never moved past the last activity");

        await c.SetIterationAsync(3, "loop-2-validation");

        var k7 = Parse(await ReadRawAsync(h.Database, key));
        Assert.True(k7.GetProperty("lastActivity").GetInt64() > before);
        Assert.Equal(3, k7.GetProperty("iteration").GetInt32());
        Assert.Equal("loop-2-validation", k7.GetProperty("phase").GetString());
        Assert.Equal(k7.GetProperty("lastActivity").GetInt64(), c.Activity.LastActivity);
        // The next heartbeat carries the iteration too.
        Assert.True(await c.Heartbeats.BeatAsync());
        var k1 = Parse(await ReadRawAsync(h.Database, "blocking:heartbeat:" + c.Id));
        Assert.Equal(3, k1.GetProperty("iteration").GetInt32());
    }

    [Fact]
    public async Task ActivityTtl_OneHourBlockingTimeout_OutlivesTimeoutPlusCheckInterval()
    {
        // SPEC K7, W32, §7.14 item 6: with BLOCKING_TIMEOUT_MS=3600000 the key must not expire before the timeout fires.
        await using var h = Harness.Create(server, o =>
        {
            o.BlockingTimeout = TimeSpan.FromSeconds(3600);
            o.ActivityCheckInterval = TimeSpan.FromSeconds(30);
        });
        var c = await h.StartAsync();

        Assert.True(h.Options.ActivityTtlSeconds >= 3600 + 30, $"ActivityTtlSeconds = {h.Options.ActivityTtlSeconds}");
        var ttl = await h.Database.KeyTimeToLiveAsync("coordinator:activity:" + c.Id);
        Assert.NotNull(ttl);
        Assert.True(ttl.Value.TotalSeconds > 3600 + 30 - 5, $"K7 TTL {ttl}");
        Assert.True(ttl.Value.TotalSeconds <= h.Options.ActivityTtlSeconds);

        await h.Database.KeyExpireAsync("coordinator:activity:" + c.Id, TimeSpan.FromSeconds(10));
        Assert.True(await c.Heartbeats.BeatAsync());
        ttl = await h.Database.KeyTimeToLiveAsync("coordinator:activity:" + c.Id);
        Assert.True(ttl!.Value.TotalSeconds > 3600, $"K7 TTL after a heartbeat {ttl}");
    }

    [Fact]
    public async Task ActivityTtl_DefaultOptions_NeverBelowTsValue()
    {
        await using var h = Harness.Create(server);
        var c = await h.StartAsync();

        var ttl = await h.Database.KeyTimeToLiveAsync("coordinator:activity:" + c.Id);

        Assert.True(h.Options.ActivityTtlSeconds >= 600);
        Assert.True(h.Options.ActivityTtlSeconds >= (h.Options.BlockingTimeout + h.Options.ActivityCheckInterval).TotalSeconds);
        Assert.True(ttl!.Value.TotalSeconds > 590);
    }

    [Fact]
    public async Task WaitForAcks_WhileBlocking_RecordsWaitingForThenClearsIt()
    {
        await using var h = Harness.Create(server);
        var c = await h.StartAsync();
        var peerA = TestIds.New("peer-a");
        var peerB = TestIds.New("peer-b");
        var signalId = TestIds.New("sig");
        using var cts = new CancellationTokenSource();

        var waiting = c.Waiter.WaitForAcksAsync([peerA, peerB], signalId, TimeSpan.FromMinutes(5), cts.Token);
        var k7 = await PollActivityAsync(h.Database, c.Id, e => e.GetProperty("status").GetString() == "blocking");

        Assert.Equal(peerA + "," + peerB, k7.GetProperty("waitingFor").GetString());
        Assert.Equal(signalId, k7.GetProperty("waitingForSignal").GetString());
        Assert.Equal(300_000, k7.GetProperty("timeoutMs").GetInt64());
        Assert.True(k7.GetProperty("blockingSince").TryGetInt64(out _));
        Assert.Equal("blocking", c.Status);

        await cts.CancelAsync();
        var result = await waiting;
        Assert.Equal(AckWaitStatus.Cancelled, result.Status);
        var after = Parse(await ReadRawAsync(h.Database, "coordinator:activity:" + c.Id));
        Assert.Equal("idle", after.GetProperty("status").GetString());
        Assert.False(after.TryGetProperty("waitingFor", out _));
        Assert.False(after.TryGetProperty("waitingForSignal", out _));
    }

    [Fact]
    public async Task WaitForAcks_ProcessClockIn2001_BlockingSinceIsRedisTime()
    {
        // D5: stored liveness times come from the Redis clock. blockingSince is compared with "now" by whoever reads
        // K7 (a stuck wait is one whose blockingSince is old), so it must not carry the coordinator's clock skew.
        var fake = new FakeTimeProvider(new DateTimeOffset(2001, 9, 9, 1, 46, 40, TimeSpan.Zero));
        await using var h = Harness.Create(server, time: fake);
        var c = await h.StartAsync();
        using var cts = new CancellationTokenSource();

        var waiting = c.Waiter.WaitForAcksAsync([TestIds.New("peer")], TestIds.New("sig"), TimeSpan.FromMinutes(5), cts.Token);
        try
        {
            var k7 = await PollActivityAsync(h.Database, c.Id, e => e.GetProperty("status").GetString() == "blocking");
            var redisNow = await Probe.RedisNowMsAsync(h.Database);

            Assert.InRange(redisNow - k7.GetProperty("lastActivity").GetInt64(), -2000, 2000);
            Assert.InRange(redisNow - k7.GetProperty("blockingSince").GetInt64(), -2000, 10_000);
        }
        finally
        {
            await cts.CancelAsync();
            await waiting;
        }
    }

    [Fact]
    public async Task SetIterationAsync_PhaseLooksLikeTimePlaceholder_StoredVerbatim()
    {
        // The Redis-clock placeholder must only replace lastActivity, never the text of another field.
        await using var h = Harness.Create(server);
        var c = await h.StartAsync();

        await c.SetIterationAsync(2, "__NOW__");

        var k7 = Parse(await ReadRawAsync(h.Database, "coordinator:activity:" + c.Id));
        Assert.Equal(JsonValueKind.String, k7.GetProperty("phase").ValueKind);
        Assert.Equal("__NOW__", k7.GetProperty("phase").GetString());
    }

    [Fact]
    public async Task RecordAsync_Working_StatusIsWorking()
    {
        await using var h = Harness.Create(server);
        var c = await h.StartAsync();

        c.IsWorking = true;
        await c.Activity.RecordAsync();

        Assert.Equal("working", Parse(await ReadRawAsync(h.Database, "coordinator:activity:" + c.Id)).GetProperty("status").GetString());
    }

    [Fact]
    public async Task DeadlinesIndex_WaitsAndIdleWritesInTurn_HoldsTheDeadlineOnlyWhileWaiting()
    {
        // A write without a wait skips its ZREM once the index is known to hold none of the writer's deadlines: the
        // index must still never keep one after a wait ends, nor keep one an earlier instance of the ID left.
        await using var h = Harness.Create(server);
        var id = TestIds.New("coord");
        await h.Database.SortedSetAddAsync("coordinator:deadlines", id, 1); // left by an earlier instance
        var c = await h.StartAsync(id: id);
        Assert.Null(await h.Database.SortedSetScoreAsync("coordinator:deadlines", id));

        for (var round = 0; round < 3; round++)
        {
            await c.Activity.RecordAsync();
            await c.Activity.RecordAsync();
            Assert.Null(await h.Database.SortedSetScoreAsync("coordinator:deadlines", id));

            using var cts = new CancellationTokenSource();
            var waiting = c.Waiter.WaitForAcksAsync([TestIds.New("peer")], TestIds.New("sig"), TimeSpan.FromMinutes(5), cts.Token);
            await EventuallyAsync(() => h.Database.SortedSetScoreAsync("coordinator:deadlines", id), score => score is not null,
                $"round {round}: the wait's deadline never reached the index", TimeSpan.FromSeconds(20), pollMs: 25);
            await c.Activity.RecordAsync(); // a progress write while waiting keeps the deadline
            Assert.NotNull(await h.Database.SortedSetScoreAsync("coordinator:deadlines", id));

            await cts.CancelAsync();
            Assert.Equal(AckWaitStatus.Cancelled, (await waiting).Status);
            await c.Activity.RecordAsync();
            Assert.Null(await h.Database.SortedSetScoreAsync("coordinator:deadlines", id));
        }
    }

    [Fact]
    public async Task RecordAsync_IterationPhaseAndWorkingChangeBetweenIdleWrites_EachWriteShowsTheCurrentValues()
    {
        // Writes without a wait reuse the record serialised last until one of these changes.
        await using var h = Harness.Create(server);
        var c = await h.StartAsync();
        var key = "coordinator:activity:" + c.Id;

        c.IsWorking = true;
        await c.Activity.RecordAsync();
        Assert.Equal("working", Parse(await ReadRawAsync(h.Database, key)).GetProperty("status").GetString());
        c.IsWorking = false;
        await c.Activity.RecordAsync();
        Assert.Equal("idle", Parse(await ReadRawAsync(h.Database, key)).GetProperty("status").GetString());
        await c.SetIterationAsync(4, "loop-2-validation");
        await c.Activity.RecordAsync();
        var k7 = Parse(await ReadRawAsync(h.Database, key));
        Assert.Equal(4, k7.GetProperty("iteration").GetInt32());
        Assert.Equal("loop-2-validation", k7.GetProperty("phase").GetString());
        await c.SetIterationAsync(4, "loop-3");
        Assert.Equal("loop-3", Parse(await ReadRawAsync(h.Database, key)).GetProperty("phase").GetString());
    }

    private static async Task<JsonElement> PollActivityAsync(IDatabase database, string id, Func<JsonElement, bool> until) =>
        Parse(await EventuallyAsync(async () => (string?)await database.StringGetAsync("coordinator:activity:" + id),
            raw => raw is not null && until(Parse(raw)), $"K7 of {id} never reached the expected state", TimeSpan.FromSeconds(20), pollMs: 25)
            ?? "");

    private static async Task<string> ReadRawAsync(IDatabase database, string key)
    {
        var raw = (string?)await database.StringGetAsync(key);
        Assert.True(raw is not null, $"{key} is missing");
        return raw;
    }

    private static JsonElement Parse(string raw)
    {
        using var document = JsonDocument.Parse(raw);
        return document.RootElement.Clone();
    }

    [GeneratedRegex("\"lastActivity\":\\d+[,}]")]
    private static partial Regex LastActivityRegex();
}
