using System.Collections;
using Cfn.Coordination.Background;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Tests.Infrastructure;
using Cfn.Coordination.Validation;
using Microsoft.Extensions.Time.Testing;

namespace Cfn.Coordination.Tests.Validation;

/// <summary>
/// SPEC §3.6: the validator variables, read by <see cref="ValidatorOptions.FromEnvironment"/>, change what a real
/// validator does: cached verdicts and their TTL, the built-in validation's durations and failures.
/// </summary>
[Collection(RedisCollection.Name)]
public sealed class EnvironmentEffectTests(RedisServer server)
{
    private static ValidatorOptions Read(params (string Name, string Value)[] variables)
    {
        var env = new Hashtable();
        foreach (var (name, value) in variables)
        {
            env[name] = value;
        }

        return ValidatorOptions.FromEnvironment(env);
    }

    [Theory]
    [InlineData("true", 1)]
    [InlineData("false", 0)]
    public async Task EnableValidationCache_SameInputTwice_SecondIsACacheHitWithTheConfiguredTtl(string enabled, int hits)
    {
        await using var h = Harness.Create(server);
        await using var world = ValidationWorld.Create(server, h);
        var options = Read(("ENABLE_VALIDATION_CACHE", enabled), ("VALIDATION_CACHE_TTL_SECONDS", "90"),
            ("VALIDATION_DURATION_MEDIAN_MS", "1"), ("VALIDATION_DURATION_P95_MS", "1"), ("VALIDATION_FAILURE_RATE", "0"));
        var worker = await world.StartValidatorAsync(new BuiltInValidation(options), options);
        var coordinator = await world.StartAsync("coord", "env-swarm");
        var input = new { item = Guid.NewGuid().ToString("N") };

        await ValidationWorld.RequestAsync(coordinator, worker.ValidatorId, "work-1", input);
        await ValidationWorld.NextVerdictAsync(coordinator);
        await ValidationWorld.RequestAsync(coordinator, worker.ValidatorId, "work-2", input, iteration: 2);
        await ValidationWorld.NextVerdictAsync(coordinator);

        Assert.Equal(hits, worker.CacheHits);
        var cacheKey = Keys.ValidationCache(CanonicalJson.Sha256Hex(System.Text.Json.JsonSerializer.SerializeToElement(input)));
        var ttl = await world.Redis.Database.KeyTimeToLiveAsync(cacheKey);
        if (hits == 1)
        {
            Assert.InRange(ttl!.Value.TotalSeconds, 80, 90); // VALIDATION_CACHE_TTL_SECONDS
        }
        else
        {
            Assert.Null(ttl); // nothing cached
        }
    }

    [Fact]
    public void ValidationDurationMedianAndP95_Equal_EveryValidationTakesExactlyThat()
    {
        var validation = new BuiltInValidation(Read(("VALIDATION_DURATION_MEDIAN_MS", "300"), ("VALIDATION_DURATION_P95_MS", "300")), random: new Random(3));

        Assert.All(Enumerable.Range(0, 100), _ => Assert.Equal(300, validation.Next().Duration.TotalMilliseconds, 1.0));
    }

    [Fact]
    public void ValidationDurationP95_AboveMedian_SpreadsTheDurations()
    {
        var validation = new BuiltInValidation(Read(("VALIDATION_DURATION_MEDIAN_MS", "100"), ("VALIDATION_DURATION_P95_MS", "1000")), random: new Random(3));

        var sorted = Enumerable.Range(0, 2000).Select(_ => validation.Next().Duration.TotalMilliseconds).Order().ToList();

        Assert.InRange(sorted[1000], 80, 120);
        Assert.InRange(sorted[1900], 800, 1200);
    }

    [Theory]
    [InlineData("0", 0.0)]
    [InlineData("0.5", 0.5)]
    [InlineData("1", 1.0)]
    public void ValidationFailureRate_ShareOfFailVerdicts(string rate, double expected)
    {
        var validation = new BuiltInValidation(Read(("VALIDATION_FAILURE_RATE", rate)), random: new Random(5));

        var failures = Enumerable.Range(0, 2000).Count(_ => validation.Next().Fails) / 2000.0;

        Assert.InRange(failures, expected - 0.05, expected + 0.05);
    }

    [Fact]
    public async Task ValidatorStatsWindowMs_DurationsOlderThanTheWindowNotCounted()
    {
        await using var h = Harness.Create(server);
        await using var world = ValidationWorld.Create(server, h);
        var performance = new ValidatorPerformance(world.Redis, Read(("VALIDATOR_STATS_WINDOW_MS", "1000")).StatsWindow);
        var id = TestIds.New("validator");
        await performance.RecordAsync(id, 700);
        await ValidatorPerformanceTests.OlderThanWindowAsync(world, id, 1000);

        await performance.RecordAsync(id, 300);
        var report = await performance.ReadAsync();

        Assert.Equal(1000, report.WindowMs);
        var stats = report.Validators.Single(v => v.ValidatorId == id);
        Assert.Equal((1, 300L), (stats.Count, stats.AvgDuration));
    }

    [Theory]
    [InlineData("100")]
    [InlineData("600000")]
    public async Task ValidatorRegistrationIntervalMs_RegistryEntryRefreshedEveryInterval(string value)
    {
        await using var h = Harness.Create(server);
        // The registration loop runs on the worker's own clock: a fake one, moved to a millisecond short of the interval, then onto it.
        var time = new FakeTimeProvider();
        await using var world = ValidationWorld.Create(server, h, time);
        var options = Read(("VALIDATOR_REGISTRATION_INTERVAL_MS", value));
        var worker = await world.StartValidatorAsync(new BuiltInValidation(options), options);
        long Passes() => world.Redis.Loops.Snapshot().Where(l => l.Loop == LoopNames.ValidatorRegistration).Sum(l => l.Passes);
        Task<double?> ScoreAsync() => world.Redis.Database.SortedSetScoreAsync(Keys.Validators, worker.ValidatorId);
        // Registered once at start, and its loop (whose timer starts with it) is running.
        var first = (await EventuallyAsync(ScoreAsync, s => s is not null && world.Redis.Loops.Snapshot().Any(l => l.Loop == LoopNames.ValidatorRegistration),
            "the validator never registered", TimeSpan.FromSeconds(5), pollMs: 50))!.Value;
        // The score is Redis TIME: let it move past the registration, so a refresh shows.
        await EventuallyAsync(async () => await Probe.RedisNowMsAsync(world.Redis.Database) > (long)first, "the Redis clock never moved past the registration");

        time.Advance(options.RegistrationInterval - TimeSpan.FromMilliseconds(1));
        // A negative check: a pass one millisecond early would have refreshed the entry within 200 ms; no event marks a pass that does not run.
        await Task.Delay(200);
        Assert.Equal(0, Passes());
        Assert.Equal(first, await ScoreAsync());

        time.Advance(TimeSpan.FromMilliseconds(1));
        await EventuallyAsync(async () => await ScoreAsync() > first && Passes() >= 1, $"the entry was not refreshed after {value} ms");
        Assert.Equal(1, Passes());
    }
}
