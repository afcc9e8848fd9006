using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Cfn.Api;
using Cfn.Coordination;
using Cfn.Coordination.Metrics;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Security;
using Cfn.Coordination.Swarms;
using Cfn.Tests.Infrastructure;
using StackExchange.Redis;

namespace Cfn.Tests.Api;

/// <summary>
/// The swarm manager's endpoints (SPEC §3.1 #1–#3, runbook #6, #7, #10, #12) over real HTTP, on Redis database 2
/// (only this class uses it; its tests run one at a time).
/// </summary>
public sealed class SwarmManagerApiTests
{
    private const int Db = 2;
    private const string Secret = "api-test-secret-0123456789abcdef0123456789abcdef";
    private const string AdminToken = "swarm-admin-token-0123456789";

    [Fact]
    public async Task Status_RunbookJqFilters_OnlyTheBigSwarmComesOut_OpenFromOutside()
    {
        await using var world = await World.CreateAsync();
        await world.StartCoordinatorsAsync("swarm-big", 6);
        await world.StartCoordinatorsAsync("swarm-small", 2);

        var response = await world.Web.Loopback.GetAsync("/api/swarms/status");
        var body = await response.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        Assert.NotEmpty(await TestWebApp.JqAsync(".", body));
        var selected = (await TestWebApp.JqAsync(".swarms[] | select(.coordinatorCount > 5)", body)).Trim().Split('\n');
        var big = Assert.Single(selected);
        using var swarm = JsonDocument.Parse(big);
        Assert.Equal("swarm-big", swarm.RootElement.GetProperty("swarmId").GetString());
        Assert.Equal(6, swarm.RootElement.GetProperty("coordinatorCount").GetInt32());
        Assert.Equal(6, swarm.RootElement.GetProperty("coordinators").GetArrayLength());
        Assert.Equal(JsonValueKind.Null, swarm.RootElement.GetProperty("targetSize").ValueKind);
        Assert.Equal(0, swarm.RootElement.GetProperty("activeBlockingCoordinators").GetInt32());
        Assert.Equal(0, swarm.RootElement.GetProperty("pendingSpawns").GetInt32());
        Assert.Equal("running", swarm.RootElement.GetProperty("status").GetString());

        using var all = JsonDocument.Parse(body);
        Assert.Equal(2, all.RootElement.GetProperty("swarms").GetArrayLength());
        Assert.False(all.RootElement.GetProperty("spawningPaused").GetBoolean());
        Assert.Equal(JsonValueKind.Null, all.RootElement.GetProperty("pausedAt").ValueKind);
        Assert.Equal(10, all.RootElement.GetProperty("expectedCoordinators").GetInt32());
        Assert.True(all.RootElement.GetProperty("timestamp").GetInt64() > 1_700_000_000_000);

        var outside = await world.Web.External!.GetAsync("/api/swarms/status");
        Assert.Equal(HttpStatusCode.OK, outside.StatusCode);
    }

    [Fact]
    public async Task PauseResume_KeptInRedis_SecondPauseKeepsFirstTime()
    {
        await using var world = await World.CreateAsync();

        var paused = await PostJsonAsync(world.Web.Loopback, "/api/spawning/pause", null);
        var again = await PostJsonAsync(world.Web.Loopback, "/api/spawning/pause", null);

        Assert.Equal(HttpStatusCode.OK, paused.Status);
        Assert.True(paused.Body.GetProperty("spawningPaused").GetBoolean());
        var pausedAt = paused.Body.GetProperty("pausedAt").GetInt64();
        Assert.Equal(pausedAt, again.Body.GetProperty("pausedAt").GetInt64());
        Assert.Equal(pausedAt, (long)await world.Database.StringGetAsync(Keys.SpawningPaused));
        // A restarted swarm manager is still paused.
        await using (var restarted = world.NewManager())
        {
            Assert.Equal(pausedAt, await restarted.Spawning.GetPausedAtAsync());
        }

        using (var status = JsonDocument.Parse(await world.Web.Loopback.GetStringAsync("/api/swarms/status")))
        {
            Assert.True(status.RootElement.GetProperty("spawningPaused").GetBoolean());
            Assert.Equal(pausedAt, status.RootElement.GetProperty("pausedAt").GetInt64());
        }

        var resumed = await PostJsonAsync(world.Web.Loopback, "/api/spawning/resume", null);

        Assert.Equal(HttpStatusCode.OK, resumed.Status);
        Assert.False(resumed.Body.GetProperty("spawningPaused").GetBoolean());
        Assert.False(await world.Database.KeyExistsAsync(Keys.SpawningPaused));
    }

