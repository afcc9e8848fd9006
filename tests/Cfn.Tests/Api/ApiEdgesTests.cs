using System.Net;
using System.Text;
using System.Text.Json;
using Cfn.Api;
using Cfn.Coordination;
using Cfn.Coordination.Loop;
using Cfn.Coordination.Metrics;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Security;
using Cfn.Coordination.Swarms;
using Cfn.Coordination.Validation;
using Cfn.Hosting;
using Cfn.Tests.Infrastructure;
using StackExchange.Redis;

namespace Cfn.Tests.Api;

/// <summary>
/// What every API route group shares, over real HTTP on loopback (and a non-loopback address for the admin check): one
/// error shape <c>{error, code, field}</c>, the coordinator filter, and the bounded body reader. Every role's endpoints
/// are mapped on one app, against the test Redis (database 32, flushed at the start of each test).
/// </summary>
public sealed class ApiEdgesTests
{
    private const int Db = 32;
    private const string AdminToken = "admin-token-for-edge-tests";
    private const int MaxPayloadBytes = 1024;

    private sealed class World : IAsyncDisposable
    {
        private readonly List<IAsyncDisposable> _owned = [];

        public required TestWebApp Web { get; init; }

        public required Coordinator Primary { get; init; }

        public required Coordinator Peer { get; init; }

        public required WorkQueue Queue { get; init; }

        public required IDatabase Database { get; init; }

        public static async Task<World> StartAsync(bool hostsCoordinators = true)
        {
            var endpoint = TestRedis.Endpoint;
            await using (var admin = await ConnectionMultiplexer.ConnectAsync($"{endpoint},allowAdmin=true"))
            {
                await admin.GetServer(admin.GetEndPoints()[0]).FlushDatabaseAsync(Db);
            }

            var options = new CoordinationOptions { MaxPayloadBytes = MaxPayloadBytes };
            var pool = await RedisPool.ConnectAsync($"{endpoint},defaultDatabase={Db}", 1, options);
            var keys = new SigningKeys("edge-tests-secret-0123456789abcdef0123456789");
            var metrics = new CoordinationMetrics(Prometheus.Metrics.NewCustomRegistry());
            var redis = pool.Primary;
            var primary = await Coordinator.StartAsync(redis, keys, Id("primary"), "swarm-edge", metrics, runHeartbeatLoop: false);
            var peer = await Coordinator.StartAsync(redis, keys, Id("peer"), "swarm-edge", metrics, runHeartbeatLoop: false);
            var handler = new TimeoutHandler(redis, keys, new RecoveryOptions(), metrics,
                new RecoveryMetrics(Prometheus.Metrics.NewCustomRegistry()), "timeout-handler-edges");
            var manager = new SwarmManager(redis, new SwarmManagerOptions(), new RecoveryOptions(),
                new SwarmMetrics(Prometheus.Metrics.NewCustomRegistry()), "manager-edges", expectedCoordinators: 2);
            var queue = new WorkQueue(redis);
            var hosted = new Dictionary<string, Coordinator>(StringComparer.Ordinal) { [primary.Id] = primary, [peer.Id] = peer };
            var access = new AdminAccess(AdminToken);
            var web = await TestWebApp.StartAsync(app =>
            {
                app.MapCoordinatorApi(id => !hostsCoordinators ? null : id is null ? primary : hosted.GetValueOrDefault(id),
                    pool, new RecentEvents(), new CoordinatorApiOptions(), access);
                app.MapTimeoutHandlerApi(handler, access);
                app.MapSwarmManagerApi(manager, access);
                app.MapWorkIntakeApi(queue, access);
                app.MapValidatorApi(new ValidatorPerformance(redis));
            }, listenExternally: true);
            var world = new World { Web = web, Primary = primary, Peer = peer, Queue = queue, Database = redis.Database };
            world._owned.AddRange([web, manager, handler, peer, primary, pool]);
            return world;
        }

        public async ValueTask DisposeAsync()
        {
            foreach (var owned in _owned)
            {
                await owned.DisposeAsync();
            }
        }
    }

    private static string Id(string prefix) => $"{prefix}-{Guid.NewGuid().ToString("N")[..8]}";

