using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Tests.Infrastructure;
using StackExchange.Redis;

namespace Cfn.Coordination.Tests.Detection;

/// <summary>
/// A process restarting under the ID of a dead instance races the monitor's verdict on that instance. The new instance
/// takes its epoch and shows itself alive in one script (<c>epoch_claim.lua</c>), so a verdict that comes after the
/// claim, before the first heartbeat, finds a fresh ID and fences nothing; before this, the claim was a bare INCR and
/// such a verdict fenced the new process (the 10-minute chaos run saw it crash or be counted as a false death).
/// </summary>
[Collection(RedisCollection.Name)]
public sealed class RestartRaceTests(RedisServer server)
{
    [Fact]
    public async Task EpochClaim_VerdictOnPreviousInstanceDue_NextPassFindsTheIdFreshAndFencesNothing()
    {
        await using var h = Harness.Create(server);
        // A database of its own: on database 0 other tests' monitors and cleanups judge every registered ID too.
        await using var db = await DedicatedDatabase.CreateAsync(server, h, DedicatedDatabase.RestartRaceTests);
        var database = db.Database;
        var options = RecoveryKit.FastOptions();
        await using var handler = new TimeoutHandler(db.Redis, h.Keys, options, h.Metrics, new RecoveryMetrics(h.Registry), TestIds.New("handler"));
        var swarm = TestIds.New("swarm");
        var previous = await db.StartAsync(h, TestIds.New("coord"), swarm);
        var id = previous.Id;
        await previous.AbandonAsync();
        try
        {
            // Passes until the previous instance holds all its warnings but the last: the next due pass would declare it dead.
            Assert.True(await EventuallyAsync(async () =>
            {
                var pass = await handler.Monitor.RunOnceAsync();
                Assert.DoesNotContain(pass.Deaths, d => d.CoordinatorId == id);
                var state = (string?)await database.HashGetAsync(Keys.Health, id);
                return state is not null && state.StartsWith($"{options.MaxWarnings - 1}|", StringComparison.Ordinal);
            }, TimeSpan.FromSeconds(10)), "the crashed instance never reached its last warning but one");

            // A new instance claims its epoch (the first step of Coordinator.StartAsync); the monitor's next pass comes
            // after the warning spacing and before the new instance's first heartbeat.
            var claimed = (long)await database.ScriptEvaluateAsync(RedisScripts.EpochClaim, [Keys.Epoch(id), Keys.Registry, Keys.Swarms, Keys.Agents], [id, swarm, ""]);
            Assert.Equal(previous.Epoch + 1, claimed);
            // Past the warning spacing on the Redis clock (monitor_check.lua judges by TIME), so the pass judges rather than waits.
            var lastWarn = long.Parse(((string)(await database.HashGetAsync(Keys.Health, id))!).Split('|')[1], System.Globalization.CultureInfo.InvariantCulture);
            await EventuallyAsync(async () => await RedisKit.NowAsync(database) > lastWarn + (long)options.MonitorInterval.TotalMilliseconds,
                "the Redis clock never passed the warning spacing");
            var score = await database.SortedSetScoreAsync(Keys.Registry, id);
            var now = await RedisKit.NowAsync(database);
            var next = await handler.Monitor.RunOnceAsync();

            Assert.False(next.Deaths.Any(d => d.CoordinatorId == id),
                $"the new instance was declared dead: registry score {score} at Redis time {now} (claimed epoch {claimed}); " +
                string.Join(" | ", h.Messages.Where(m => m.Contains(id, StringComparison.Ordinal)).TakeLast(6)));
            Assert.Equal(claimed, (long)await database.StringGetAsync(Keys.Epoch(id))); // no fence above the new epoch
            Assert.False(await database.HashExistsAsync(Keys.Health, id)); // judged recovered: warnings cleared
            Assert.Equal(swarm, (string?)await database.HashGetAsync(Keys.Swarms, id));
        }
        finally
        {
            await database.SortedSetRemoveAsync(Keys.Registry, id);
            await database.HashDeleteAsync(Keys.Swarms, id);
        }
    }
}
