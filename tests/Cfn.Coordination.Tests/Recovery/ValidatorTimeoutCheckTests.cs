using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Tests.Infrastructure;

namespace Cfn.Coordination.Tests.Recovery;

/// <summary><c>POST /api/timeouts/force-check</c> on a validator reads its own heartbeat key (it has no K1).</summary>
[Collection(RedisCollection.Name)]
public sealed class ValidatorTimeoutCheckTests(RedisServer server)
{
    [Fact]
    public async Task CheckAsync_LiveValidator_HeartbeatFresh_AbandonedAndStale_TimedOutByHeartbeat()
    {
        await using var h = Harness.Create(server);
        var check = new CoordinatorTimeoutCheck(h.Redis, new RecoveryOptions()); // 120 s stale threshold
        var fast = new CoordinatorTimeoutCheck(h.Redis, RecoveryKit.FastOptions()); // 500 ms
        var v = await h.StartAsync(TestIds.New("v"), Keys.ValidatorSwarm);
        try
        {
            var live = await check.CheckAsync(v.Id);

            Assert.NotNull(live);
            Assert.False(live.TimedOut, live.Reason);
            Assert.StartsWith("Heartbeat fresh", live.Reason, StringComparison.Ordinal);

            await v.AbandonAsync();
            // Staleness is judged on the Redis clock: check until the 500 ms threshold has passed there.
            var stale = await EventuallyAsync(() => fast.CheckAsync(v.Id), s => s is { TimedOut: true }, "the abandoned validator never timed out",
                describe: s => s?.Reason ?? "no result");

            Assert.NotNull(stale);
            Assert.True(stale.TimedOut);
            Assert.Equal("heartbeat", stale.Kind);
            Assert.StartsWith("Heartbeat stale for", stale.Reason, StringComparison.Ordinal);
        }
        finally
        {
            await RecoveryKit.ForgetAsync(h.Database, v.Id);
        }
    }
}
