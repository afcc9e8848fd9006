using System.Globalization;
using System.Net;
using System.Text.Json;
using Cfn.Tests.Infrastructure;

namespace Cfn.Tests.Commands;

/// <summary>
/// <c>cfn work submit|get</c> through real processes and the real redis-server (database 43): work submitted from the
/// shell to a real <c>cfn serve --role all</c> comes back with its verdicts; bad input is exit 2 with nothing written;
/// a wait that times out is exit 3 with the record as it stands.
/// </summary>
public sealed class WorkCommandTests
{
    private const int Db = 43;
    private const string Secret = "work-command-secret-0123456789abcdef0123456789";

    private static Dictionary<string, string?> Environment() => new()
    {
        ["REDIS_URL"] = $"redis://{TestRedis.Endpoint}/{Db}",
        ["BLOCKING_COORDINATION_SECRET"] = null, // cfn work signs nothing: it must not need the secret
    };

    private static Task<(int Code, string Stdout, string Stderr)> WorkAsync(params string[] args) =>
        CfnRun.RunToEndAsync(["work", .. args], Environment());

    [Fact]
    public async Task SubmitWait_ThroughServeRoleAll_ReturnsTheVerdictsAndGetAndHttpShowTheSameRecord()
    {
        var (redis, server, db) = await TestRedis.OpenEmptyAsync(Db);
        await using var connection = redis;
        var port = CfnRun.FreePort();
        await using var run = CfnRun.Start(["serve", "--role", "all"], new Dictionary<string, string?>
        {
            ["REDIS_URL"] = $"redis://{TestRedis.Endpoint}/{Db}",
            ["HTTP_PORT"] = port.ToString(CultureInfo.InvariantCulture),
            ["BLOCKING_COORDINATION_SECRET"] = Secret,
            ["COORDINATOR_ID"] = "coordinator-k",
            ["SWARM_ID"] = "swarm-k",
            ["VALIDATORS_PER_ITEM"] = "1",
            ["VALIDATION_DURATION_MEDIAN_MS"] = "20",
            ["VALIDATION_DURATION_P95_MS"] = "50",
            ["VALIDATION_FAILURE_RATE"] = "0",
            ["BLOCKING_TIMEOUT_MS"] = "20000",
        });
        try
        {
            await run.WaitReadyAsync(port);

            var (code, stdout, stderr) = await WorkAsync("submit", "--swarm", "swarm-k", "--work-id", "item-k1",
                "--input", """{"n":1,"text":"hello"}""", "--wait", "--timeout-ms", "30000");

            Assert.True(code == 0, $"exit {code}: {stderr}\n{stdout}\n{run.Tail(30)}");
            var record = JsonDocument.Parse(stdout).RootElement;
            Assert.Equal("item-k1", record.GetProperty("workId").GetString());
            Assert.Equal("swarm-k", record.GetProperty("swarmId").GetString());
            Assert.Equal("completed", record.GetProperty("status").GetString());
            Assert.Equal("coordinator-k", record.GetProperty("owner").GetString());
            var verdict = Assert.Single(record.GetProperty("verdicts").EnumerateArray());
            Assert.Equal("pass", verdict.GetProperty("verdict").GetString());
            Assert.Equal("item-k1", verdict.GetProperty("workId").GetString());
            Assert.False(string.IsNullOrEmpty(verdict.GetProperty("validatorId").GetString()));
            Assert.Equal("pass", record.GetProperty("result").GetProperty("outcome").GetString());
            Assert.Equal(["queued", "taken", "completed"], record.GetProperty("history").EnumerateArray().Select(e => e.GetProperty("event").GetString()));

            var (getCode, got, getError) = await WorkAsync("get", "--swarm", "swarm-k", "--work-id", "item-k1");
            Assert.True(getCode == 0, getError);
            Assert.Equal(stdout, got); // a finished record no longer changes

            // The same record over HTTP, on the process that maps the work intake.
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
            var response = await http.GetAsync($"http://127.0.0.1:{port}/api/swarms/swarm-k/work/item-k1");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal(stdout, await response.Content.ReadAsStringAsync());

            // Submitted without waiting, its input read whole from a file (a generated ID), then followed with get --wait.
            var file = Path.Combine(Path.GetTempPath(), $"cfn-work-{Guid.NewGuid():N}.json");
            await File.WriteAllTextAsync(file, "{\n  \"items\": [1, 2, 3],\n  \"note\": \"spaces and lines\"\n}\n");
            var (queuedCode, queued, queuedError) = await WorkAsync("submit", "--swarm", "swarm-k", "--input", "@" + file);
            File.Delete(file);
            Assert.True(queuedCode == 0, queuedError);
            var submitted = JsonDocument.Parse(queued).RootElement;
            var workId = submitted.GetProperty("workId").GetString()!;
            Assert.StartsWith("work-", workId, StringComparison.Ordinal);
            Assert.Equal("queued", submitted.GetProperty("status").GetString());
            var (waitCode, waited, waitError) = await WorkAsync("get", "--swarm", "swarm-k", "--work-id", workId, "--wait", "--timeout-ms", "30000");
            Assert.True(waitCode == 0, waitError);
            Assert.Equal("completed", JsonDocument.Parse(waited).RootElement.GetProperty("status").GetString());
            var item = JsonDocument.Parse((string)(await db.StringGetAsync($"coordinator:work:swarm-k:coordinator-k:{workId}"))!).RootElement;
            Assert.Equal("spaces and lines", item.GetProperty("data").GetProperty("input").GetProperty("note").GetString());
        }
        finally
        {
            await server.FlushDatabaseAsync(Db);
        }
    }

