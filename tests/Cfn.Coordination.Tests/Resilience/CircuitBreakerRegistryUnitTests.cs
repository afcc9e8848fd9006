using Cfn.Coordination.Tests.Infrastructure;
using System.Text;
using Cfn.Coordination.Resilience;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using Microsoft.Extensions.Time.Testing;
using Prometheus;

namespace Cfn.Coordination.Tests.Resilience;

/// <summary>The breaker registry and its <c>circuit_breaker_state</c> gauge (SPEC §2.14, §3.2).</summary>
public sealed class CircuitBreakerRegistryUnitTests
{
    private static readonly DateTimeOffset Start = new(2025, 10, 10, 12, 0, 0, TimeSpan.Zero);

    [Fact]
    public async Task Gauge_NewBreaker_ClosedIsOneOthersZero()
    {
        var (registry, breakers, _) = Create();

        breakers.GetOrCreate("redis");

        var text = await Probe.ExportAsync(registry);
        Assert.Contains("circuit_breaker_state{name=\"redis\",state=\"closed\"} 1", Lines(text));
        Assert.Contains("circuit_breaker_state{name=\"redis\",state=\"open\"} 0", Lines(text));
        Assert.Contains("circuit_breaker_state{name=\"redis\",state=\"half_open\"} 0", Lines(text));
        Assert.Contains("# TYPE circuit_breaker_state gauge", Lines(text));
    }

    [Fact]
    public async Task Gauge_OpenBreaker_OpenIsOneOthersZero()
    {
        var (registry, breakers, _) = Create();
        var redis = breakers.Redis;

        for (var i = 0; i < 3; i++)
        {
            redis.RecordFailure();
        }

        var lines = Lines(await Probe.ExportAsync(registry));
        Assert.Contains("circuit_breaker_state{name=\"redis\",state=\"open\"} 1", lines);
        Assert.Contains("circuit_breaker_state{name=\"redis\",state=\"closed\"} 0", lines);
        Assert.Contains("circuit_breaker_state{name=\"redis\",state=\"half_open\"} 0", lines);
    }

    [Fact]
    public async Task Gauge_DelayPassedWithoutAnyRead_ScrapeShowsHalfOpen()
    {
        var (registry, breakers, time) = Create();
        var redis = breakers.Redis;
        for (var i = 0; i < 3; i++)
        {
            redis.RecordFailure();
        }

        Assert.Contains("circuit_breaker_state{name=\"redis\",state=\"open\"} 1", Lines(await Probe.ExportAsync(registry)));

        time.Advance(TimeSpan.FromSeconds(1)); // nobody reads the state: only the before-collect refresh can see it

        var lines = Lines(await Probe.ExportAsync(registry));
        Assert.Contains("circuit_breaker_state{name=\"redis\",state=\"half_open\"} 1", lines);
        Assert.Contains("circuit_breaker_state{name=\"redis\",state=\"open\"} 0", lines);
        Assert.Contains("circuit_breaker_state{name=\"redis\",state=\"closed\"} 0", lines);
    }

    [Fact]
    public async Task Gauge_BackToClosed_ClosedIsOneAgain()
    {
        var (registry, breakers, time) = Create();
        var redis = breakers.Redis;
        for (var i = 0; i < 3; i++)
        {
            redis.RecordFailure();
        }

        time.Advance(TimeSpan.FromSeconds(1));
        redis.RecordSuccess();
        redis.RecordSuccess();

        var lines = Lines(await Probe.ExportAsync(registry));
        Assert.Contains("circuit_breaker_state{name=\"redis\",state=\"closed\"} 1", lines);
        Assert.Contains("circuit_breaker_state{name=\"redis\",state=\"open\"} 0", lines);
        Assert.Contains("circuit_breaker_state{name=\"redis\",state=\"half_open\"} 0", lines);
    }

