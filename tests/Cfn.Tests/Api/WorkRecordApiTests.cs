using System.Net;
using System.Text;
using System.Text.Json;
using Cfn.Api;
using Cfn.Coordination;
using Cfn.Coordination.Metrics;
using Cfn.Tests.Infrastructure;

namespace Cfn.Tests.Api;

/// <summary>
/// <c>GET /api/swarms/{swarmId}/work/{workId}</c> over real HTTP on the test Redis (database 42, flushed): the record of
/// an item from its submission (<c>POST</c> on the same group) to its completion by a real coordinator, open to a reader
/// from outside loopback; 404 <c>WORK_NOT_FOUND</c> and 400 <c>INVALID_ID</c> naming the field.
/// </summary>
public sealed class WorkRecordApiTests
{
    private const int Db = 42;
    private const string Secret = "work-record-api-secret-0123456789abcdef0123";
    private const string Token = "work-record-api-admin-token-0123456789";

    [Fact]
    public async Task Get_SubmittedThenCompleted_200WithStatusHistoryVerdictsAndResult_OpenFromOutside()
    {
        var (multiplexer, server, _) = await TestRedis.OpenEmptyAsync(Db);
        await using var _m = multiplexer;
        await using var redis = new RedisContext(multiplexer, new CoordinationOptions(), database: Db);
        await using var queue = new WorkQueue(redis);
        try
        {
            await using var web = await TestWebApp.StartAsync(app => app.MapWorkIntakeApi(queue, new AdminAccess(Token)), listenExternally: true);
            var posted = await web.Loopback.PostAsync("/api/swarms/swarm-h/work",
                new StringContent("""{"workId":"item-h","input":{"n":7}}""", Encoding.UTF8, "application/json"));
            Assert.Equal(HttpStatusCode.OK, posted.StatusCode);

            var queued = await GetAsync(web.External!, "/api/swarms/swarm-h/work/item-h"); // read-only: open from outside
            Assert.Equal(HttpStatusCode.OK, queued.Status);
            Assert.Equal("queued", queued.Body.GetProperty("status").GetString());
            Assert.False(queued.Body.TryGetProperty("owner", out _));
            Assert.False(queued.Body.TryGetProperty("verdicts", out _));
            Assert.True(queued.Body.GetProperty("enqueuedAt").GetInt64() > 1_700_000_000_000);

            // A real coordinator takes it and completes it with a verdict, as the work loop does.
            await using var coordinator = await Coordinator.StartAsync(redis, new SigningKeys(Secret), "coordinator-h", "swarm-h",
                new CoordinationMetrics(Prometheus.Metrics.NewCustomRegistry()), runHeartbeatLoop: false);
            var taken = await queue.TryTakeAsync("swarm-h", coordinator.Id);
            var item = await coordinator.Work.CreateAsync(taken!.WorkId, JsonSerializer.SerializeToElement(new { input = taken.Input }));
            var inProgress = await GetAsync(web.Loopback, "/api/swarms/swarm-h/work/item-h");
            Assert.Equal("in-progress", inProgress.Body.GetProperty("status").GetString());
            Assert.Equal("coordinator-h", inProgress.Body.GetProperty("owner").GetString());
            await coordinator.Work.CompleteAsync(item.Item!, JsonSerializer.SerializeToElement(new
            {
                input = new { n = 7 },
                outcome = "pass",
                verdicts = new[] { new { workId = "item-h", validatorId = "validator-h", verdict = "pass", durationMs = 12 } },
                missing = Array.Empty<string>(),
                waitedMs = 15,
            }));

            var done = await GetAsync(web.External!, "/api/swarms/swarm-h/work/item-h");
            Assert.Equal(HttpStatusCode.OK, done.Status);
            Assert.Equal("application/json", done.ContentType);
            Assert.Equal("completed", done.Body.GetProperty("status").GetString());
            Assert.Equal("coordinator-h", done.Body.GetProperty("owner").GetString());
            Assert.Equal("validator-h", Assert.Single(done.Body.GetProperty("verdicts").EnumerateArray()).GetProperty("validatorId").GetString());
            Assert.Equal("pass", done.Body.GetProperty("result").GetProperty("outcome").GetString());
            Assert.Equal(15, done.Body.GetProperty("result").GetProperty("waitedMs").GetInt32());
            Assert.False(done.Body.GetProperty("result").TryGetProperty("input", out _));
            Assert.Equal(["queued", "taken", "completed"], done.Body.GetProperty("history").EnumerateArray().Select(e => e.GetProperty("event").GetString()));
            Assert.True(done.Body.GetProperty("finishedAt").GetInt64() >= done.Body.GetProperty("enqueuedAt").GetInt64());
            Assert.Equal("completed", (await TestWebApp.JqAsync(".status", done.Text)).Trim('\n', '"'));
        }
        finally
        {
            await server.FlushDatabaseAsync(Db);
        }
    }

    [Fact]
    public async Task Get_UnknownOrBadIds_404WorkNotFoundAnd400NamingTheField()
    {
        var (multiplexer, server, _) = await TestRedis.OpenEmptyAsync(Db);
        await using var _m = multiplexer;
        await using var redis = new RedisContext(multiplexer, new CoordinationOptions(), database: Db);
        await using var queue = new WorkQueue(redis);
        try
        {
            await using var web = await TestWebApp.StartAsync(app => app.MapWorkIntakeApi(queue, new AdminAccess(Token)));

            var missing = await GetAsync(web.Loopback, "/api/swarms/swarm-h/work/item-none");
            Assert.Equal(HttpStatusCode.NotFound, missing.Status);
            Assert.Equal("WORK_NOT_FOUND", missing.Body.GetProperty("code").GetString());
            Assert.Contains("item-none", missing.Body.GetProperty("error").GetString(), StringComparison.Ordinal);

            foreach (var (path, field) in new[]
            {
                ("/api/swarms/swarm-h/work/bad.id", "workId"),
                ("/api/swarms/swarm-h/work/" + new string('w', 65), "workId"),
                ("/api/swarms/bad*swarm/work/item-h", "swarmId"),
            })
            {
                var bad = await GetAsync(web.Loopback, path);
                Assert.True(bad.Status == HttpStatusCode.BadRequest, $"{path}: {bad.Status} {bad.Text}");
                Assert.Equal("INVALID_ID", bad.Body.GetProperty("code").GetString());
                Assert.Equal(field, bad.Body.GetProperty("field").GetString());
                Assert.Contains(field, bad.Body.GetProperty("error").GetString(), StringComparison.Ordinal);
            }

            Assert.Equal(0, await server.DatabaseSizeAsync(Db)); // a read writes nothing
        }
        finally
        {
            await server.FlushDatabaseAsync(Db);
        }
    }

    private static async Task<(HttpStatusCode Status, JsonElement Body, string Text, string? ContentType)> GetAsync(HttpClient http, string path)
    {
        var response = await http.GetAsync(path);
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, JsonDocument.Parse(text).RootElement.Clone(), text, response.Content.Headers.ContentType?.MediaType);
    }
}
