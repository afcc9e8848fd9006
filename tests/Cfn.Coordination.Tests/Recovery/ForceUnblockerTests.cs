using System.Globalization;
using Cfn.Coordination.Acks;
using Cfn.Coordination.Identity;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;

using Cfn.Coordination.Tests.Infrastructure;
using Microsoft.Extensions.Logging;

namespace Cfn.Coordination.Tests.Recovery;

/// <summary>
/// Force-unblock (SPEC §3.1 #6, L17, §7.8 item 10): a marker <c>blocking:unblock:{id}</c> with the request's Redis time
/// plus a wake-up; the coordinator's running waits end with status <c>forced</c>, later waits are unaffected, cleanup
/// removes the marker.
/// </summary>
[Collection(RedisCollection.Name)]
public sealed class ForceUnblockerTests(RedisServer server)
{
    private static Harness NewHarness(RedisServer server) =>
        Harness.Create(server, o => o.AckFallbackPollInterval = TimeSpan.FromMilliseconds(50));

    /// <summary>Starts a wait on an ACK nobody will write and returns once it is announced (its deadline is indexed).</summary>
    private static async Task<(Task<AckWaitResult> Wait, string SignalId, string Peer)> StartWaitAsync(Harness h, Coordinator c, TimeSpan timeout)
    {
        var peer = TestIds.New("peer");
        var signalId = $"{c.Id}:{peer}:completion:1:{Environment.TickCount64}";
        var wait = c.Waiter.WaitForAcksAsync([peer], signalId, timeout);
        Assert.True(await EventuallyAsync(
            async () => await h.Database.SortedSetScoreAsync(Keys.Deadlines, c.Id) is not null, TimeSpan.FromSeconds(5)),
            "the wait was never announced");
        return (wait, signalId, peer);
    }

    [Fact]
    public async Task UnblockAsync_RunningWait_EndsForcedAndLogsForceUnblockReceived()
    {
        await using var h = NewHarness(server);
        var c = await h.StartAsync(swarmId: TestIds.New("swarm"));
        var unblocker = new ForceUnblocker(h.Redis);
        var (wait, signalId, peer) = await StartWaitAsync(h, c, TimeSpan.FromSeconds(30));

        Assert.True(await unblocker.UnblockAsync(c.Id));
        var result = await wait.WaitAsync(TimeSpan.FromSeconds(5));

        Assert.Equal(AckWaitStatus.Forced, result.Status);
        Assert.Equal([peer], result.Missing);
        Assert.Empty(result.Acks);
        var line = Assert.Single(RecoveryKit.Lines(h, "Force unblock received", signalId));
        Assert.Equal(LogLevel.Warning, line.Level);
        Assert.Contains("received=0/1", line.Message, StringComparison.Ordinal);
        var marker = (string?)await h.Database.StringGetAsync(Keys.Unblock(c.Id));
        Assert.True(long.TryParse(marker, NumberStyles.None, CultureInfo.InvariantCulture, out var at) && at > 0, $"marker {marker}");
        Assert.InRange((await h.Database.KeyTimeToLiveAsync(Keys.Unblock(c.Id)))!.Value.TotalSeconds, 1, 300);
        Assert.Equal(1, h.Metrics.BlockingDuration.WithLabels(c.SwarmId, c.Id, "forced").Count);
        Assert.Equal(0, h.Metrics.TimeoutEvents.WithLabels(c.Id, "blocking", "blocking").Value);
    }

    [Fact]
    public async Task UnblockAllAsync_ThreeBlockingOneIdle_ReturnsBlockingIdsAndForcesAllTheirWaits()
    {
        await using var h = NewHarness(server);
        var swarm = TestIds.New("swarm");
        var unblocker = new ForceUnblocker(h.Redis);
        var blocking = new List<Coordinator>();
        var waits = new List<Task<AckWaitResult>>();
        for (var i = 0; i < 3; i++)
        {
            var c = await h.StartAsync(swarmId: swarm);
            blocking.Add(c);
            waits.Add((await StartWaitAsync(h, c, TimeSpan.FromSeconds(30))).Wait);
        }

        var second = (await StartWaitAsync(h, blocking[0], TimeSpan.FromSeconds(30))).Wait; // two waits on one coordinator
        var idle = await h.StartAsync(swarmId: swarm);

        var unblocked = await unblocker.UnblockAllAsync();

        Assert.All(blocking, c => Assert.Contains(c.Id, unblocked));
        Assert.DoesNotContain(idle.Id, unblocked);
        Assert.Equal(unblocked.Count, unblocked.Distinct(StringComparer.Ordinal).Count());
        var results = await Task.WhenAll(waits.Append(second)).WaitAsync(TimeSpan.FromSeconds(5));
        Assert.All(results, r => Assert.Equal(AckWaitStatus.Forced, r.Status));
        Assert.False(await h.Database.KeyExistsAsync(Keys.Unblock(idle.Id)));
    }