    [Fact]
    public async Task Scale_SuccessValidationNotFoundBadIdAndPaused()
    {
        await using var world = await World.CreateAsync();
        await world.StartCoordinatorsAsync("swarm-small", 2);

        var ok = await PostJsonAsync(world.Web.Loopback, "/api/swarms/swarm-small/scale", "{\"targetSize\": 5}");
        Assert.Equal(HttpStatusCode.OK, ok.Status);
        Assert.Equal("Swarm scaled successfully", ok.Body.GetProperty("message").GetString());
        Assert.Equal("swarm-small", ok.Body.GetProperty("swarmId").GetString());
        Assert.Equal(5, ok.Body.GetProperty("newSize").GetInt32());
        Assert.Equal(5, (int)await world.Database.HashGetAsync(Keys.SwarmTargets, "swarm-small"));

        foreach (var bad in new[] { "{}", "{\"targetSize\": 0}", "{\"targetSize\": -3}", "{\"targetSize\": \"5\"}", "{\"targetSize\": 2.5}", "{oops", "", "[5]" })
        {
            var refused = await PostJsonAsync(world.Web.Loopback, "/api/swarms/swarm-small/scale", bad);
            Assert.True(refused.Status == HttpStatusCode.BadRequest, $"body '{bad}' gave {refused.Status}");
            Assert.Equal("Valid targetSize is required", refused.Body.GetProperty("error").GetString());
            Assert.Equal("VALIDATION_ERROR", refused.Body.GetProperty("code").GetString());
        }

        var missing = await PostJsonAsync(world.Web.Loopback, "/api/swarms/swarm-nope/scale", "{\"targetSize\": 5}");
        Assert.Equal(HttpStatusCode.NotFound, missing.Status);
        Assert.Equal("Swarm not found", missing.Body.GetProperty("error").GetString());
        Assert.Equal("SWARM_NOT_FOUND", missing.Body.GetProperty("code").GetString());

        var badId = await PostJsonAsync(world.Web.Loopback, "/api/swarms/bad*swarm/scale", "{\"targetSize\": 5}");
        Assert.Equal(HttpStatusCode.BadRequest, badId.Status);
        Assert.Equal("INVALID_ID", badId.Body.GetProperty("code").GetString());

        await PostJsonAsync(world.Web.Loopback, "/api/spawning/pause", null);
        var up = await PostJsonAsync(world.Web.Loopback, "/api/swarms/swarm-small/scale", "{\"targetSize\": 9}");
        Assert.Equal(HttpStatusCode.Conflict, up.Status);
        Assert.Equal("SPAWNING_PAUSED", up.Body.GetProperty("code").GetString());
        Assert.Equal(5, (int)await world.Database.HashGetAsync(Keys.SwarmTargets, "swarm-small"));
        var down = await PostJsonAsync(world.Web.Loopback, "/api/swarms/swarm-small/scale", "{\"targetSize\": 1}");
        Assert.Equal(HttpStatusCode.OK, down.Status);
        Assert.Equal(1, (int)await world.Database.HashGetAsync(Keys.SwarmTargets, "swarm-small"));
    }

