using System.Globalization;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Signals;
using Cfn.Coordination.Tests.Infrastructure;
using Cfn.Coordination.Validation;

namespace Cfn.Coordination.Tests.Recovery;

/// <summary>
/// Cleaning a validator (SPEC §2.12): its heartbeat key <c>validator:heartbeat:{id}</c> is one of its keys, and a fresh
/// one refuses an unforced cleanup exactly as a fresh K1 does.
/// </summary>
[Collection(RedisCollection.Name)]
public sealed class ValidatorCleanupTests(RedisServer server)
{
    [Fact]
    public async Task CleanupAsync_Validator_FreshOwnHeartbeatRefusesUnforced_ForcedRemovesEveryKey()
    {
        await using var h = Harness.Create(server);
        var cleanup = new CoordinatorCleanup(h.Redis, new RecoveryOptions(), new RecoveryMetrics(h.Registry));
        var coordinator = await h.StartAsync(swarmId: TestIds.New("swarm"));
        var v = await h.StartAsync(TestIds.New("v"), Keys.ValidatorSwarm);
        try
        {
            await new ValidatorRegistry(h.Redis).RegisterAsync(v.Id);
            await coordinator.Signals.SendAsync(v.Id, SignalTypes.StatusUpdate, 1); // pending in its inbox
            // Only the validator's own key can show it is alive: the registry entry is gone (e.g. removed by hand).
            await h.Database.SortedSetRemoveAsync(Keys.Registry, v.Id);

            var refused = await cleanup.CleanupAsync(v.Id);

            Assert.True(refused.Refused, "a validator whose own heartbeat is fresh was cleaned without force");
            Assert.True(await h.Database.KeyExistsAsync(Keys.ValidatorHeartbeat(v.Id)));

            await v.AbandonAsync();
            var result = await cleanup.CleanupAsync(v.Id, force: true);

            Assert.False(result.Refused);
            Assert.Equal(1, result.Categories[KeyOwnership.Heartbeat]);
            Assert.Equal(1, result.Categories[KeyOwnership.Activity]);
            Assert.Equal(2, result.Categories[KeyOwnership.Signals]); // its inbox and K2
            Assert.False(await h.Database.KeyExistsAsync(Keys.ValidatorHeartbeat(v.Id)));
            Assert.False(await h.Database.KeyExistsAsync(Keys.Heartbeat(v.Id)));
            Assert.Empty(await ScanAsync($"blocking:*{v.Id}*"));
            Assert.Empty(await ScanAsync($"validator:heartbeat:{v.Id}"));
            Assert.Null(await h.Database.SortedSetScoreAsync(Keys.Validators, v.Id));
            Assert.False(await h.Database.HashExistsAsync(Keys.Swarms, v.Id));
            // The coordinator is not touched.
            Assert.True(await h.Database.KeyExistsAsync(Keys.Heartbeat(coordinator.Id)));
        }
        finally
        {
            await RecoveryKit.ForgetAsync(h.Database, v.Id);
        }
    }

    [Fact]
    public async Task CleanupAsync_StaleValidatorHeartbeat_UnforcedCleanupDeletesIt()
    {
        await using var h = Harness.Create(server);
        var cleanup = new CoordinatorCleanup(h.Redis, new RecoveryOptions(), new RecoveryMetrics(h.Registry));
        var id = TestIds.New("v");
        var old = await RedisKit.NowAsync(h.Database) - 600_000;
        try
        {
            await h.Database.SortedSetAddAsync(Keys.Registry, id, old);
            await h.Database.HashSetAsync(Keys.Swarms, id, Keys.ValidatorSwarm);
            await h.Database.StringSetAsync(Keys.ValidatorHeartbeat(id), string.Create(CultureInfo.InvariantCulture,
                $"{{\"timestamp\":{old},\"lastHeartbeat\":{old},\"coordinatorId\":\"{id}\",\"swarmId\":\"validators\"}}"), TimeSpan.FromMinutes(5));

            var result = await cleanup.CleanupAsync(id);

            Assert.False(result.Refused);
            Assert.Equal(1, result.Categories[KeyOwnership.Heartbeat]);
            Assert.False(await h.Database.KeyExistsAsync(Keys.ValidatorHeartbeat(id)));
            Assert.Null(await h.Database.SortedSetScoreAsync(Keys.Registry, id));
        }
        finally
        {
            await RecoveryKit.ForgetAsync(h.Database, id);
        }
    }

    private async Task<List<string>> ScanAsync(string pattern)
    {
        var keys = new List<string>();
        await foreach (var key in server.Server.KeysAsync(0, pattern, pageSize: 1000))
        {
            keys.Add(key!);
        }

        return keys;
    }
}
