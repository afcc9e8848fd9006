using Cfn.Coordination.Redis;
using Cfn.Coordination.Tests.Infrastructure;
using Cfn.Coordination.Validation;

namespace Cfn.Coordination.Tests.Validation;

[Collection(RedisCollection.Name)]
public sealed class ValidatorPerformanceTests(RedisServer server)
{
    [Fact]
    public async Task Read_RecordedDurationsAndTimeouts_GivesAvgP95CountTimeouts()
    {
        await using var h = Harness.Create(server);
        await using var world = ValidationWorld.Create(server, h);
        var id = TestIds.New("validator");
        for (var i = 1; i <= 20; i++)
        {
            await world.Performance.RecordAsync(id, i * 100);
        }

        await world.Performance.RecordAsync(id, 5000, timedOut: true);
        var before = await Probe.RedisNowMsAsync(world.Redis.Database);

        var report = await world.Performance.ReadAsync();

        var stats = report.Validators.Single(v => v.ValidatorId == id);
        Assert.Equal(3_600_000, report.WindowMs);
        Assert.Equal(21, stats.Count);
        Assert.Equal(1, stats.Timeouts);
        Assert.Equal((long)Math.Round((21_000 + 5000) / 21.0), stats.AvgDuration); // timeouts count with the time waited
        Assert.Equal(2000, stats.P95Duration); // nearest rank: the 20th of 21
        Assert.InRange(stats.LastSeen, before - 60_000, before + 1000);
        var ttl = await world.Redis.Database.KeyTimeToLiveAsync(Keys.ValidatorDurations(id));
        Assert.NotNull(ttl);
        Assert.InRange(ttl.Value.TotalMilliseconds, 3_500_000, 3_600_000);
    }

    [Fact]
    public async Task TimeoutRecordedByACoordinator_ListedInTheReport_ButDoesNotMakeADeadValidatorLive()
    {
        await using var h = Harness.Create(server);
        await using var world = ValidationWorld.Create(server, h);
        var registry = new ValidatorRegistry(world.Redis);
        var dead = TestIds.New("validator");
        await registry.RegisterAsync(dead);
        // Its last sign of life is over 200 ms old on the Redis clock, which the registry judges by.
        var registered = (await world.Redis.Database.SortedSetScoreAsync(Keys.Validators, dead))!.Value;
        await EventuallyAsync(async () => await Probe.RedisNowMsAsync(world.Redis.Database) - registered > 250,
            "the Redis clock never moved 250 ms past the registration");

        // Coordinators keep charging it timeouts; that is no sign of life (the runbook trial found dead validators picked forever).
        await world.Performance.RecordAsync(dead, 20_000, timedOut: true);
        await world.Performance.RecordAsync(dead, 20_000, timedOut: true);

        Assert.DoesNotContain(dead, await registry.LiveAsync(TimeSpan.FromMilliseconds(200)));
        var stats = (await world.Performance.ReadAsync()).Validators.Single(v => v.ValidatorId == dead);
        Assert.Equal(2, stats.Timeouts);

        // Its own record is one.
        await world.Performance.RecordAsync(dead, 50);
        Assert.Contains(dead, await registry.LiveAsync(TimeSpan.FromMilliseconds(200)));
    }

    [Fact]
    public async Task Record_OlderThanWindow_TrimmedAndNotCounted()
    {
        await using var h = Harness.Create(server);
        await using var world = ValidationWorld.Create(server, h);
        var performance = new ValidatorPerformance(world.Redis, TimeSpan.FromSeconds(1));
        var id = TestIds.New("validator");
        await performance.RecordAsync(id, 700);
        await OlderThanWindowAsync(world, id, 1000);

        await performance.RecordAsync(id, 300);
        var stats = (await performance.ReadAsync()).Validators.Single(v => v.ValidatorId == id);

        Assert.Equal(1, stats.Count);
        Assert.Equal(300, stats.AvgDuration);
        Assert.Equal(1, await world.Redis.Database.SortedSetLengthAsync(Keys.ValidatorDurations(id)));
    }

    [Fact]
    public async Task RecordSince_MeasuresOnTheRedisClock()
    {
        await using var h = Harness.Create(server);
        await using var world = ValidationWorld.Create(server, h);
        var id = TestIds.New("validator");
        var now = await Probe.RedisNowMsAsync(world.Redis.Database);

        var recorded = await world.Performance.RecordSinceAsync(id, now - 4000);

        Assert.InRange(recorded, 4000, 14_000);
        Assert.Equal(0, await world.Performance.RecordSinceAsync(id, now + 60_000)); // a start in the future counts as 0
    }

    [Fact]
    public async Task Registry_LiveAsync_OnlyFreshValidators()
    {
        await using var h = Harness.Create(server);
        await using var world = ValidationWorld.Create(server, h);
        var registry = new ValidatorRegistry(world.Redis);
        var fresh = TestIds.New("validator");
        var old = TestIds.New("validator");
        await registry.RegisterAsync(fresh);
        var now = await Probe.RedisNowMsAsync(world.Redis.Database);
        await world.Redis.Database.SortedSetAddAsync(Keys.Validators, old, now - 120_000);

        var live = await registry.LiveAsync(TimeSpan.FromSeconds(30));
        await registry.UnregisterAsync(fresh);
        var after = await registry.LiveAsync(TimeSpan.FromSeconds(30));

        Assert.Contains(fresh, live);
        Assert.DoesNotContain(old, live);
        Assert.DoesNotContain(fresh, after);
        await world.Redis.Database.SortedSetRemoveAsync(Keys.Validators, old);
    }

    [Fact]
    public async Task Record_InvalidValidatorId_RefusedAndNothingWritten()
    {
        await using var h = Harness.Create(server);
        await using var world = ValidationWorld.Create(server, h);

        var error = await Assert.ThrowsAsync<Cfn.Coordination.Identity.InvalidIdException>(() => world.Performance.RecordAsync("bad id*", 5));

        Assert.Equal("validatorId", error.Field);
    }

    /// <summary>
    /// Waits until every duration recorded for <paramref name="validatorId"/> is older than <paramref name="windowMs"/> on
    /// the Redis clock, which the window is judged by (validator_record.lua trims by TIME), so the next record trims it.
    /// </summary>
    internal static async Task OlderThanWindowAsync(ValidationWorld world, string validatorId, long windowMs)
    {
        var newest = (await world.Redis.Database.SortedSetRangeByRankWithScoresAsync(Keys.ValidatorDurations(validatorId), -1, -1)).Single().Score;
        await EventuallyAsync(async () => await Probe.RedisNowMsAsync(world.Redis.Database) > (long)newest + windowMs,
            "the Redis clock never moved a window past the recorded duration");
    }
}
