using System.Globalization;
using Cfn.Coordination.Detection;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Tests.Infrastructure;

namespace Cfn.Coordination.Tests.Detection;

/// <summary>
/// The monitor judges validators (registry members of the swarm <c>validators</c>) by their own heartbeat key and
/// coordinators by K1; the kind comes from <c>coordinator:swarms</c>, never from the ID.
/// </summary>
[Collection(RedisCollection.Name)]
public sealed class ValidatorDetectionTests(RedisServer server)
{
    [Fact]
    public async Task RunOnceAsync_RegistryStale_EachKindJudgedByItsOwnHeartbeatKey()
    {
        await using var h = Harness.Create(server);
        await using var monitor = new HeartbeatMonitor(h.Redis, RecoveryKit.FastOptions(), h.Metrics, new RecoveryMetrics(h.Registry),
            null, TestIds.New("monitor"));
        // Both named alike, so only the swarm can tell them apart.
        var validator = TestIds.New("member");
        var coordinator = TestIds.New("member");
        try
        {
            var now = await RedisKit.NowAsync(h.Database);
            foreach (var (id, swarm) in new[] { (validator, Keys.ValidatorSwarm), (coordinator, TestIds.New("swarm")) })
            {
                await h.Database.SortedSetAddAsync(Keys.Registry, id, now - 60_000);
                await h.Database.HashSetAsync(Keys.Swarms, id, swarm);
                // Each writes a fresh beat to the validator key only (as a hand-written or foreign writer might).
                await h.Database.StringSetAsync(Keys.ValidatorHeartbeat(id), string.Create(CultureInfo.InvariantCulture,
                    $"{{\"timestamp\":{now},\"lastHeartbeat\":{now},\"coordinatorId\":\"{id}\",\"swarmId\":\"{swarm}\"}}"), TimeSpan.FromMinutes(1));
            }

            await monitor.RunOnceAsync();

            // The validator's own key is read: fresh. The coordinator's K1 is read (absent): stale, warned.
            Assert.Empty(RecoveryKit.Lines(h, "Stale heartbeat detected", $"coordinator={validator} "));
            Assert.Single(RecoveryKit.Lines(h, "Stale heartbeat detected", $"coordinator={coordinator} "));
            Assert.False(await h.Database.HashExistsAsync(Keys.Health, validator));
            Assert.True(await h.Database.HashExistsAsync(Keys.Health, coordinator));
        }
        finally
        {
            await RecoveryKit.ForgetAsync(h.Database, validator, coordinator);
            await h.Database.KeyDeleteAsync([Keys.ValidatorHeartbeat(validator), Keys.ValidatorHeartbeat(coordinator)]);
        }
    }

    [Fact]
    public async Task RunOnceAsync_AbandonedValidator_WarnedThenDeclaredDeadInTheValidatorsSwarm()
    {
        await using var h = Harness.Create(server);
        await using var monitor = new HeartbeatMonitor(h.Redis, RecoveryKit.FastOptions(), h.Metrics, new RecoveryMetrics(h.Registry),
            null, TestIds.New("monitor"));
        var v = await h.StartAsync(TestIds.New("anything"), Keys.ValidatorSwarm);
        await v.AbandonAsync();
        try
        {
            var (death, _) = await RecoveryKit.RunUntilDeadAsync(h, monitor, v.Id, TimeSpan.FromSeconds(10));

            Assert.NotNull(death);
            Assert.Equal(Keys.ValidatorSwarm, death.SwarmId);
            Assert.NotEmpty(RecoveryKit.Lines(h, "Stale heartbeat detected", $"coordinator={v.Id} "));
            Assert.False(await h.Database.KeyExistsAsync(Keys.Heartbeat(v.Id)), "a validator wrote K1");
        }
        finally
        {
            await RecoveryKit.ForgetAsync(h.Database, v.Id);
        }
    }
}
