using System.Net;
using System.Text.Json;
using Cfn.Coordination;
using Cfn.Coordination.Background;
using Cfn.Coordination.Redis;
using Cfn.Hosting;
using Cfn.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;

namespace Cfn.Tests.Hosting;

/// <summary>
/// <c>/health/ready</c> over real HTTP with a real Redis (database 25): 503 naming a periodic loop that completed no pass
/// for three of its intervals and back to 200 once it passes again; 503 naming a loop that stopped without being asked to;
/// the exact bodies of <c>/health/live</c> and <c>/health/ready</c> as the runbook shows them.
/// </summary>
public sealed class ReadinessEndpointTests
{
    private const int Db = 25;

    [Fact]
    public async Task Ready_StaleLoopThenRunningAgain_StoppedLoop_NamedIn503()
    {
        var endpoint = TestRedis.Endpoint;
        await using var redis = await RedisContext.ConnectAsync($"{endpoint},defaultDatabase={Db}", new CoordinationOptions());
        await using var web = await StartAsync(new Source(redis, "timeout-handler"));
        var loops = redis.Loops;

        // The real periodic loop helper, every 100 ms, whose third pass hangs until released (a Redis call that never returns).
        using var release = new SemaphoreSlim(0);
        using var stop = new CancellationTokenSource();
        var period = TimeSpan.FromMilliseconds(100);
        var handle = loops.Register(LoopNames.BatchCleanup, null, period);
        var calls = 0;
        var loop = BackgroundLoop.RunPeriodicAsync(handle, period, TimeProvider.System,
            async () =>
            {
                if (Interlocked.Increment(ref calls) == 3)
                {
                    await release.WaitAsync();
                }
            }, NullLogger.Instance, stop.Token);

        await EventuallyAsync(async () => (await web.Loopback.GetAsync("/health/ready")).StatusCode == HttpStatusCode.OK, "/health/ready never answered 200",
            TimeSpan.FromSeconds(10), pollMs: 25);
        var stale = await UntilAsync(web, HttpStatusCode.ServiceUnavailable);
        var failing = Assert.Single(stale.GetProperty("failingLoops").EnumerateArray());
        Assert.Equal(("batch_cleanup", "stale"), (failing.GetProperty("name").GetString(), failing.GetProperty("state").GetString()));
        Assert.True(failing.GetProperty("lastPassSecondsAgo").GetDouble() > 0.3);

        release.Release(); // it runs again: ready again
        var ready = await UntilAsync(web, HttpStatusCode.OK);
        Assert.Equal("ready", ready.GetProperty("status").GetString());

        // A wake-driven loop of one coordinator ends on its own: the readiness body names it and says why.
        var pump = loops.Register(LoopNames.InboxPump, "coordinator-r", interval: null);
        pump.Ended(asked: false, NullLogger.Instance, "InvalidOperationException: boom");
        var stopped = await UntilAsync(web, HttpStatusCode.ServiceUnavailable);
        var named = Assert.Single(stopped.GetProperty("failingLoops").EnumerateArray());
        Assert.Equal(("inbox_pump/coordinator-r", "stopped", "InvalidOperationException: boom"),
            (named.GetProperty("name").GetString(), named.GetProperty("state").GetString(), named.GetProperty("lastError").GetString()));

        pump.Dispose(); // its owner stopped it: nothing fails any more
        await UntilAsync(web, HttpStatusCode.OK);
        await stop.CancelAsync();
        await loop;
    }

    [Fact]
    public async Task Live_AndReady_ExactBodiesAndHeaders()
    {
        var endpoint = TestRedis.Endpoint;
        await using var redis = await RedisContext.ConnectAsync($"{endpoint},defaultDatabase={Db}", new CoordinationOptions());
        var source = new Source(redis, "coordinator");
        await using var web = await StartAsync(source);

        var live = await web.Loopback.GetAsync("/health/live");
        Assert.Equal(HttpStatusCode.OK, live.StatusCode);
        Assert.Equal("""{"status":"ok"}""", await live.Content.ReadAsStringAsync());
        Assert.Equal("application/json; charset=utf-8", live.Content.Headers.ContentType?.ToString());
        Assert.Empty(live.Headers.CacheControl?.ToString() ?? "");

        var ready = await web.Loopback.GetAsync("/health/ready");
        Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
        Assert.Equal("""{"status":"ready","redis":"connected","roles":"coordinator"}""", await ready.Content.ReadAsStringAsync());
        Assert.Equal("application/json; charset=utf-8", ready.Content.Headers.ContentType?.ToString());

        // A coordinator without its first heartbeat: named, and the loops' field is null as before.
        source.Waiting = ["coordinator-w"];
        var waiting = await web.Loopback.GetAsync("/health/ready");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, waiting.StatusCode);
        Assert.Equal("""{"status":"not_ready","redis":"connected","noHeartbeatYet":["coordinator-w"],"failingLoops":null}""",
            await waiting.Content.ReadAsStringAsync());
    }

    /// <summary>A web app with only the health endpoints, reading <paramref name="source"/>, on a free loopback port.</summary>
    private static async Task<TestWebApp> StartAsync(Source source) =>
        await TestWebApp.StartAsync(app => HealthEndpoints.Map(app), services =>
        {
            services.AddSingleton<IReadinessSource>(source);
            services.AddReadinessChecks();
        });

    private sealed class Source(RedisContext redis, string roles) : IReadinessSource
    {
        public RedisContext Redis => redis;

        public string Roles => roles;

        public IReadOnlyList<string> Waiting { get; set; } = [];

        public IReadOnlyList<string> NoHeartbeatYet() => Waiting;
    }

    private static async Task<JsonElement> UntilAsync(TestWebApp web, HttpStatusCode wanted)
    {
        var body = await EventuallyAsync(async () =>
            {
                var response = await web.Loopback.GetAsync("/health/ready");
                return (response.StatusCode, Body: await response.Content.ReadAsStringAsync());
            },
            r => r.StatusCode == wanted, $"/health/ready never answered {wanted}", TimeSpan.FromSeconds(10), pollMs: 25, describe: r => $"{r.StatusCode} {r.Body}");
        return JsonDocument.Parse(body.Body).RootElement.Clone();
    }
}
