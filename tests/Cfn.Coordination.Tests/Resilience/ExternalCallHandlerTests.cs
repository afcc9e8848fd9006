using Cfn.Coordination.Tests.Infrastructure;
using System.Net;
using System.Text;
using Cfn.Coordination.Metrics;
using Cfn.Coordination.Resilience;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using Microsoft.Extensions.Time.Testing;
using Prometheus;

namespace Cfn.Coordination.Tests.Resilience;

/// <summary>Outbound HTTP calls over real loopback sockets (SPEC §4 L4, L5, §2.14 <c>external:{host}</c>).</summary>
public sealed class ExternalCallHandlerTests
{
    private const string CoordinatorId = "coord-ext-1";

    [Fact]
    public async Task SendAsync_Success_LogsMethodAndBareUrlAsLastToken()
    {
        await using var server = new LoopbackHttpServer((_, _) => Task.FromResult(200));
        using var w = new World(TimeSpan.FromSeconds(30));

        using var response = await w.Http.GetAsync(new Uri(server.BaseUrl + "/health"));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var line = Assert.Single(w.Records, r => r.Message.Contains("Calling external API", StringComparison.Ordinal));
        Assert.Equal(LogLevel.Information, line.Level);
        Assert.EndsWith($"Calling external API GET http://127.0.0.1:{server.Port}/health", line.Message, StringComparison.Ordinal);
        Assert.Equal($"http://127.0.0.1:{server.Port}/health", LastToken(line.Message));
        Assert.Equal(1, server.Hits);
        Assert.Equal(CircuitState.Closed, w.Breakers.GetOrCreate($"external:127.0.0.1:{server.Port}").State);
    }

    [Fact]
    public async Task SendAsync_UrlWithCredentialsAndQuery_LogsNeitherButSendsTheRequestUnchanged()
    {
        await using var server = new LoopbackHttpServer((_, _) => Task.FromResult(200));
        using var w = new World(TimeSpan.FromSeconds(30));

        using var response = await w.Http.PostAsync(
            new Uri($"http://user:pass@127.0.0.1:{server.Port}/api/v1/status?token=secret&x=1"), new StringContent("{}", Encoding.UTF8));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.True(server.Requests.TryPeek(out var head));
        Assert.StartsWith("POST /api/v1/status?token=secret&x=1 HTTP/1.1", head, StringComparison.Ordinal);
        var line = Assert.Single(w.Records, r => r.Message.Contains("Calling external API", StringComparison.Ordinal));
        Assert.Equal($"http://127.0.0.1:{server.Port}/api/v1/status", LastToken(line.Message));
        Assert.Contains("Calling external API POST ", line.Message, StringComparison.Ordinal);
        Assert.All(w.Records, r =>
        {
            Assert.DoesNotContain("secret", r.Message, StringComparison.Ordinal);
            Assert.DoesNotContain("token=", r.Message, StringComparison.Ordinal);
            Assert.DoesNotContain("pass", r.Message, StringComparison.Ordinal);
            Assert.DoesNotContain("user:", r.Message, StringComparison.Ordinal);
        });
    }

    [Fact]
    public async Task SendAsync_SlowEndpoint_TimesOutWarnsAndCountsExternalTimeout()
    {
        await using var server = new LoopbackHttpServer(async (_, stopping) =>
        {
            await Task.Delay(Timeout.InfiniteTimeSpan, stopping);
            return 200;
        });
        var time = new FakeTimeProvider(new DateTimeOffset(2025, 10, 10, 12, 0, 0, TimeSpan.Zero));
        using var w = new World(TimeSpan.FromSeconds(2), time);
        var url = $"http://127.0.0.1:{server.Port}/slow";

        var call = w.Http.GetAsync(new Uri(url + "?k=v"));
        Assert.True(await server.Received.WaitAsync(TimeSpan.FromSeconds(30)), "the request reached the server");
        Assert.False(call.IsCompleted);
        time.Advance(TimeSpan.FromMilliseconds(1999));
        Assert.False(call.IsCompleted);
        time.Advance(TimeSpan.FromMilliseconds(1));

        var ex = await Assert.ThrowsAsync<TimeoutException>(() => call);
        Assert.Contains(url, ex.Message, StringComparison.Ordinal);
        var warn = Assert.Single(w.Records, r => r.Message.Contains("external API timeout", StringComparison.Ordinal));
        Assert.Equal(LogLevel.Warning, warn.Level);
        Assert.Contains(url, warn.Message, StringComparison.Ordinal);
        Assert.Contains("timeoutMs=2000", warn.Message, StringComparison.Ordinal);
        Assert.Contains("elapsedMs=2000", warn.Message, StringComparison.Ordinal);
        Assert.Equal(1, w.Metrics.TimeoutEvents.WithLabels(CoordinatorId, "external", "external").Value);
        Assert.Contains(
            $"timeout_events_total{{coordinator_id=\"{CoordinatorId}\",reason=\"external\",timeout_type=\"external\"}} 1",
            await Probe.ExportAsync(w.Registry),
            StringComparison.Ordinal);
        Assert.Equal(1, w.Breakers.GetOrCreate($"external:127.0.0.1:{server.Port}").GetSnapshot().ConsecutiveFailures);
    }

