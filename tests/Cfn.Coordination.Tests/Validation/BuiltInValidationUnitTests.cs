using System.Collections;
using System.ComponentModel.DataAnnotations;
using System.Text.Json;
using Cfn.Coordination.Validation;
using Microsoft.Extensions.Time.Testing;

namespace Cfn.Coordination.Tests.Validation;

public sealed class BuiltInValidationUnitTests
{
    private static ValidationRequest Request() =>
        new() { WorkId = "w", Input = JsonSerializer.SerializeToElement(new { a = 1 }), RequestedAt = 0 };

    [Fact]
    public void Next_SeededRandom_MedianP95AndFailureRateAsConfigured()
    {
        var options = new ValidatorOptions
        {
            DurationMedian = TimeSpan.FromMilliseconds(400),
            DurationP95 = TimeSpan.FromMilliseconds(2000),
            FailureRate = 0.2,
        };
        var validation = new BuiltInValidation(options, random: new Random(12345));

        var draws = Enumerable.Range(0, 4000).Select(_ => validation.Next()).ToList();
        var sorted = draws.Select(d => d.Duration.TotalMilliseconds).Order().ToList();

        Assert.InRange(sorted[sorted.Count / 2], 360, 440);
        Assert.InRange(sorted[(int)(sorted.Count * 0.95)], 1700, 2300);
        Assert.All(sorted, ms => Assert.InRange(ms, 0, 2000 * BuiltInValidation.MaxDurationFactor));
        Assert.InRange(draws.Count(d => d.Fails) / (double)draws.Count, 0.17, 0.23);
    }

    [Theory]
    [InlineData(0.0, false)]
    [InlineData(1.0, true)]
    public void Next_FailureRateZeroOrOne_NeverOrAlwaysFails(double rate, bool fails)
    {
        var validation = new BuiltInValidation(new ValidatorOptions { FailureRate = rate }, random: new Random(1));

        Assert.All(Enumerable.Range(0, 200), _ => Assert.Equal(fails, validation.Next().Fails));
    }

    [Fact]
    public async Task Validate_FixedDuration_CompletesOnlyWhenFakeTimeReachesIt()
    {
        var time = new FakeTimeProvider();
        var options = new ValidatorOptions { DurationMedian = TimeSpan.FromMilliseconds(500), DurationP95 = TimeSpan.FromMilliseconds(500), FailureRate = 0 };
        var validation = new BuiltInValidation(options, time, new Random(7));

        var running = validation.ValidateAsync(Request(), CancellationToken.None);
        time.Advance(TimeSpan.FromMilliseconds(499));
        Assert.False(running.IsCompleted);
        time.Advance(TimeSpan.FromMilliseconds(1));
        var verdict = await running.WaitAsync(TimeSpan.FromSeconds(5));

        Assert.True(verdict.Passed);
        Assert.Equal(Verdicts.Pass, verdict.Wire);
    }

    [Fact]
    public async Task Validate_Cancelled_Throws()
    {
        var time = new FakeTimeProvider();
        var validation = new BuiltInValidation(new ValidatorOptions(), time, new Random(7));
        using var cts = new CancellationTokenSource();

        var running = validation.ValidateAsync(Request(), cts.Token);
        await cts.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => running);
    }

    [Fact]
    public void FromEnvironment_Unset_Defaults()
    {
        var o = ValidatorOptions.FromEnvironment(new Hashtable());

        Assert.False(o.EnableCache);
        Assert.Equal(3600, o.CacheTtlSeconds);
        Assert.Equal(TimeSpan.FromMilliseconds(3_600_000), o.StatsWindow);
        Assert.Equal(ValidatorOptions.DefaultDurationMedian, o.DurationMedian);
        Assert.Equal(0.05, o.FailureRate);
    }

    [Fact]
    public void FromEnvironment_Set_Read()
    {
        var o = ValidatorOptions.FromEnvironment(new Hashtable
        {
            ["ENABLE_VALIDATION_CACHE"] = "true",
            ["VALIDATION_CACHE_TTL_SECONDS"] = "60",
            ["VALIDATION_DURATION_MEDIAN_MS"] = "1000",
            ["VALIDATION_DURATION_P95_MS"] = "5000",
            ["VALIDATION_FAILURE_RATE"] = "0.25",
            ["VALIDATOR_STATS_WINDOW_MS"] = "600000",
        });

        Assert.True(o.EnableCache);
        Assert.Equal(60, o.CacheTtlSeconds);
        Assert.Equal(TimeSpan.FromSeconds(1), o.DurationMedian);
        Assert.Equal(TimeSpan.FromSeconds(5), o.DurationP95);
        Assert.Equal(0.25, o.FailureRate);
        Assert.Equal(TimeSpan.FromMinutes(10), o.StatsWindow);
    }

    [Theory]
    [InlineData("ENABLE_VALIDATION_CACHE", "maybe")]
    [InlineData("VALIDATION_CACHE_TTL_SECONDS", "-1")]
    [InlineData("VALIDATION_DURATION_MEDIAN_MS", "fast")]
    [InlineData("VALIDATION_DURATION_P95_MS", "100")]
    [InlineData("VALIDATION_FAILURE_RATE", "1.5")]
    [InlineData("VALIDATION_FAILURE_RATE", "a lot")]
    [InlineData("VALIDATOR_STATS_WINDOW_MS", "0")]
    public void FromEnvironment_BadValue_ValidationExceptionNamingIt(string name, string value)
    {
        var error = Assert.Throws<ValidationException>(() => ValidatorOptions.FromEnvironment(new Hashtable { [name] = value }));

        Assert.Contains(name, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void CanonicalJson_MemberOrderAndSpacing_SameHash()
    {
        var a = JsonDocument.Parse("""{"b":[1,{"y":2,"x":1}],"a":"s"}""").RootElement;
        var b = JsonDocument.Parse("""{ "a" : "s", "b" : [ 1, { "x" : 1, "y" : 2 } ] }""").RootElement;
        var c = JsonDocument.Parse("""{"a":"s","b":[{"x":1,"y":2},1]}""").RootElement;

        Assert.Equal(CanonicalJson.Sha256Hex(a), CanonicalJson.Sha256Hex(b));
        Assert.NotEqual(CanonicalJson.Sha256Hex(a), CanonicalJson.Sha256Hex(c));
        Assert.Matches("^[0-9a-f]{64}$", CanonicalJson.Sha256Hex(a));
    }
}