    [Fact]
    public async Task MutatingEndpoints_FromOutside_NeedTheBearerToken()
    {
        await using var world = await World.CreateAsync();
        await world.StartCoordinatorsAsync("swarm-small", 1);
        var external = world.Web.External!;

        var anonymous = await PostJsonAsync(external, "/api/spawning/pause", null);
        var wrong = await PostJsonAsync(external, "/api/spawning/pause", null, "not-the-token");
        var scale = await PostJsonAsync(external, "/api/swarms/swarm-small/scale", "{\"targetSize\": 3}");

        Assert.Equal(HttpStatusCode.Unauthorized, anonymous.Status);
        Assert.Equal(HttpStatusCode.Unauthorized, wrong.Status);
        Assert.Equal(HttpStatusCode.Unauthorized, scale.Status);
        Assert.False(await world.Database.KeyExistsAsync(Keys.SpawningPaused));
        Assert.False(await world.Database.KeyExistsAsync(Keys.SwarmTargets));

        var paused = await PostJsonAsync(external, "/api/spawning/pause", null, AdminToken);
        var resumed = await PostJsonAsync(external, "/api/spawning/resume", null, AdminToken);
        var scaled = await PostJsonAsync(external, "/api/swarms/swarm-small/scale", "{\"targetSize\": 3}", AdminToken);

        Assert.Equal(HttpStatusCode.OK, paused.Status);
        Assert.Equal(HttpStatusCode.OK, resumed.Status);
        Assert.Equal(HttpStatusCode.OK, scaled.Status);
        Assert.Equal(3, (int)await world.Database.HashGetAsync(Keys.SwarmTargets, "swarm-small"));
    }

    private static async Task<(HttpStatusCode Status, JsonElement Body)> PostJsonAsync(HttpClient client, string path, string? json, string? token = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path);
        if (json is not null)
        {
            request.Content = new StringContent(json, Encoding.UTF8, "application/json");
        }

        if (token is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        }

        using var response = await client.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        using var document = JsonDocument.Parse(text.Length == 0 ? "null" : text);
        return (response.StatusCode, document.RootElement.Clone());
    }

    /// <summary>Redis database 2 (flushed), a swarm manager (no loop: the API alone is under test) and its endpoints on Kestrel.</summary>
    private sealed class World : IAsyncDisposable
    {
        private readonly ConnectionMultiplexer _multiplexer;
        private readonly List<Coordinator> _coordinators = [];
        private readonly List<SwarmManager> _managers = [];

        private World(ConnectionMultiplexer multiplexer, RedisContext redis)
        {
            _multiplexer = multiplexer;
            Redis = redis;
        }

        public RedisContext Redis { get; }

        public IDatabase Database => Redis.Database;

        public TestWebApp Web { get; private set; } = null!;

        public static async Task<World> CreateAsync()
        {
            var endpoint = TestRedis.Endpoint;
            var multiplexer = await ConnectionMultiplexer.ConnectAsync($"{endpoint},allowAdmin=true");
            await multiplexer.GetDatabase(Db).ExecuteAsync("FLUSHDB");
            var world = new World(multiplexer, new RedisContext(multiplexer, new CoordinationOptions(), database: Db));
            var manager = world.NewManager();
            world.Web = await TestWebApp.StartAsync(app => app.MapSwarmManagerApi(manager, new AdminAccess(AdminToken)), listenExternally: true);
            return world;
        }

        public SwarmManager NewManager()
        {
            var manager = new SwarmManager(Redis, new SwarmManagerOptions(), new RecoveryOptions(),
                new SwarmMetrics(Prometheus.Metrics.NewCustomRegistry()), $"manager-{_managers.Count}", expectedCoordinators: 10);
            _managers.Add(manager);
            return manager;
        }

        public async Task StartCoordinatorsAsync(string swarmId, int count)
        {
            var keys = new SigningKeys(Secret);
            var metrics = new CoordinationMetrics(Prometheus.Metrics.NewCustomRegistry());
            for (var i = 0; i < count; i++)
            {
                _coordinators.Add(await Coordinator.StartAsync(Redis, keys, $"{swarmId}-coordinator-{i}", swarmId, metrics, runHeartbeatLoop: false));
            }
        }

        public async ValueTask DisposeAsync()
        {
            await Web.DisposeAsync();
            foreach (var manager in _managers)
            {
                await manager.DisposeAsync();
            }

            foreach (var coordinator in _coordinators)
            {
                await coordinator.DisposeAsync();
            }

            await Redis.DisposeAsync();
            await _multiplexer.GetDatabase(Db).ExecuteAsync("FLUSHDB");
            await _multiplexer.DisposeAsync();
        }
    }
}