    [Fact]
    public async Task SendAsync_SlowEndpointOnSystemClock_TimesOut()
    {
        await using var server = new LoopbackHttpServer(async (_, stopping) =>
        {
            await Task.Delay(Timeout.InfiniteTimeSpan, stopping);
            return 200;
        });
        using var w = new World(TimeSpan.FromMilliseconds(500));

        var call = w.Http.GetAsync(new Uri(server.BaseUrl + "/slow"));

        // No bound on how early the request reaches the server on a loaded machine: only the outcome is checked.
        await Assert.ThrowsAsync<TimeoutException>(() => call.WaitAsync(TimeSpan.FromSeconds(60)));
        Assert.Contains(w.Records, r => r.Level == LogLevel.Warning && r.Message.Contains("external API timeout", StringComparison.Ordinal)
            && r.Message.Contains("timeoutMs=500", StringComparison.Ordinal));
        Assert.Equal(1, w.Metrics.TimeoutEvents.WithLabels(CoordinatorId, "external", "external").Value);
    }

    [Fact]
    public async Task SendAsync_ServerErrors_OpenBreakerAndFourthCallNeverReachesServer()
    {
        await using var server = new LoopbackHttpServer((_, _) => Task.FromResult(503));
        using var w = new World(TimeSpan.FromSeconds(30));
        var uri = new Uri(server.BaseUrl + "/health");

        for (var i = 0; i < 3; i++)
        {
            using var response = await w.Http.GetAsync(uri);
            Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        }

        var ex = await Assert.ThrowsAsync<CircuitOpenException>(() => w.Http.GetAsync(uri));

        Assert.Equal(3, server.Hits);
        Assert.Equal($"external:127.0.0.1:{server.Port}", ex.Name);
        Assert.Equal(CircuitState.Open, w.Breakers.GetOrCreate(ex.Name).State);
        Assert.Equal(3, w.Records.Count(r => r.Message.Contains("Calling external API", StringComparison.Ordinal)));
        Assert.Contains(w.Records, r => r.Level == LogLevel.Warning
            && r.Message.Contains($"Request rejected - circuit is OPEN name=external:127.0.0.1:{server.Port}", StringComparison.Ordinal));
        Assert.Contains($"circuit_breaker_state{{name=\"external:127.0.0.1:{server.Port}\",state=\"open\"}} 1",
            await Probe.ExportAsync(w.Registry), StringComparison.Ordinal);
    }

    [Fact]
    public async Task SendAsync_ClientErrors_DoNotCountAsFailures()
    {
        await using var server = new LoopbackHttpServer((_, _) => Task.FromResult(404));
        using var w = new World(TimeSpan.FromSeconds(30));

        for (var i = 0; i < 5; i++)
        {
            using var response = await w.Http.GetAsync(new Uri(server.BaseUrl + "/missing"));
            Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        }

        Assert.Equal(5, server.Hits);
        var snapshot = w.Breakers.GetOrCreate($"external:127.0.0.1:{server.Port}").GetSnapshot();
        Assert.Equal(CircuitState.Closed, snapshot.State);
        Assert.Equal(0, snapshot.ConsecutiveFailures);
        Assert.Equal(5, snapshot.Successes);
    }

    [Fact]
    public async Task SendAsync_ConnectionRefused_CountsAsFailureAndOpens()
    {
        using var w = new World(TimeSpan.FromSeconds(30));
        var uri = new Uri($"http://127.0.0.1:{LoopbackHttpServer.UnusedPort()}/health");

        for (var i = 0; i < 3; i++)
        {
            await Assert.ThrowsAsync<HttpRequestException>(() => w.Http.GetAsync(uri));
        }

        await Assert.ThrowsAsync<CircuitOpenException>(() => w.Http.GetAsync(uri));
        Assert.Equal(0, w.Metrics.TimeoutEvents.WithLabels(CoordinatorId, "external", "external").Value);
    }

    [Fact]
    public async Task SendAsync_OpenThenDelayPassed_TrialCallsReachServerAndClose()
    {
        var status = 503;
        await using var server = new LoopbackHttpServer((_, _) => Task.FromResult(Volatile.Read(ref status)));
        var time = new FakeTimeProvider(new DateTimeOffset(2025, 10, 10, 12, 0, 0, TimeSpan.Zero));
        using var w = new World(TimeSpan.FromSeconds(30), time);
        var uri = new Uri(server.BaseUrl + "/health");
        for (var i = 0; i < 3; i++)
        {
            using var failed = await w.Http.GetAsync(uri);
        }

        await Assert.ThrowsAsync<CircuitOpenException>(() => w.Http.GetAsync(uri));
        Volatile.Write(ref status, 200);
        time.Advance(TimeSpan.FromSeconds(1));
        for (var i = 0; i < 2; i++)
        {
            using var ok = await w.Http.GetAsync(uri);
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        }

        Assert.Equal(5, server.Hits);
        Assert.Equal(CircuitState.Closed, w.Breakers.GetOrCreate($"external:127.0.0.1:{server.Port}").State);
    }