    [Fact]
    public async Task Gauge_SeveralBreakers_EachHasItsOwnSeries()
    {
        var (registry, breakers, _) = Create();
        var external = breakers.GetOrCreate(CircuitBreakerRegistry.ExternalName("api.example.com"));
        breakers.GetOrCreate("redis");
        for (var i = 0; i < 3; i++)
        {
            external.RecordFailure();
        }

        var lines = Lines(await Probe.ExportAsync(registry));
        Assert.Contains("circuit_breaker_state{name=\"external:api.example.com\",state=\"open\"} 1", lines);
        Assert.Contains("circuit_breaker_state{name=\"redis\",state=\"closed\"} 1", lines);
        Assert.Contains("circuit_breaker_state{name=\"redis\",state=\"open\"} 0", lines);
        Assert.Equal(6, lines.Count(l => l.StartsWith("circuit_breaker_state{", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task Gauge_DisabledBreakers_AlwaysClosed()
    {
        var (registry, breakers, _) = Create(new CircuitBreakerOptions { Enabled = false });
        var redis = breakers.Redis;

        for (var i = 0; i < 10; i++)
        {
            redis.RecordFailure();
        }

        var lines = Lines(await Probe.ExportAsync(registry));
        Assert.Contains("circuit_breaker_state{name=\"redis\",state=\"closed\"} 1", lines);
        Assert.Contains("circuit_breaker_state{name=\"redis\",state=\"open\"} 0", lines);
    }

    [Fact]
    public void GetOrCreate_SameName_SameInstanceAndFirstOptionsWin()
    {
        var (_, breakers, _) = Create();

        var first = breakers.GetOrCreate("op1", new CircuitBreakerOptions { FailureThreshold = 1 });
        var second = breakers.GetOrCreate("op1", new CircuitBreakerOptions { FailureThreshold = 9 });
        var third = breakers.GetOrCreate("op1");

        Assert.Same(first, second);
        Assert.Same(first, third);
        Assert.Equal(1, second.Options.FailureThreshold);
    }

    [Fact]
    public void GetOrCreate_DifferentNames_IsolatesFailures()
    {
        var (_, breakers, _) = Create();
        var op1 = breakers.GetOrCreate("op1");
        var op2 = breakers.GetOrCreate("op2");

        for (var i = 0; i < 3; i++)
        {
            op1.RecordFailure();
        }

        Assert.Equal(CircuitState.Open, op1.State);
        Assert.Equal(CircuitState.Closed, op2.State);
    }

    [Fact]
    public void GetOrCreate_NoOptions_UsesRegistryDefaults()
    {
        var (_, breakers, _) = Create(new CircuitBreakerOptions { FailureThreshold = 1, Cooldown = TimeSpan.FromSeconds(5) });

        var breaker = breakers.GetOrCreate("x");
        breaker.RecordFailure();

        Assert.Equal(CircuitState.Open, breaker.State);
        Assert.Equal(TimeSpan.FromSeconds(5), breaker.Options.Cooldown);
    }

    [Fact]
    public void GetOrCreate_ConcurrentFirstUse_CreatesOneBreaker()
    {
        var (_, breakers, _) = Create();

        var all = new CircuitBreaker[64];
        Parallel.For(0, all.Length, i => all[i] = breakers.GetOrCreate("race"));

        Assert.All(all, b => Assert.Same(all[0], b));
        Assert.Single(breakers.All);
    }

    [Fact]
    public void All_AfterCreation_ListsEveryBreakerByName()
    {
        var (_, breakers, _) = Create();

        breakers.GetOrCreate("redis");
        breakers.GetOrCreate("external:b.example");
        breakers.GetOrCreate("external:a.example");

        Assert.Equal(["external:a.example", "external:b.example", "redis"], breakers.All.Select(b => b.Name));
    }

    [Fact]
    public void ResetAll_OpenBreakers_AllClosed()
    {
        var (_, breakers, _) = Create();
        foreach (var name in new[] { "op1", "op2" })
        {
            var breaker = breakers.GetOrCreate(name);
            for (var i = 0; i < 3; i++)
            {
                breaker.RecordFailure();
            }
        }

        breakers.ResetAll();

        Assert.All(breakers.All, b => Assert.Equal(CircuitState.Closed, b.State));
        Assert.All(breakers.All, b => Assert.Equal(0, b.GetSnapshot().ConsecutiveFailures));
    }

    [Fact]
    public void GetOrCreate_WithLoggerFactory_BreakerLogsTransitions()
    {
        var logs = new FakeLogCollector();
        using var factory = LoggerFactory.Create(b => b.SetMinimumLevel(LogLevel.Debug).AddProvider(new FakeLoggerProvider(logs)));
        var breakers = new CircuitBreakerRegistry(Prometheus.Metrics.NewCustomRegistry(), loggerFactory: factory);

        var redis = breakers.Redis;
        for (var i = 0; i < 3; i++)
        {
            redis.RecordFailure();
        }

        Assert.Contains(logs.GetSnapshot(), r => r.Message.Contains("Circuit state transition name=redis from=closed to=open", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("https://api.example.com/v1?key=1", "external:api.example.com")]
    [InlineData("https://API.Example.com:443/x", "external:api.example.com")]
    [InlineData("http://user:pass@127.0.0.1:8080/health", "external:127.0.0.1:8080")]
    [InlineData("http://[::1]:9000/", "external:[::1]:9000")]
    public void ExternalName_Uri_HostWithNonDefaultPortOnly(string uri, string expected) =>
        Assert.Equal(expected, CircuitBreakerRegistry.ExternalName(new Uri(uri)));

    [Fact]
    public void ExternalName_Host_PrefixedAndLowercased()
    {
        Assert.Equal("external:api.example.com", CircuitBreakerRegistry.ExternalName("API.example.com"));
        Assert.Equal("redis", CircuitBreakerRegistry.RedisName);
        Assert.Throws<ArgumentException>(() => CircuitBreakerRegistry.ExternalName(" "));
        Assert.Throws<ArgumentException>(() => CircuitBreakerRegistry.ExternalName(new Uri("/relative", UriKind.Relative)));
    }

    private static (CollectorRegistry Registry, CircuitBreakerRegistry Breakers, FakeTimeProvider Time) Create(CircuitBreakerOptions? defaults = null)
    {
        var registry = Prometheus.Metrics.NewCustomRegistry();
        var time = new FakeTimeProvider(Start);
        return (registry, new CircuitBreakerRegistry(registry, defaults, time), time);
    }

    private static string[] Lines(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
}