    private static async Task<(HttpStatusCode Status, JsonElement Json)> SendAsync(HttpClient client, HttpMethod method, string path,
        HttpContent? content = null)
    {
        using var request = new HttpRequestMessage(method, path) { Content = content };
        using var response = await client.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone());
    }

    private static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");

    /// <summary>The body starts with <c>error</c>, <c>code</c> and <c>field</c>, in that order, with the given code and field.</summary>
    private static void AssertShape(JsonElement body, string code, string? field)
    {
        Assert.Equal(JsonValueKind.Object, body.ValueKind);
        Assert.Equal(["error", "code", "field"], body.EnumerateObject().Take(3).Select(p => p.Name));
        Assert.False(string.IsNullOrEmpty(body.GetProperty("error").GetString()));
        Assert.Equal(code, body.GetProperty("code").GetString());
        if (field is null)
        {
            Assert.Equal(JsonValueKind.Null, body.GetProperty("field").ValueKind);
        }
        else
        {
            Assert.Equal(field, body.GetProperty("field").GetString());
        }
    }

    [Fact]
    public async Task EveryGroup_A4xx_HasTheSharedErrorShape()
    {
        await using var world = await World.StartAsync();
        var loopback = world.Web.Loopback;
        var cases = new (HttpClient Client, HttpMethod Method, string Path, string? Body, HttpStatusCode Status, string Code, string? Field)[]
        {
            (loopback, HttpMethod.Get, "/api/coordinator/state?coordinatorId=bad.id", null, HttpStatusCode.BadRequest, "INVALID_ID", "coordinatorId"),
            (loopback, HttpMethod.Get, "/api/locks/status?coordinatorId=unknown-1", null, HttpStatusCode.NotFound, "COORDINATOR_NOT_FOUND", null),
            (loopback, HttpMethod.Post, "/api/signals/send", """{"receiverId":"peer-1","signalType":"nope"}""", HttpStatusCode.BadRequest,
                "VALIDATION_ERROR", "signalType"),
            (loopback, HttpMethod.Post, "/api/signals/receive", "{}", HttpStatusCode.Unauthorized, "UNAUTHORIZED", "X-CFN-Timestamp"),
            (loopback, HttpMethod.Post, "/api/swarms/bad.id/scale", """{"targetSize":2}""", HttpStatusCode.BadRequest, "INVALID_ID", "swarmId"),
            (loopback, HttpMethod.Post, "/api/swarms/no-such-swarm/scale", """{"targetSize":2}""", HttpStatusCode.NotFound, "SWARM_NOT_FOUND", null),
            (loopback, HttpMethod.Post, "/api/swarms/swarm-edge/work", """{"workId":"bad.id","input":1}""", HttpStatusCode.BadRequest,
                "INVALID_ID", "workId"),
            (world.Web.External!, HttpMethod.Post, "/api/spawning/pause", null, HttpStatusCode.Unauthorized, "UNAUTHORIZED", null),
            (loopback, HttpMethod.Post, "/api/coordinators/bad.id/unblock", null, HttpStatusCode.BadRequest, "INVALID_ID", "coordinatorId"),
            (loopback, HttpMethod.Post, "/api/timeouts/force-check", """{"coordinatorId":"nobody-1"}""", HttpStatusCode.NotFound,
                "COORDINATOR_NOT_FOUND", null),
        };

        foreach (var (client, method, path, body, status, code, field) in cases)
        {
            var (actual, json) = await SendAsync(client, method, path, body is null ? null : Json(body));
            Assert.True(status == actual, $"{method} {path}: expected {status}, got {actual}");
            AssertShape(json, code, field);
        }

        // The groups without a 4xx of their own still answer on their prefix.
        foreach (var path in new[] { "/api/redis/pool-stats", "/api/validators/performance", "/api/deadlocks", "/api/swarms/status" })
        {
            Assert.Equal(HttpStatusCode.OK, (await SendAsync(loopback, HttpMethod.Get, path)).Status);
        }
    }

    [Fact]
    public async Task CoordinatorFilter_BadIdUnknownIdOrNone_400Or404_OtherwiseTheNamedOrPrimaryCoordinator_AdminCheckedFirst()
    {
        await using var world = await World.StartAsync();
        var loopback = world.Web.Loopback;
        var endpoints = new (HttpMethod Method, string Path)[]
        {
            (HttpMethod.Get, "/api/coordinator/state"), (HttpMethod.Get, "/api/locks/status"), (HttpMethod.Post, "/api/signals/send"),
            (HttpMethod.Post, "/api/signals/retry"), (HttpMethod.Post, "/api/signals/retry-failed"), (HttpMethod.Post, "/api/signals/receive"),
        };
        foreach (var (method, path) in endpoints)
        {
            var (badStatus, bad) = await SendAsync(loopback, method, path + "?coordinatorId=bad.id", Json("{}"));
            Assert.True(badStatus == HttpStatusCode.BadRequest, $"{path}: {badStatus}");
            AssertShape(bad, "INVALID_ID", "coordinatorId");
            Assert.Contains("must match", bad.GetProperty("error").GetString(), StringComparison.Ordinal);

            var (unknownStatus, unknown) = await SendAsync(loopback, method, path + "?coordinatorId=unknown-1", Json("{}"));
            Assert.True(unknownStatus == HttpStatusCode.NotFound, $"{path}: {unknownStatus}");
            AssertShape(unknown, "COORDINATOR_NOT_FOUND", null);
            Assert.Equal("Coordinator unknown-1 is not hosted by this process", unknown.GetProperty("error").GetString());
        }

        Assert.Equal(world.Primary.Id, (await SendAsync(loopback, HttpMethod.Get, "/api/coordinator/state")).Json.GetProperty("coordinatorId").GetString());
        Assert.Equal(world.Peer.Id,
            (await SendAsync(loopback, HttpMethod.Get, $"/api/locks/status?coordinatorId={world.Peer.Id}")).Json.GetProperty("coordinatorId").GetString());

        // An unauthorized caller is refused before the lookup, so it learns nothing about which IDs are hosted.
        var (refused, body) = await SendAsync(world.Web.External!, HttpMethod.Post, "/api/signals/send?coordinatorId=unknown-1", Json("{}"));
        Assert.Equal(HttpStatusCode.Unauthorized, refused);
        AssertShape(body, "UNAUTHORIZED", null);

        await using var empty = await World.StartAsync(hostsCoordinators: false);
        var (none, noneBody) = await SendAsync(empty.Web.Loopback, HttpMethod.Get, "/api/coordinator/state");
        Assert.Equal(HttpStatusCode.NotFound, none);
        AssertShape(noneBody, "COORDINATOR_NOT_FOUND", null);
        Assert.Equal("This process hosts no coordinator", noneBody.GetProperty("error").GetString());
    }

    [Fact]
    public async Task Bodies_OverTheirBound_RefusedWithEachEndpointsErrorAndNothingWritten()
    {
        await using var world = await World.StartAsync();
        var loopback = world.Web.Loopback;
        var receiver = world.Peer.Id;
        var padding = new string('x', MaxPayloadBytes + 4096);

        // Declared length over the bound, and a chunked body with no declared length that runs over it while read.
        foreach (var chunked in new[] { false, true })
        {
            var content = Json($$"""{"receiverId":"{{receiver}}","signalType":"validation","payload":"{{padding}}"}""");
            if (chunked)
            {
                content.Headers.ContentLength = null;
            }

            using var request = new HttpRequestMessage(HttpMethod.Post, "/api/signals/send") { Content = content };
            request.Headers.TransferEncodingChunked = chunked;
            using var response = await loopback.SendAsync(request);
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
            AssertShape(json, "VALIDATION_ERROR", "payload");
            Assert.Equal($"payload exceeds maximum size of {MaxPayloadBytes} bytes", json.GetProperty("error").GetString());
        }

        Assert.Equal(0, await world.Database.ListLengthAsync(Keys.Inbox(receiver)));

        var input = new string('y', world.Queue.MaxInputBytes + 2048);
        var (workStatus, work) = await SendAsync(loopback, HttpMethod.Post, "/api/swarms/swarm-edge/work", Json($$"""{"input":"{{input}}"}"""));
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, workStatus);
        AssertShape(work, "PAYLOAD_TOO_LARGE", "input");
        Assert.Equal($"input exceeds maximum size of {world.Queue.MaxInputBytes} bytes", work.GetProperty("error").GetString());

        var (checkStatus, check) = await SendAsync(loopback, HttpMethod.Post, "/api/timeouts/force-check",
            Json($$"""{"coordinatorId":"{{world.Primary.Id}}","pad":"{{new string('z', 5000)}}"}"""));
        Assert.Equal(HttpStatusCode.BadRequest, checkStatus);
        AssertShape(check, "VALIDATION_ERROR", "body");

        // The scale body is one number: a body over its bound is read no further and has no valid target size.
        var (scaleStatus, scale) = await SendAsync(loopback, HttpMethod.Post, "/api/swarms/swarm-edge/scale",
            Json($$"""{"targetSize":2,"pad":"{{new string('z', 5000)}}"}"""));
        Assert.Equal(HttpStatusCode.BadRequest, scaleStatus);
        AssertShape(scale, "VALIDATION_ERROR", "targetSize");
        Assert.Equal("Valid targetSize is required", scale.GetProperty("error").GetString());
    }
}