    [Fact]
    public async Task SendAsync_CallerCancels_NeitherTimeoutNorFailure()
    {
        await using var server = new LoopbackHttpServer(async (_, stopping) =>
        {
            await Task.Delay(Timeout.InfiniteTimeSpan, stopping);
            return 200;
        });
        using var w = new World(TimeSpan.FromSeconds(30));
        using var caller = new CancellationTokenSource();

        var call = w.Http.GetAsync(new Uri(server.BaseUrl + "/slow"), caller.Token);
        Assert.True(await server.Received.WaitAsync(TimeSpan.FromSeconds(30)));
        await caller.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => call);
        Assert.Equal(0, w.Metrics.TimeoutEvents.WithLabels(CoordinatorId, "external", "external").Value);
        Assert.DoesNotContain(w.Records, r => r.Message.Contains("external API timeout", StringComparison.Ordinal));
        Assert.Equal(0, w.Breakers.GetOrCreate($"external:127.0.0.1:{server.Port}").GetSnapshot().Failures);
    }

    [Fact]
    public async Task SendAsync_DifferentHosts_SeparateBreakers()
    {
        await using var failing = new LoopbackHttpServer((_, _) => Task.FromResult(500));
        await using var healthy = new LoopbackHttpServer((_, _) => Task.FromResult(200));
        using var w = new World(TimeSpan.FromSeconds(30));
        for (var i = 0; i < 3; i++)
        {
            using var failed = await w.Http.GetAsync(new Uri(failing.BaseUrl + "/"));
        }

        using var ok = await w.Http.GetAsync(new Uri(healthy.BaseUrl + "/"));

        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        await Assert.ThrowsAsync<CircuitOpenException>(() => w.Http.GetAsync(new Uri(failing.BaseUrl + "/")));
    }

    [Theory]
    [InlineData("https://user:pw@api.example.com/v1/items?key=abc#frag", "https://api.example.com/v1/items")]
    [InlineData("http://example.com", "http://example.com/")]
    [InlineData("https://example.com:443/x", "https://example.com/x")]
    [InlineData("http://127.0.0.1:8080/health", "http://127.0.0.1:8080/health")]
    [InlineData("http://[::1]:9000/a b/c", "http://[::1]:9000/a%20b/c")]
    [InlineData("http://example.com/path.json?x=\"y\"", "http://example.com/path.json")]
    public void SafeUrl_AnyUri_SchemeHostPortPathOnlyWithoutWhitespace(string input, string expected)
    {
        var safe = ExternalCallHandler.SafeUrl(new Uri(input));

        Assert.Equal(expected, safe);
        Assert.DoesNotContain(safe, char.IsWhiteSpace);
    }

    [Fact]
    public void Constructor_BadArguments_Throw()
    {
        var registry = Prometheus.Metrics.NewCustomRegistry();
        var breakers = new CircuitBreakerRegistry(registry);
        var metrics = new CoordinationMetrics(registry);
        var logger = new FakeLogger();

        Assert.Throws<ArgumentOutOfRangeException>(() => new ExternalCallHandler(breakers, metrics, "c", TimeSpan.Zero, logger));
        Assert.Throws<ArgumentException>(() => new ExternalCallHandler(breakers, metrics, "", TimeSpan.FromSeconds(1), logger));
        Assert.Throws<ArgumentNullException>(() => new ExternalCallHandler(null!, metrics, "c", TimeSpan.FromSeconds(1), logger));
    }

    private static string LastToken(string line) => line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)[^1];

    /// <summary>An <see cref="HttpClient"/> through the handler, with its own metrics, breakers and captured logs.</summary>
    private sealed class World : IDisposable
    {
        public World(TimeSpan timeout, TimeProvider? time = null)
        {
            Registry = Prometheus.Metrics.NewCustomRegistry();
            Metrics = new CoordinationMetrics(Registry, time);
            Logs = new FakeLogCollector();
            LoggerFactory = Microsoft.Extensions.Logging.LoggerFactory.Create(b =>
                b.SetMinimumLevel(LogLevel.Debug).AddProvider(new FakeLoggerProvider(Logs)));
            Breakers = new CircuitBreakerRegistry(Registry, timeProvider: time, loggerFactory: LoggerFactory);
            var handler = new ExternalCallHandler(Breakers, Metrics, CoordinatorId, timeout, LoggerFactory.CreateLogger<ExternalCallHandler>())
            {
                InnerHandler = new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.Zero },
            };
            Http = new HttpClient(handler);
        }

        public CollectorRegistry Registry { get; }

        public CoordinationMetrics Metrics { get; }

        public FakeLogCollector Logs { get; }

        public ILoggerFactory LoggerFactory { get; }

        public CircuitBreakerRegistry Breakers { get; }

        public HttpClient Http { get; }

        public IReadOnlyList<FakeLogRecord> Records => Logs.GetSnapshot();

        public void Dispose()
        {
            Http.Dispose();
            LoggerFactory.Dispose();
        }
    }
}
