using System.Collections;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using Cfn.Hosting;
using Cfn.Tests.Infrastructure;
using StackExchange.Redis;

namespace Cfn.Tests.Hosting;

/// <summary>
/// SPEC §3.6 for the variables only the executable reads: real <c>cfn serve --role …</c> processes, configured by their
/// environment, observed over real HTTP, in their output and in Redis. Each test has a private redis-server of its own
/// (every database number of the shared test server is taken by other test classes). docs/configuration.md links to these.
/// </summary>
public sealed class EnvironmentEffectTests : IAsyncLifetime
{
    // Below 16: a multiplexer used right after connecting may not know yet that the server has more databases.
    private const int Db = 8;
    private const string Secret = "env-test-secret-0123456789abcdef0123456789abcdef";
    private const string Token = "env-admin-token-0123456789abcdef0123456789";

    private static readonly TimeSpan Startup = TimeSpan.FromSeconds(60);

    private Process? _redis;

    private string Endpoint => $"127.0.0.1:{RedisPort}";

    private static string RedisHost => "127.0.0.1";

    private string RedisPort { get; set; } = "";

    public async Task InitializeAsync()
    {
        var port = CfnRun.FreePort();
        RedisPort = port.ToString(CultureInfo.InvariantCulture);
        _redis = StartRedisServer(port);
        await EventuallyAsync(async () => (await CfnRun.ShellAsync($"redis-cli -p {port} ping", allowFailure: true)).Trim() == "PONG",
            "the private redis-server did not start", TimeSpan.FromSeconds(20), pollMs: 50);
    }

    public async Task DisposeAsync()
    {
        if (_redis is not null)
        {
            _redis.Kill();
            await _redis.WaitForExitAsync();
            _redis.Dispose();
        }
    }

    [Fact]
    public async Task Serve_Coordinator_IdentityDatabasePortPoolHeartbeatsAndAdminTokenFromEnvironment()
    {
        await using var redis = await ConnectAsync();
        var db = redis.GetDatabase(Db);
        await db.ExecuteAsync("FLUSHDB");
        var port = CfnRun.FreePort();
        const string Id = "env-coordinator-1";
        await using var run = CfnRun.Start(["serve", "--role", "coordinator"], Environment(port,
            ("REDIS_HOST", RedisHost), ("REDIS_PORT", RedisPort), ("REDIS_DB", $"{Db}"), ("REDIS_POOL_SIZE", "3"),
            ("COORDINATOR_ID", Id), ("SWARM_ID", "env-swarm"), ("HEARTBEAT_INTERVAL_MS", "200"), ("HEARTBEAT_DEBUG", "true"),
            ("CFN_ADMIN_TOKEN", Token)));
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(10) };

        // HTTP_PORT: it listens there.
        await WaitReadyAsync(http, run);

        // COORDINATOR_ID and SWARM_ID name K1 and its swarm; REDIS_DB: K1 is in database 8, not 0.
        var k1 = (string?)await db.StringGetAsync("blocking:heartbeat:" + Id);
        Assert.NotNull(k1);
        long first;
        using (var doc = JsonDocument.Parse(k1))
        {
            Assert.Equal(Id, doc.RootElement.GetProperty("coordinatorId").GetString());
            Assert.Equal("env-swarm", doc.RootElement.GetProperty("swarmId").GetString());
            first = doc.RootElement.GetProperty("sequence").GetInt64();
        }

        Assert.False(await redis.GetDatabase(0).KeyExistsAsync("blocking:heartbeat:" + Id));

        // HEARTBEAT_INTERVAL_MS=200: ten more beats take between nine and 25 intervals (1.8 s to 5 s; the default 30 s would
        // give none). The process's clock is its own, so the test times the beats it sees instead of faking that clock.
        var counting = System.Diagnostics.Stopwatch.StartNew();
        await EventuallyAsync(async () =>
        {
            using var doc = JsonDocument.Parse((string)(await db.StringGetAsync("blocking:heartbeat:" + Id))!);
            return doc.RootElement.GetProperty("sequence").GetInt64() - first >= 10;
        }, "ten more heartbeats never came", TimeSpan.FromSeconds(15), pollMs: 10);
        Assert.InRange(counting.Elapsed, TimeSpan.FromMilliseconds(9 * 200), TimeSpan.FromSeconds(5));

