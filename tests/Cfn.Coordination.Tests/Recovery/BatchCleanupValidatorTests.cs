using System.Globalization;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Tests.Infrastructure;

namespace Cfn.Coordination.Tests.Recovery;

/// <summary>The batch cleanup finds validators by their own heartbeat key as it finds coordinators by K1.</summary>
public sealed partial class BatchCleanupTests
{
    [Fact]
    public async Task RunAsync_Validators_StaleOneFoundByItsOwnHeartbeatKeyAndCleaned_FreshOneKept()
    {
        await using var w = await World.CreateAsync(server);
        var db = w.Database;
        var now = await RedisKit.NowAsync(db);
        // Only a heartbeat key, no registry entry: the batch must scan validator:heartbeat:* to find it.
        var staleKeys = new[] { "validator:heartbeat:stale-v", "blocking:unblock:stale-v", "coordinator:activity:stale-v" };
        foreach (var key in staleKeys)
        {
            await db.StringSetAsync(key, string.Create(CultureInfo.InvariantCulture, $"{{\"timestamp\":{now - 700_000},\"coordinatorId\":\"stale-v\"}}"));
        }

        await db.StringSetAsync("validator:heartbeat:fresh-v", string.Create(CultureInfo.InvariantCulture, $"{{\"timestamp\":{now - 1_000},\"coordinatorId\":\"fresh-v\"}}"));
        await db.SortedSetAddAsync(Keys.Registry, "fresh-v", now - 1_000);

        var report = await w.RunAsync(dryRun: false);

        Assert.Equal(0, report.ExitCode);
        Assert.Equal(2, report.CoordinatorsChecked);
        Assert.Equal(["stale-v"], report.StaleCoordinatorIds);
        Assert.Equal(3, report.KeysDeleted);
        foreach (var key in staleKeys)
        {
            Assert.False(await db.KeyExistsAsync(key), key);
        }

        Assert.True(await db.KeyExistsAsync("validator:heartbeat:fresh-v"));
        Assert.Contains(w.Messages, m => m.StartsWith("Coordinator active: fresh-v", StringComparison.Ordinal));
    }
}
