using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using Cfn.Tests.Infrastructure;
using StackExchange.Redis;

namespace Cfn.Tests.Commands;

/// <summary>
/// The production shape (D1): one <c>cfn serve --role …</c> process per role — timeout handler, swarm manager, two
/// coordinators and a validator — sharing one Redis (db 16), each on its own HTTP port as each pod would be on 8080.
/// Work fed to the swarm manager is validated and completed; SIGTERM stops every process with exit 0 and its keys gone.
/// </summary>
public sealed class ServeCommandTests
{
    private const int Db = 16;
    private const string Secret = "serve-test-secret-0123456789abcdef0123456789abcdef";

    [Fact]
    public async Task Serve_EachRoleItsOwnProcess_WorkFlowsThroughTheSwarm_SigtermStopsClean()
    {
        var endpoint = TestRedis.Endpoint;
        var (redis, server, db) = await TestRedis.OpenEmptyAsync(Db);
        await using var connection = redis;

        var ports = new Dictionary<string, int>();
        var runs = new Dictionary<string, CfnRun>();
        CfnRun Serve(string name, string role, params (string, string)[] extra)
        {
            ports[name] = CfnRun.FreePort();
            var env = new Dictionary<string, string?>
            {
                ["REDIS_URL"] = null,
                ["REDIS_HOST"] = endpoint[..endpoint.LastIndexOf(':')],
                ["REDIS_PORT"] = endpoint[(endpoint.LastIndexOf(':') + 1)..],
                ["REDIS_DB"] = Db.ToString(CultureInfo.InvariantCulture),
                ["REDIS_POOL_SIZE"] = "2",
                ["HTTP_PORT"] = ports[name].ToString(CultureInfo.InvariantCulture),
                ["BLOCKING_COORDINATION_SECRET"] = Secret,
                ["HEARTBEAT_INTERVAL_MS"] = "500",
                ["BLOCKING_TIMEOUT_MS"] = "15000",
                ["VALIDATION_DURATION_MEDIAN_MS"] = "20",
                ["VALIDATION_DURATION_P95_MS"] = "50",
                ["VALIDATION_FAILURE_RATE"] = "0",
                ["VALIDATORS_PER_ITEM"] = "1",
                ["SWARM_EXPECTED_COORDINATORS"] = "2",
            };
            foreach (var (key, value) in extra)
            {
                env[key] = value;
            }

            return runs[name] = CfnRun.Start(["serve", "--role", role], env);
        }

        try
        {
            Serve("timeout-handler", "timeout-handler");
            Serve("swarm-manager", "swarm-manager");
            Serve("coordinator-1", "coordinator", ("COORDINATOR_ID", "coordinator-1"), ("SWARM_ID", "swarm-a"));
            Serve("coordinator-2", "coordinator", ("COORDINATOR_ID", "coordinator-2"), ("SWARM_ID", "swarm-a"));
            Serve("validator", "validator", ("COORDINATOR_ID", "validator-1"));
            foreach (var (name, port) in ports)
            {
                await runs[name].WaitReadyAsync(port);
            }

            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
            string Url(string name, string path) => $"http://127.0.0.1:{ports[name]}{path}";

            // The swarm manager sees both coordinators from their heartbeats, with the configmap's expected count.
            var status = await WaitForAsync(async () =>
            {
                var doc = JsonDocument.Parse(await http.GetStringAsync(Url("swarm-manager", "/api/swarms/status")));
                var swarm = doc.RootElement.GetProperty("swarms").EnumerateArray().FirstOrDefault(s => s.GetProperty("swarmId").GetString() == "swarm-a");
                return swarm.ValueKind == JsonValueKind.Object && swarm.GetProperty("coordinatorCount").GetInt32() == 2 ? doc : null;
            });
            Assert.Equal(2, status.RootElement.GetProperty("expectedCoordinators").GetInt32());

            // Work fed through the swarm manager's API is taken by a coordinator, validated and completed.
            for (var i = 0; i < 4; i++)
            {
                var body = new StringContent($"{{\"workId\":\"job-{i}\",\"input\":{{\"n\":{i}}}}}", Encoding.UTF8, "application/json");
                Assert.Equal(HttpStatusCode.OK, (await http.PostAsync(Url("swarm-manager", "/api/swarms/swarm-a/work"), body)).StatusCode);
            }

            var completed = await WaitForAsync(async () =>
            {
                var done = 0;
                foreach (var coordinator in new[] { "coordinator-1", "coordinator-2" })
                {
                    for (var i = 0; i < 4; i++)
                    {
                        var raw = (string?)await db.StringGetAsync($"coordinator:work:swarm-a:{coordinator}:job-{i}");
                        done += raw?.Contains("\"completed\"", StringComparison.Ordinal) == true ? 1 : 0;
                    }
                }

                return done == 4 ? (int?)done : null;
            });
            Assert.Equal(4, completed);

            // The validator's durations reach the swarm manager's performance endpoint (shared through Redis).
            var performance = JsonDocument.Parse(await http.GetStringAsync(Url("swarm-manager", "/api/validators/performance")));
            var validator = Assert.Single(performance.RootElement.GetProperty("validators").EnumerateArray());
            Assert.Equal("validator-1", validator.GetProperty("validatorId").GetString());
            Assert.Equal(4, validator.GetProperty("count").GetInt32());

            // Each coordinator serves its own state; the timeout handler its own endpoints.
            var state = JsonDocument.Parse(await http.GetStringAsync(Url("coordinator-2", "/api/coordinator/state")));
            Assert.Equal("coordinator-2", state.RootElement.GetProperty("coordinatorId").GetString());
            Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync(Url("timeout-handler", "/api/coordinator/state"))).StatusCode);
            Assert.Contains("coordinator_spawns_total", await http.GetStringAsync(Url("swarm-manager", "/metrics")), StringComparison.Ordinal);
            Assert.Contains("blocking_heartbeat_timestamp{coordinator_id=\"coordinator-1\"", await http.GetStringAsync(Url("coordinator-1", "/metrics")),
                StringComparison.Ordinal);

