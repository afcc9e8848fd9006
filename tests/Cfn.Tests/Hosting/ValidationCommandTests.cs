using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using Cfn.Tests.Infrastructure;
using StackExchange.Redis;

namespace Cfn.Tests.Hosting;

/// <summary>
/// <c>VALIDATION_COMMAND</c> through the product (database 37): a real <c>cfn serve --role all</c> whose validator runs
/// the user's program, a bash script that passes even inputs and fails odd ones. Work submitted over HTTP completes with
/// the program's verdicts and reasons.
/// </summary>
public sealed class ValidationCommandTests : IDisposable
{
    private const int Db = 37;
    private const string Secret = "validation-command-secret-0123456789abcdef0123";
    private readonly string _dir = Directory.CreateTempSubdirectory("cfn-validation-e2e-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task Serve_ValidationCommand_ItemsCompleteWithTheProgramsVerdicts()
    {
        var endpoint = TestRedis.Endpoint;
        var (redis, server, db) = await TestRedis.OpenEmptyAsync(Db);
        await using var connection = redis;
        var script = Path.Combine(_dir, "even.sh");
        await File.WriteAllTextAsync(script, """
            #!/bin/bash
            n=$(jq -r .input.n)
            if (( n % 2 == 0 )); then jq -cn --arg m "$1" '{verdict: "pass", reason: ($m + " even")}'
            else jq -cn --arg m "$1" '{verdict: "fail", reason: ($m + " odd")}'; fi
            """);
        var port = CfnRun.FreePort();
        await using var run = CfnRun.Start(["serve", "--role", "all"], new Dictionary<string, string?>
        {
            ["REDIS_URL"] = $"redis://{endpoint}/{Db}",
            ["HTTP_PORT"] = port.ToString(CultureInfo.InvariantCulture),
            ["BLOCKING_COORDINATION_SECRET"] = Secret,
            ["COORDINATOR_ID"] = "coordinator-v",
            ["SWARM_ID"] = "swarm-v",
            ["VALIDATORS_PER_ITEM"] = "1",
            ["VALIDATION_COMMAND"] = JsonSerializer.Serialize(new[] { "bash", script, "checked by even.sh;" }),
            ["VALIDATION_TIMEOUT_MS"] = "20000",
        });
        try
        {
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(10) };
            await run.WaitReadyAsync(port);

            foreach (var (id, n) in new[] { ("item-even", 4), ("item-odd", 7) })
            {
                var body = new StringContent(JsonSerializer.Serialize(new { workId = id, input = new { n } }), Encoding.UTF8, "application/json");
                Assert.Equal(HttpStatusCode.OK, (await http.PostAsync("/api/swarms/swarm-v/work", body)).StatusCode);
            }

            async Task<JsonElement?> CompletedAsync(string id)
            {
                var raw = await db.StringGetAsync($"coordinator:work:swarm-v:coordinator-v:{id}");
                if (raw.IsNull)
                {
                    return null;
                }

                var item = JsonDocument.Parse((string)raw!).RootElement;
                return item.GetProperty("status").GetString() == "completed" ? item.GetProperty("data") : null;
            }

            Assert.True(await EventuallyAsync(async () => await CompletedAsync("item-even") is not null && await CompletedAsync("item-odd") is not null, TimeSpan.FromSeconds(60)),
                "the items were not completed:\n" + run.Tail(40));
            var even = (await CompletedAsync("item-even"))!.Value;
            var odd = (await CompletedAsync("item-odd"))!.Value;
            Assert.Equal("pass", even.GetProperty("outcome").GetString());
            Assert.Equal("checked by even.sh; even", Assert.Single(even.GetProperty("verdicts").EnumerateArray()).GetProperty("reason").GetString());
            Assert.Equal("fail", odd.GetProperty("outcome").GetString());
            Assert.Equal("checked by even.sh; odd", Assert.Single(odd.GetProperty("verdicts").EnumerateArray()).GetProperty("reason").GetString());
            var config = Assert.Single(run.Lines, l => l.Contains("VALIDATION_COMMAND=", StringComparison.Ordinal));
            Assert.Contains("VALIDATION_COMMAND=bash (+2 args)", config, StringComparison.Ordinal);
            Assert.DoesNotContain("checked by", config, StringComparison.Ordinal); // arguments may carry a token: never logged
        }
        finally
        {
            await server.FlushDatabaseAsync(Db);
        }
    }
}