        // HEARTBEAT_DEBUG=true: an INFO line per beat in the process log.
        Assert.True(run.Lines.Count(l => l.Contains($"Heartbeat sent coordinator={Id} ", StringComparison.Ordinal)) >= 5, run.Tail(20));

        // REDIS_POOL_SIZE=3: pool-stats says 3, and Redis sees 2 connections per multiplexer (interactive + pub/sub).
        using (var stats = JsonDocument.Parse(await http.GetStringAsync("/api/redis/pool-stats")))
        {
            Assert.Equal(3, stats.RootElement.GetProperty("poolSize").GetInt32());
        }

        var connections = await RedisClientsOfAsync(redis, run.Pid);
        Assert.Equal(6, connections.Count);

        // CFN_ADMIN_TOKEN: from a non-loopback address, a mutating endpoint needs exactly this bearer token.
        var external = TestWebApp.NonLoopbackAddress();
        using var remote = new HttpClient { BaseAddress = new Uri($"http://{external}:{port}"), Timeout = TimeSpan.FromSeconds(10) };
        Assert.Equal(HttpStatusCode.Unauthorized, (await PostAsync(remote, "/api/signals/retry-failed", null)).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await PostAsync(remote, "/api/signals/retry-failed", "wrong-token")).StatusCode);
        Assert.NotEqual(HttpStatusCode.Unauthorized, (await PostAsync(remote, "/api/signals/retry-failed", Token)).StatusCode);
        Assert.NotEqual(HttpStatusCode.Unauthorized, (await PostAsync(http, "/api/signals/retry-failed", null)).StatusCode);

        await run.SignalAsync("TERM");
        Assert.Equal(0, await run.WaitForExitAsync(TimeSpan.FromSeconds(20)));
    }

    [Fact]
    public async Task Serve_TimeoutHandler_RedisUrlJsonLogsAndMonitoringSwitchFromEnvironment()
    {
        await using var redis = await ConnectAsync();
        var db = redis.GetDatabase(Db);
        await db.ExecuteAsync("FLUSHDB");
        await db.StringSetAsync("blocking:heartbeat:env-dead-1", "{\"coordinatorId\":\"env-dead-1\",\"timestamp\":1}");
        var port = CfnRun.FreePort();
        // REDIS_URL wins over REDIS_HOST/REDIS_DB (which point nowhere useful here).
        await using var run = CfnRun.Start(["serve", "--role", "timeout-handler"], Environment(port,
            ("REDIS_URL", $"redis://{Endpoint}/{Db}"), ("REDIS_HOST", "unreachable.invalid"), ("REDIS_DB", "0"),
            ("LOG_FORMAT", "json"), ("ENABLE_HEARTBEAT_MONITORING", "false")));
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(10) };
        await WaitReadyAsync(http, run);

        // REDIS_URL with /8: the cleanup finds and deletes the key of database 8.
        using (var cleanup = JsonDocument.Parse(await (await http.PostAsync("/api/coordinators/env-dead-1/cleanup", null)).Content.ReadAsStringAsync()))
        {
            Assert.Equal(1, cleanup.RootElement.GetProperty("keysDeleted").GetInt64());
        }

        Assert.False(await db.KeyExistsAsync("blocking:heartbeat:env-dead-1"));

        await run.SignalAsync("TERM");
        Assert.Equal(0, await run.WaitForExitAsync(TimeSpan.FromSeconds(20)));

        // LOG_FORMAT=json: every line is one JSON object; ENABLE_HEARTBEAT_MONITORING=false: the loud warning, no monitor.
        var lines = run.Lines.Where(l => l.Length > 0).ToList();
        Assert.NotEmpty(lines);
        var messages = lines.Select(l =>
        {
            using var doc = JsonDocument.Parse(l);
            return doc.RootElement.GetProperty("Message").GetString() ?? "";
        }).ToList();
        Assert.Contains(messages, m => m.StartsWith("Heartbeat monitoring DISABLED", StringComparison.Ordinal));
        Assert.Contains(messages, m => m.StartsWith("config ", StringComparison.Ordinal) && m.Contains("LOG_FORMAT=json", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Serve_SwarmManager_ExpectedCoordinatorsInStatus()
    {
        await using var redis = await ConnectAsync();
        await redis.GetDatabase(Db).ExecuteAsync("FLUSHDB");
        var port = CfnRun.FreePort();
        await using var run = CfnRun.Start(["serve", "--role", "swarm-manager"], Environment(port,
            ("REDIS_HOST", RedisHost), ("REDIS_PORT", RedisPort), ("REDIS_DB", $"{Db}"), ("SWARM_EXPECTED_COORDINATORS", "5")));
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(10) };
        await WaitReadyAsync(http, run);

        var status = await http.GetStringAsync("/api/swarms/status");

        Assert.Equal("5\n", await TestWebApp.JqAsync(".expectedCoordinators", status));
    }

    [Fact]
    public async Task Serve_RedisPortAndPassword_ConnectsOnlyWithTheRightPassword()
    {
        var redisPort = CfnRun.FreePort();
        using var server = StartRedisServer(redisPort, "--requirepass", "env-pw-1");
        try
        {
            var right = CfnRun.FreePort();
            var wrong = CfnRun.FreePort();
            await using var good = CfnRun.Start(["serve", "--role", "timeout-handler"], Environment(right,
                ("REDIS_HOST", "127.0.0.1"), ("REDIS_PORT", $"{redisPort}"), ("REDIS_PASSWORD", "env-pw-1")));
            await using var bad = CfnRun.Start(["serve", "--role", "timeout-handler"], Environment(wrong,
                ("REDIS_HOST", "127.0.0.1"), ("REDIS_PORT", $"{redisPort}"), ("REDIS_PASSWORD", "not-the-password")));
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{right}"), Timeout = TimeSpan.FromSeconds(10) };

            await WaitReadyAsync(http, good);
            var failed = await bad.WaitForLineAsync(l => l.Contains("Redis connection failed", StringComparison.Ordinal), Startup);

            Assert.Contains($"port={redisPort}", failed, StringComparison.Ordinal);
            Assert.Contains(good.Lines, l => l.Contains("REDIS_PASSWORD=<redacted>", StringComparison.Ordinal));
            Assert.DoesNotContain(good.Lines, l => l.Contains("env-pw-1", StringComparison.Ordinal));
        }
        finally
        {
            server.Kill();
            await server.WaitForExitAsync();
        }
    }

    [Theory]
    [InlineData(null)]
    [InlineData("too-short")]
    public async Task Serve_SecretMissingOrShort_ExitTwoWithOneLineNamingIt(string? secret)
    {
        await using var run = CfnRun.Start(["serve", "--role", "coordinator"], Environment(CfnRun.FreePort(),
            ("REDIS_HOST", RedisHost), ("REDIS_PORT", RedisPort), ("BLOCKING_COORDINATION_SECRET", secret)));

        Assert.Equal(2, await run.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        await EventuallyAsync(() => run.Lines.Any(l => l.Length > 0), "cfn exited without a line"); // the last line may trail the exit
        var line = Assert.Single(run.Lines, l => l.Length > 0);
        Assert.StartsWith("configuration error: ", line, StringComparison.Ordinal);
        Assert.Contains("BLOCKING_COORDINATION_SECRET", line, StringComparison.Ordinal);
    }

    [Fact]
    public void SecretNewAndSignWithNew_RotationSignsWithTheNewSecretThatOnlyRotatingPodsAccept()
    {
        const string Old = "old-secret-0123456789abcdef0123456789abcdef";
        const string New = "new-secret-0123456789abcdef0123456789abcdef";
        var oldOnly = Keys(("BLOCKING_COORDINATION_SECRET", Old));
        var rotating = Keys(("BLOCKING_COORDINATION_SECRET", Old), ("BLOCKING_COORDINATION_SECRET_NEW", New));
        var signingWithNew = Keys(("BLOCKING_COORDINATION_SECRET", Old), ("BLOCKING_COORDINATION_SECRET_NEW", New),
            ("BLOCKING_COORDINATION_SIGN_WITH_NEW", "true"));
        var newOnly = Keys(("BLOCKING_COORDINATION_SECRET", New));
        const string Message = "coordinator-1:signal-1:1700000000000";

        // Step 1 (NEW set): still signs with the old secret, accepts both.
        Assert.True(oldOnly.Verify(Message, rotating.Sign(Message)));
        Assert.True(rotating.Verify(Message, newOnly.Sign(Message)));
        // Step 2 (SIGN_WITH_NEW): signs with the new secret; pods without NEW reject it, rotating pods accept it.
        Assert.False(oldOnly.Verify(Message, signingWithNew.Sign(Message)));
        Assert.True(rotating.Verify(Message, signingWithNew.Sign(Message)));
        Assert.True(newOnly.Verify(Message, signingWithNew.Sign(Message)));
    }

    private static Cfn.Coordination.SigningKeys Keys(params (string Name, string Value)[] variables)
    {
        var env = new Hashtable();
        foreach (var (name, value) in variables)
        {
            env[name] = value;
        }

        return CfnConfiguration.Load(env).Keys!;
    }

    /// <summary>The environment of one process: HTTP_PORT, the secret, and nothing inherited that would change the test.</summary>
    private static Dictionary<string, string?> Environment(int httpPort, params (string Name, string? Value)[] variables)
    {
        var env = new Dictionary<string, string?>(StringComparer.Ordinal)
        {
            ["HTTP_PORT"] = httpPort.ToString(CultureInfo.InvariantCulture),
            ["BLOCKING_COORDINATION_SECRET"] = Secret,
        };
        foreach (var name in new[]
                 {
                     "REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_DB", "REDIS_PASSWORD", "REDIS_POOL_SIZE", "LOG_FORMAT", "COORDINATOR_ID",
                     "SWARM_ID", "CFN_ADMIN_TOKEN", "HEARTBEAT_DEBUG", "HEARTBEAT_INTERVAL_MS", "ENABLE_HEARTBEAT_MONITORING",
                     "SWARM_EXPECTED_COORDINATORS", "BLOCKING_COORDINATION_SECRET_NEW", "BLOCKING_COORDINATION_SIGN_WITH_NEW",
                 })
        {
            env[name] = null;
        }

        foreach (var (name, value) in variables)
        {
            env[name] = value;
        }

        return env;
    }

    private static Process StartRedisServer(int port, params string[] extra)
    {
        var start = new ProcessStartInfo("redis-server") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in new[] { "--port", $"{port}", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no" }.Concat(extra))
        {
            start.ArgumentList.Add(arg);
        }

        var process = Process.Start(start)!;
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    private Task<ConnectionMultiplexer> ConnectAsync() =>
        ConnectionMultiplexer.ConnectAsync($"{Endpoint},allowAdmin=true");

    private static async Task<HttpResponseMessage> PostAsync(HttpClient client, string path, string? token)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent("{}", System.Text.Encoding.UTF8, "application/json") };
        if (token is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        }

        return await client.SendAsync(request);
    }

    /// <summary>
    /// The CLIENT LIST entries of the test Redis that belong to process <paramref name="pid"/>: the local ports of its
    /// TCP connections to Redis (from <c>ss</c>) matched against each entry's <c>addr</c>.
    /// </summary>
    private async Task<List<string>> RedisClientsOfAsync(ConnectionMultiplexer redis, int pid)
    {
        var ports = (await CfnRun.ShellAsync($"ss -Htnp state established '( dport = :{RedisPort} )' | grep 'pid={pid},' | awk '{{print $3}}'", allowFailure: true))
            .Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(a => a[(a.LastIndexOf(':') + 1)..])
            .ToHashSet(StringComparer.Ordinal);
        var server = redis.GetServer(redis.GetEndPoints()[0]);
        var clients = ((string?)await server.ExecuteAsync("CLIENT", "LIST") ?? "").Split('\n', StringSplitOptions.RemoveEmptyEntries);
        return clients.Where(c => c.Split(' ').FirstOrDefault(f => f.StartsWith("addr=", StringComparison.Ordinal)) is { } addr &&
                                  ports.Contains(addr[(addr.LastIndexOf(':') + 1)..])).ToList();
    }

    private static async Task WaitReadyAsync(HttpClient http, CfnRun run)
    {
        var ready = false;
        await EventuallyAsync(async () =>
        {
            Assert.False(run.HasExited, "cfn serve exited:\n" + run.Tail(30));
            try
            {
                ready = (await http.GetAsync("/health/ready")).StatusCode == HttpStatusCode.OK;
            }
            catch (HttpRequestException)
            {
                // not listening yet
            }
            catch (TaskCanceledException)
            {
                // slow start
            }

            return ready;
        }, Startup, pollMs: 100);
        Assert.True(ready, "cfn serve did not become ready:\n" + run.Tail(30));
    }
}