            // SIGTERM: every process exits 0 within 10 s and takes its keys with it.
            foreach (var name in new[] { "coordinator-1", "coordinator-2", "validator", "swarm-manager", "timeout-handler" })
            {
                await runs[name].SignalAsync("TERM");
                Assert.Equal(0, await runs[name].WaitForExitAsync(TimeSpan.FromSeconds(10)));
            }

            foreach (var id in new[] { "coordinator-1", "coordinator-2", "validator-1" })
            {
                Assert.False(await db.KeyExistsAsync($"blocking:heartbeat:{id}"));
                Assert.False(await db.KeyExistsAsync($"coordinator:activity:{id}"));
            }

            Assert.Equal(0, await db.SortedSetLengthAsync("blocking:coordinators"));
        }
        finally
        {
            foreach (var run in runs.Values)
            {
                await run.DisposeAsync();
            }

            await server.FlushDatabaseAsync(Db);
        }
    }

    [Fact]
    public async Task Serve_All_OneProcessRunsEveryRoleOnOnePort()
    {
        const int db = 18;
        var endpoint = TestRedis.Endpoint;
        await using var redis = await ConnectionMultiplexer.ConnectAsync($"{endpoint},allowAdmin=true");
        await redis.GetServer(redis.GetEndPoints()[0]).FlushDatabaseAsync(db);
        var port = CfnRun.FreePort();
        await using var run = CfnRun.Start(["serve", "--role", "all"], new Dictionary<string, string?>
        {
            ["REDIS_URL"] = $"redis://{endpoint}/{db}",
            ["HTTP_PORT"] = port.ToString(CultureInfo.InvariantCulture),
            ["BLOCKING_COORDINATION_SECRET"] = Secret,
            ["COORDINATOR_ID"] = "coordinator-solo",
            ["SWARM_ID"] = "swarm-s",
            ["VALIDATORS_PER_ITEM"] = "1",
            ["VALIDATION_DURATION_MEDIAN_MS"] = "10",
            ["VALIDATION_DURATION_P95_MS"] = "20",
        });
        await run.WaitReadyAsync(port);
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(10) };
        var body = new StringContent("{\"workId\":\"solo-1\",\"input\":{\"x\":1}}", Encoding.UTF8, "application/json");
        Assert.Equal(HttpStatusCode.OK, (await http.PostAsync("/api/swarms/swarm-s/work", body)).StatusCode);
        var db_ = redis.GetDatabase(db);
        await WaitForAsync(async () =>
            ((string?)await db_.StringGetAsync("coordinator:work:swarm-s:coordinator-solo:solo-1"))?.Contains("\"completed\"", StringComparison.Ordinal) == true
                ? (bool?)true : null);

        // Every role's endpoints answer on the one port.
        Assert.Equal("coordinator-solo", JsonDocument.Parse(await http.GetStringAsync("/api/coordinator/state")).RootElement.GetProperty("coordinatorId").GetString());
        Assert.Contains(JsonDocument.Parse(await http.GetStringAsync("/api/swarms/status")).RootElement.GetProperty("swarms").EnumerateArray(),
            s => s.GetProperty("swarmId").GetString() == "swarm-s" && s.GetProperty("coordinatorCount").GetInt32() == 1);
        Assert.Equal(JsonValueKind.Array, JsonDocument.Parse(await http.GetStringAsync("/api/deadlocks")).RootElement.GetProperty("deadlocks").ValueKind);
        Assert.Single(JsonDocument.Parse(await http.GetStringAsync("/api/validators/performance")).RootElement.GetProperty("validators").EnumerateArray());

        await run.SignalAsync("TERM");
        Assert.Equal(0, await run.WaitForExitAsync(TimeSpan.FromSeconds(10)));
        await redis.GetServer(redis.GetEndPoints()[0]).FlushDatabaseAsync(db);
    }

    [Fact]
    public async Task Serve_CoordinatorSuperseded_ProcessExitsThreeSoThePodRestarts()
    {
        const int db = 19;
        var endpoint = TestRedis.Endpoint;
        await using var redis = await ConnectionMultiplexer.ConnectAsync($"{endpoint},allowAdmin=true");
        await redis.GetServer(redis.GetEndPoints()[0]).FlushDatabaseAsync(db);
        var port = CfnRun.FreePort();
        await using var run = CfnRun.Start(["serve", "--role", "coordinator"], new Dictionary<string, string?>
        {
            ["REDIS_URL"] = $"redis://{endpoint}/{db}",
            ["HTTP_PORT"] = port.ToString(CultureInfo.InvariantCulture),
            ["BLOCKING_COORDINATION_SECRET"] = Secret,
            ["COORDINATOR_ID"] = "coordinator-3",
            ["SWARM_ID"] = "swarm-z",
            ["HEARTBEAT_INTERVAL_MS"] = "200",
        });
        await run.WaitReadyAsync(port);

        // Another instance took over the ID (what escalation's fence or a restarted pod does): the next heartbeat is refused.
        await redis.GetDatabase(db).StringIncrementAsync("coordinator:epoch:coordinator-3");

        Assert.Equal(3, await run.WaitForExitAsync(TimeSpan.FromSeconds(15)));
        Assert.Contains(run.Lines, l => l.Contains("was superseded", StringComparison.Ordinal) && l.Contains("coordinator-3", StringComparison.Ordinal));
        await redis.GetServer(redis.GetEndPoints()[0]).FlushDatabaseAsync(db);
    }

    [Theory]
    [InlineData("coordinator", "COORDINATOR_ID", "coordinator:1")]
    [InlineData("validator", "VALIDATION_FAILURE_RATE", "2")]
    [InlineData("swarm-manager", "COORDINATOR_HOST_CAPACITY", "none")]
    [InlineData("timeout-handler", "HEARTBEAT_STALE_THRESHOLD_MS", "-5")]
    public async Task Serve_InvalidVariable_ExitsTwoWithOneLineNamingIt(string role, string name, string value)
    {
        await using var run = CfnRun.Start(["serve", "--role", role], new Dictionary<string, string?>
        {
            ["BLOCKING_COORDINATION_SECRET"] = Secret,
            [name] = value,
        });
        Assert.Equal(2, await run.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        var line = Assert.Single(run.Lines, l => l.Length > 0);
        Assert.Contains(name, line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Serve_NoSecret_ExitsTwo_SoACrashLoopShows()
    {
        await using var run = CfnRun.Start(["serve", "--role", "coordinator"], new Dictionary<string, string?> { ["BLOCKING_COORDINATION_SECRET"] = null });
        Assert.Equal(2, await run.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains("BLOCKING_COORDINATION_SECRET", run.Output, StringComparison.Ordinal);
    }

    private static async Task<T> WaitForAsync<T>(Func<Task<T?>> probe) =>
        (await EventuallyAsync(probe, value => value is not null, "condition not met", TimeSpan.FromSeconds(30), pollMs: 100))!;
}