    [Fact]
    public async Task Work_BadInputTimeoutAndUnknownId_Exit2NothingWritten_Exit3WithTheRecord_Exit1()
    {
        var (redis, server, _) = await TestRedis.OpenEmptyAsync(Db + 1); // no server here: a swarm nobody works
        await using var connection = redis;
        var env = Environment();
        env["REDIS_URL"] = $"redis://{TestRedis.Endpoint}/{Db + 1}";
        try
        {
            var before = await server.DatabaseSizeAsync(Db + 1);
            foreach (var (args, field) in new (string[], string)[]
            {
                (["submit", "--swarm", "swarm-z", "--input", "{oops"], "--input: must be JSON"),
                (["submit", "--swarm", "bad swarm", "--input", "1"], "--swarm"),
                (["submit", "--swarm", "swarm-z", "--work-id", "a.b", "--input", "1"], "--work-id"),
                (["submit", "--swarm", "swarm-z", "--input", "1", "--wait", "--timeout-ms", "0"], "--timeout-ms"),
                (["submit", "--swarm", "swarm-z", "--input", "@/nonexistent/input.json"], "--input: cannot read"),
                (["submit", "--swarm", "swarm-z", "--input", JsonSerializer.Serialize(new string('x', 70_000))], "--input"),
                (["get", "--swarm", "swarm-z", "--work-id", "bad*id"], "--work-id"),
            })
            {
                var (code, stdout, stderr) = await CfnRun.RunToEndAsync(["work", .. args], env);
                Assert.True(code == 2, $"{string.Join(' ', args)}: exit {code}: {stderr}");
                Assert.Contains(field, stderr, StringComparison.Ordinal);
                Assert.Single(stderr.Split('\n'));
                Assert.StartsWith($"cfn work {args[0]}: ", stderr, StringComparison.Ordinal);
                Assert.Equal("", stdout);
            }

            Assert.Equal(before, await server.DatabaseSizeAsync(Db + 1));

            // Nobody works swarm-z: the wait ends at its timeout, exit 3, with the record as it stands.
            var (timedOut, partial, _) = await CfnRun.RunToEndAsync(
                ["work", "submit", "--swarm", "swarm-z", "--work-id", "item-z", "--input", "{}", "--wait", "--timeout-ms", "800"], env);
            Assert.Equal(3, timedOut);
            var record = JsonDocument.Parse(partial).RootElement;
            Assert.Equal("queued", record.GetProperty("status").GetString());
            Assert.Equal("item-z", record.GetProperty("workId").GetString());

            var (unknown, nothing, error) = await CfnRun.RunToEndAsync(["work", "get", "--swarm", "swarm-z", "--work-id", "item-none"], env);
            Assert.Equal(1, unknown);
            Assert.Equal("", nothing);
            Assert.Equal("cfn work get: work item-none not found in swarm swarm-z: unknown, or its record expired (WORK_RESULT_TTL_SECONDS)", error);
        }
        finally
        {
            await server.FlushDatabaseAsync(Db + 1);
        }
    }
}
