using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Cfn.Tests.Infrastructure;
using StackExchange.Redis;

namespace Cfn.Tests.Api;

/// <summary><c>cfn serve --role timeout-handler</c> as a real process, over real HTTP on loopback, against the test Redis (db 5).</summary>
public sealed class TimeoutHandlerApiTests
{
    private const int Db = 5;
    private const string Secret = "api-test-secret-0123456789abcdef0123456789abcdef";

    [Fact]
    public async Task Serve_TimeoutHandler_AnswersHealthMetricsCleanupAndRefusesBadIds()
    {
        var endpoint = TestRedis.Endpoint;
        await using var redis = await ConnectionMultiplexer.ConnectAsync($"{endpoint},allowAdmin=true,defaultDatabase={Db}");
        var db = redis.GetDatabase(Db);
        await db.ExecuteAsync("FLUSHDB");
        await db.StringSetAsync("blocking:heartbeat:coordinator-1", "{\"coordinatorId\":\"coordinator-1\",\"timestamp\":1}");
        await db.StringSetAsync("blocking:signal:coordinator-1", "{}");
        await db.StringSetAsync("blocking:heartbeat:coordinator-10", "{\"coordinatorId\":\"coordinator-10\",\"timestamp\":1}");

        var port = CfnRun.FreePort();
        using var process = Start(endpoint, port);
        try
        {
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(10) };
            await WaitReadyAsync(http, process);

            var live = await http.GetAsync("/health/live");
            Assert.Equal(HttpStatusCode.OK, live.StatusCode);
            var metrics = await http.GetStringAsync("/metrics");
            Assert.Contains("circuit_breaker_state{name=\"redis\",state=\"closed\"} 1", metrics, StringComparison.Ordinal);
            Assert.Contains("# TYPE timeout_events_total counter", await http.GetStringAsync("/prometheus/metrics"), StringComparison.Ordinal);

            var cleanup = await http.PostAsync("/api/coordinators/coordinator-1/cleanup", null);
            Assert.Equal(HttpStatusCode.OK, cleanup.StatusCode);
            using var body = JsonDocument.Parse(await cleanup.Content.ReadAsStringAsync());
            Assert.Equal("coordinator-1", body.RootElement.GetProperty("coordinatorId").GetString());
            Assert.Equal(2, body.RootElement.GetProperty("keysDeleted").GetInt64());
            Assert.Equal(1, body.RootElement.GetProperty("categories").GetProperty("heartbeat").GetInt64());
            Assert.True(await db.KeyExistsAsync("blocking:heartbeat:coordinator-10"));

            var again = JsonDocument.Parse(await (await http.PostAsync("/api/coordinators/coordinator-1/cleanup", null)).Content.ReadAsStringAsync());
            Assert.Equal(0, again.RootElement.GetProperty("keysDeleted").GetInt64());

            var bad = await http.PostAsync("/api/coordinators/a*b/cleanup", null);
            Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
            using var error = JsonDocument.Parse(await bad.Content.ReadAsStringAsync());
            Assert.Equal("INVALID_ID", error.RootElement.GetProperty("code").GetString());

            var unblock = JsonDocument.Parse(await (await http.PostAsync("/api/timeouts/force-unblock-all", null)).Content.ReadAsStringAsync());
            Assert.Equal(0, unblock.RootElement.GetProperty("unblocked").GetInt32());
            var deadlocks = JsonDocument.Parse(await http.GetStringAsync("/api/deadlocks"));
            Assert.Equal(0, deadlocks.RootElement.GetProperty("deadlocks").GetArrayLength());
        }
        finally
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
            await db.ExecuteAsync("FLUSHDB");
        }
    }

    [Fact]
    public async Task Serve_InvalidVariable_StopsWithOneLineNamingIt()
    {
        var endpoint = Environment.GetEnvironmentVariable("CFN_TEST_REDIS") ?? "127.0.0.1:6379";
        using var process = Start(endpoint, CfnRun.FreePort(), ("HEARTBEAT_MAX_WARNINGS", "many"));
        var stderr = await process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();

        Assert.Equal(2, process.ExitCode);
        Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("HEARTBEAT_MAX_WARNINGS", stderr, StringComparison.Ordinal);
    }

    private static Process Start(string endpoint, int port, params (string Name, string Value)[] extra)
    {
        var colon = endpoint.LastIndexOf(':');
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in new[] { Path.Combine(AppContext.BaseDirectory, "cfn.dll"), "serve", "--role", "timeout-handler" })
        {
            start.ArgumentList.Add(arg);
        }

        start.Environment["REDIS_HOST"] = endpoint[..colon];
        start.Environment["REDIS_PORT"] = endpoint[(colon + 1)..];
        start.Environment["REDIS_DB"] = Db.ToString(System.Globalization.CultureInfo.InvariantCulture);
        start.Environment["HTTP_PORT"] = port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        start.Environment["BLOCKING_COORDINATION_SECRET"] = Secret;
        foreach (var (name, value) in extra)
        {
            start.Environment[name] = value;
        }

        var process = Process.Start(start)!;
        process.OutputDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        return process;
    }

    private static async Task WaitReadyAsync(HttpClient http, Process process)
    {
        var ready = false;
        await EventuallyAsync(async () =>
        {
            try
            {
                ready = (await http.GetAsync("/health/ready")).StatusCode == HttpStatusCode.OK;
            }
            catch (HttpRequestException)
            {
                // not listening yet
            }

            return ready || process.HasExited;
        }, "cfn serve did not become ready", TimeSpan.FromSeconds(30), pollMs: 100);
        if (!ready)
        {
            Assert.Fail("cfn serve exited: " + await process.StandardError.ReadToEndAsync());
        }
    }
}