    [Fact]
    public async Task WaitForAcksAsync_MarkerSetAfterStartWakeUpLostWithTheConnection_ForcedAfterTheReconnect()
    {
        // The pub/sub wake-up is lost with a dropped connection (simulated: the marker is written by hand, nothing is
        // published, then the server closes the subscription). The re-check after the reconnect must see a marker
        // newer than the wait and end it as forced.
        await using var h = await Harness.CreateIsolatedAsync(server, o => o.AckFallbackPollInterval = TimeSpan.FromMilliseconds(50));
        var c = await h.StartAsync(swarmId: TestIds.New("swarm"));
        var (wait, _, _) = await StartWaitAsync(h, c, TimeSpan.FromSeconds(6));
        // The wait has read once (its announcement wrote its start into K7): the marker must be newer than that start.
        var started = (await Probe.ReadJsonAsync(h.Database, Keys.Activity(c.Id)!)).GetProperty("lastActivity").GetInt64();
        await EventuallyAsync(async () => await RedisKit.NowAsync(h.Database) > started, "the Redis clock never moved past the wait's start");

        var now = await RedisKit.NowAsync(h.Database);
        await h.Database.StringSetAsync(Keys.Unblock(c.Id), now.ToString(CultureInfo.InvariantCulture), ForceUnblocker.MarkerTtl);
        Assert.True(await h.KillSubscriptionAsync() > 0);
        var result = await wait.WaitAsync(TimeSpan.FromSeconds(10));

        Assert.Equal(AckWaitStatus.Forced, result.Status);
        Assert.True(result.Duration < TimeSpan.FromSeconds(5), $"forced only after {result.Duration.TotalMilliseconds} ms");
    }

    [Fact]
    public async Task WaitForAcksAsync_StartedAfterMarker_NotForced()
    {
        await using var h = NewHarness(server);
        var c = await h.StartAsync(swarmId: TestIds.New("swarm"));
        var unblocker = new ForceUnblocker(h.Redis);
        Assert.False(await unblocker.UnblockAsync(c.Id)); // nothing was blocking
        Assert.True(await h.Database.KeyExistsAsync(Keys.Unblock(c.Id)));
        var marker = (long)await h.Database.StringGetAsync(Keys.Unblock(c.Id));
        await EventuallyAsync(async () => await RedisKit.NowAsync(h.Database) > marker, "the Redis clock never moved past the marker");

        var peer = TestIds.New("peer");
        var result = await c.Waiter.WaitForAcksAsync([peer], $"{c.Id}:{peer}:completion:1:1", TimeSpan.FromMilliseconds(700));

        Assert.Equal(AckWaitStatus.Timeout, result.Status);
        Assert.True(result.Duration >= TimeSpan.FromMilliseconds(600), $"ended after {result.Duration.TotalMilliseconds} ms");
        Assert.Empty(RecoveryKit.Lines(h, "Force unblock received", c.Id));
    }

    [Fact]
    public async Task CleanupAsync_AfterUnblock_MarkerRemoved()
    {
        await using var h = NewHarness(server);
        var c = await h.StartAsync(swarmId: TestIds.New("swarm"));
        await new ForceUnblocker(h.Redis).UnblockAsync(c.Id);
        Assert.True(await h.Database.KeyExistsAsync(Keys.Unblock(c.Id)));
        var cleanup = new CoordinatorCleanup(h.Redis, new RecoveryOptions(), new RecoveryMetrics(h.Registry));

        var result = await cleanup.CleanupAsync(c.Id, force: true);

        Assert.False(await h.Database.KeyExistsAsync(Keys.Unblock(c.Id)));
        Assert.True(result.Categories[KeyOwnership.Other] >= 1);
    }

    [Fact]
    public async Task StopAsync_AfterUnblock_MarkerRemoved()
    {
        await using var h = NewHarness(server);
        var c = await h.StartAsync(swarmId: TestIds.New("swarm"));
        await new ForceUnblocker(h.Redis).UnblockAsync(c.Id);

        await c.StopAsync();

        Assert.False(await h.Database.KeyExistsAsync(Keys.Unblock(c.Id)));
    }

    [Theory]
    [InlineData("a:b")]
    [InlineData("*")]
    [InlineData("")]
    public async Task UnblockAsync_InvalidId_ThrowsAndWritesNothing(string id)
    {
        await using var h = NewHarness(server);
        var unblocker = new ForceUnblocker(h.Redis);

        await Assert.ThrowsAsync<InvalidIdException>(() => unblocker.UnblockAsync(id));

        Assert.False(await h.Database.KeyExistsAsync("blocking:unblock:" + id));
    }
}
