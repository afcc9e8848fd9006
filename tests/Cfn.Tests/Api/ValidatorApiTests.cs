using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Cfn.Api;
using Cfn.Coordination;
using Cfn.Coordination.Loop;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Validation;
using Cfn.Tests.Infrastructure;
using StackExchange.Redis;

namespace Cfn.Tests.Api;

/// <summary>
/// <c>GET /api/validators/performance</c> and <c>POST /api/swarms/{swarmId}/work</c> over real HTTP against the test
/// Redis (database 3, shared with the validation tests, which never record an average over 300000 ms; every key here
/// is this test's own and removed at the end).
/// </summary>
public sealed class ValidatorApiTests
{
    private const int Db = 3;
    private const string Token = "validator-api-admin-token";

    private static async Task<(ConnectionMultiplexer Multiplexer, RedisContext Redis)> ConnectAsync()
    {
        var endpoint = TestRedis.Endpoint;
        var multiplexer = await ConnectionMultiplexer.ConnectAsync($"{endpoint},abortConnect=false");
        return (multiplexer, new RedisContext(multiplexer, new CoordinationOptions(), database: Db));
    }

    private static StringContent Body(string json) => new(json, Encoding.UTF8, "application/json");

    [Fact]
    public async Task Performance_RunbookJqFilter_SelectsExactlyTheSlowValidator()
    {
        var (multiplexer, redis) = await ConnectAsync();
        await using var _ = multiplexer;
        await using var __ = redis;
        var performance = new ValidatorPerformance(redis);
        await using var queue = new WorkQueue(redis);
        var slow = "validator-slow-" + Guid.NewGuid().ToString("N")[..8];
        var fast = "validator-fast-" + Guid.NewGuid().ToString("N")[..8];
        try
        {
            await performance.RecordAsync(slow, 400_000);
            await performance.RecordAsync(slow, 350_000, timedOut: true);
            await performance.RecordAsync(fast, 1_200);
            await using var web = await TestWebApp.StartAsync(app =>
            {
                app.MapValidatorApi(performance);
                app.MapWorkIntakeApi(queue, new AdminAccess(Token));
            });

            var response = await web.Loopback.GetAsync("/api/validators/performance");
            var json = await response.Content.ReadAsStringAsync();
            var selected = await TestWebApp.JqAsync(".validators[] | select(.avgDuration > 300000)", json);

            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var line = Assert.Single(selected.Split('\n', StringSplitOptions.RemoveEmptyEntries));
            using var picked = JsonDocument.Parse(line);
            Assert.Equal(slow, picked.RootElement.GetProperty("validatorId").GetString());
            Assert.Equal(375_000, picked.RootElement.GetProperty("avgDuration").GetInt64());
            Assert.Equal(400_000, picked.RootElement.GetProperty("p95Duration").GetInt64());
            Assert.Equal(2, picked.RootElement.GetProperty("count").GetInt32());
            Assert.Equal(1, picked.RootElement.GetProperty("timeouts").GetInt32());
            Assert.True(picked.RootElement.GetProperty("lastSeen").GetInt64() > 0);
            using var whole = JsonDocument.Parse(json);
            Assert.Equal(3_600_000, whole.RootElement.GetProperty("windowMs").GetInt64());
            Assert.Contains(whole.RootElement.GetProperty("validators").EnumerateArray(),
                v => v.GetProperty("validatorId").GetString() == fast && v.GetProperty("avgDuration").GetInt64() == 1_200);
        }
        finally
        {
            await redis.Database.SortedSetRemoveAsync(Keys.Validators, [slow, fast]);
            await redis.Database.KeyDeleteAsync([Keys.ValidatorDurations(slow), Keys.ValidatorDurations(fast)]);
        }
    }

    [Fact]
    public async Task Work_Enqueue_200WithIdsAnd400NamingTheFieldAnd413WhenOversized()
    {
        var (multiplexer, redis) = await ConnectAsync();
        await using var _ = multiplexer;
        await using var __ = redis;
        await using var queue = new WorkQueue(redis);
        var swarm = "swarm-api-" + Guid.NewGuid().ToString("N")[..8];
        try
        {
            await using var web = await TestWebApp.StartAsync(app =>
            {
                app.MapValidatorApi(new ValidatorPerformance(redis));
                app.MapWorkIntakeApi(queue, new AdminAccess(Token));
            });
            var http = web.Loopback;

            var ok = await http.PostAsync($"/api/swarms/{swarm}/work", Body("""{"workId":"w-1","input":{"a":1}}"""));
            using var okBody = JsonDocument.Parse(await ok.Content.ReadAsStringAsync());
            var generated = await http.PostAsync($"/api/swarms/{swarm}/work", Body("""{"input":[1,2,3]}"""));
            using var generatedBody = JsonDocument.Parse(await generated.Content.ReadAsStringAsync());

            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
            Assert.Equal("w-1", okBody.RootElement.GetProperty("workId").GetString());
            Assert.Equal(swarm, okBody.RootElement.GetProperty("swarmId").GetString());
            Assert.Equal(1, okBody.RootElement.GetProperty("queueLength").GetInt64());
            Assert.Equal(HttpStatusCode.OK, generated.StatusCode);
            Assert.StartsWith("work-", generatedBody.RootElement.GetProperty("workId").GetString(), StringComparison.Ordinal);
            var first = await queue.TryTakeAsync(swarm);
            Assert.Equal("w-1", first!.WorkId);
            Assert.Equal(1, first.Input.GetProperty("a").GetInt32());

            foreach (var (path, body, field) in new[]
            {
                ($"/api/swarms/{swarm}/work", """{"workId":"bad id","input":1}""", "workId"),
                ($"/api/swarms/{swarm}/work", """{"workId":"w-2"}""", "input"),
                ($"/api/swarms/{swarm}/work", """not json""", "JSON"),
                ($"/api/swarms/{swarm}/work", """[1]""", "JSON"),
                ("/api/swarms/bad*swarm/work", """{"input":1}""", "swarmId"),
            })
            {
                var bad = await http.PostAsync(path, Body(body));
                var text = await bad.Content.ReadAsStringAsync();
                Assert.True(bad.StatusCode == HttpStatusCode.BadRequest, $"{body}: {bad.StatusCode} {text}");
                Assert.Contains(field, text, StringComparison.Ordinal);
            }

            var huge = await http.PostAsync($"/api/swarms/{swarm}/work",
                Body($$"""{"input":"{{new string('x', queue.MaxInputBytes + 10)}}"}"""));
            Assert.Equal(HttpStatusCode.RequestEntityTooLarge, huge.StatusCode);
            Assert.Equal(1, await queue.LengthAsync(swarm));
        }
        finally
        {
            await redis.Database.KeyDeleteAsync(Keys.SwarmQueue(swarm));
        }
    }

    [Fact]
    public async Task Work_Enqueue_FromOutsideLoopbackWithoutToken_401AndWithToken_200()
    {
        var (multiplexer, redis) = await ConnectAsync();
        await using var _ = multiplexer;
        await using var __ = redis;
        await using var queue = new WorkQueue(redis);
        var swarm = "swarm-api-" + Guid.NewGuid().ToString("N")[..8];
        try
        {
            await using var web = await TestWebApp.StartAsync(
                app =>
                {
                    app.MapValidatorApi(new ValidatorPerformance(redis));
                    app.MapWorkIntakeApi(queue, new AdminAccess(Token));
                },
                listenExternally: true);
            var external = web.External!;

            var refused = await external.PostAsync($"/api/swarms/{swarm}/work", Body("""{"input":1}"""));
            var stats = await external.GetAsync("/api/validators/performance");
            using var request = new HttpRequestMessage(HttpMethod.Post, $"/api/swarms/{swarm}/work") { Content = Body("""{"input":1}""") };
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Token);
            var allowed = await external.SendAsync(request);

            Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
            Assert.Equal(HttpStatusCode.OK, stats.StatusCode); // read-only: open
            Assert.Equal(HttpStatusCode.OK, allowed.StatusCode);
            Assert.Equal(1, await queue.LengthAsync(swarm));
        }
        finally
        {
            await redis.Database.KeyDeleteAsync(Keys.SwarmQueue(swarm));
        }
    }
}
