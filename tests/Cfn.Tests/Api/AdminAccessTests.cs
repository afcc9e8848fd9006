using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
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
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using StackExchange.Redis;

namespace Cfn.Tests.Api;

/// <summary>
/// Admin trust from the socket (SPEC D12, D20) over real HTTP: the swarm manager's and the timeout handler's admin
/// endpoints on an app listening on 127.0.0.1 and on a non-loopback address of this machine, against the test Redis
/// (database 53, flushed by each test). A sidecar's forwarded request is made for real: a client socket bound to
/// 127.0.0.6 connects to the non-loopback address, as Envoy does to the pod IP. The process-level rules
/// (<c>CFN_ADMIN_LOOPBACK</c>, the token's length) run a real <c>cfn serve</c> on database 54.
/// </summary>
public sealed class AdminAccessTests
{
    private const int Db = 53;
    private const int ProcessDb = 54;
    private const string Secret = "admin-access-secret-0123456789abcdef0123456789";
    private const string Token = "admin-access-token-0123456789abcdef0123";

    /// <summary>Where Istio's sidecar forwards inbound traffic from.</summary>
    private static readonly IPAddress SidecarSource = IPAddress.Parse("127.0.0.6");

    private sealed class World : IAsyncDisposable
    {
        private readonly List<IAsyncDisposable> _owned = [];

        public required TestWebApp Web { get; init; }

        public required IDatabase Database { get; init; }

        /// <summary>The non-loopback address and port the app listens on (the pod IP).</summary>
        public required Uri PodAddress { get; init; }

        public static async Task<World> StartAsync(AdminAccess access)
        {
            var endpoint = TestRedis.Endpoint;
            await using (var admin = await ConnectionMultiplexer.ConnectAsync($"{endpoint},allowAdmin=true"))
            {
                await admin.GetServer(admin.GetEndPoints()[0]).FlushDatabaseAsync(Db);
            }

            var redis = await RedisContext.ConnectAsync($"{endpoint},defaultDatabase={Db}", new CoordinationOptions());
            var keys = new SigningKeys(Secret);
            var handler = new TimeoutHandler(redis, keys, new RecoveryOptions(), new CoordinationMetrics(Prometheus.Metrics.NewCustomRegistry()),
                new RecoveryMetrics(Prometheus.Metrics.NewCustomRegistry()), "timeout-handler-admin");
            var manager = new SwarmManager(redis, new SwarmManagerOptions(), new RecoveryOptions(),
                new SwarmMetrics(Prometheus.Metrics.NewCustomRegistry()), "manager-admin", expectedCoordinators: 1);
            var web = await TestWebApp.StartAsync(app =>
            {
                app.MapTimeoutHandlerApi(handler, access);
                app.MapSwarmManagerApi(manager, access);
                // What the server saw of the connection: shows the forwarded request really came from 127.0.0.6.
                app.MapGet("/test/connection", (HttpContext http) => $"{http.Connection.RemoteIpAddress} {http.Connection.LocalIpAddress}");
            }, listenExternally: true);
            var world = new World { Web = web, Database = redis.Database, PodAddress = web.External!.BaseAddress! };
            world._owned.AddRange([web, manager, handler, redis]);
            return world;
        }

        /// <summary>Whether spawning is paused, as <c>GET /api/swarms/status</c> (open) says.</summary>
        public async Task<bool> PausedAsync()
        {
            using var status = JsonDocument.Parse(await Web.Loopback.GetStringAsync("/api/swarms/status"));
            return status.RootElement.GetProperty("spawningPaused").GetBoolean();
        }

        public async ValueTask DisposeAsync()
        {
            foreach (var owned in _owned)
            {
                await owned.DisposeAsync();
            }
        }
    }

    /// <summary>A client whose connections leave from <paramref name="source"/> (the socket is bound before it connects).</summary>
    private static HttpClient From(IPAddress source, Uri baseAddress) => new(new SocketsHttpHandler
    {
        ConnectCallback = async (context, cancellationToken) =>
        {
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                socket.Bind(new IPEndPoint(source, 0));
                await socket.ConnectAsync(IPAddress.Parse(context.DnsEndPoint.Host), context.DnsEndPoint.Port, cancellationToken);
                return new NetworkStream(socket, ownsSocket: true);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        },
    })
    {
        BaseAddress = baseAddress,
        Timeout = TimeSpan.FromSeconds(15),
    };

    private static async Task<(HttpStatusCode Status, JsonElement Json)> PostAsync(HttpClient client, string path, HttpContent? content = null,
        params (string Name, string Value)[] headers)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = content };
        foreach (var (name, value) in headers)
        {
            request.Headers.TryAddWithoutValidation(name, value);
        }

        using var response = await client.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone());
    }

    /// <summary>The shared error shape <c>{error, code, field}</c>, with this code and field.</summary>
    private static void AssertError(JsonElement body, string code, string? field)
    {
        Assert.Equal(["error", "code", "field"], body.EnumerateObject().Take(3).Select(p => p.Name));
        Assert.Equal(code, body.GetProperty("code").GetString());
        Assert.Equal(field, body.GetProperty("field").GetString());
    }

    [Fact]
    public async Task Admin_ForwardedFrom127006ToThePodAddress_401_TheSameToLoopbackAccepted()
    {
        await using var world = await World.StartAsync(new AdminAccess(Token));
        using var sidecar = From(SidecarSource, world.PodAddress);

        // The server sees a loopback peer (what trusting the peer would have let in) on a non-loopback local address.
        var seen = (await sidecar.GetStringAsync("/test/connection")).Split(' ');
        Assert.Equal("127.0.0.6", seen[0]);
        Assert.False(IPAddress.IsLoopback(IPAddress.Parse(seen[1])), seen[1]);

        foreach (var path in new[] { "/api/timeouts/force-unblock-all", "/api/spawning/pause", "/api/coordinators/coordinator-x/cleanup" })
        {
            var (status, body) = await PostAsync(sidecar, path);
            Assert.Equal(HttpStatusCode.Unauthorized, status);
            AssertError(body, "UNAUTHORIZED", null);
        }

        Assert.False(await world.PausedAsync());

        // The token is still the way in from outside, sidecar or not.
        using (var withToken = From(SidecarSource, world.PodAddress))
        {
            withToken.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Token);
            Assert.Equal(HttpStatusCode.OK, (await PostAsync(withToken, "/api/spawning/pause")).Status);
            Assert.True(await world.PausedAsync());
            Assert.Equal(HttpStatusCode.OK, (await PostAsync(withToken, "/api/spawning/resume")).Status);
        }

        // The same request from the same source to 127.0.0.1: a loopback local address, as `kubectl exec … curl localhost` makes.
        using var local = From(SidecarSource, world.Web.Loopback.BaseAddress!);
        Assert.Equal("127.0.0.1", (await local.GetStringAsync("/test/connection")).Split(' ')[1]);
        var (accepted, unblocked) = await PostAsync(local, "/api/timeouts/force-unblock-all");
        Assert.Equal(HttpStatusCode.OK, accepted);
        Assert.Equal(0, unblocked.GetProperty("unblocked").GetInt32());
        Assert.Equal(HttpStatusCode.OK, (await PostAsync(local, "/api/spawning/pause")).Status);
        Assert.True(await world.PausedAsync());
    }

    [Fact]
    public async Task Admin_CrossSiteBrowserRequestFromLoopback_403NamingTheHeader_NothingDone()
    {
        await using var world = await World.StartAsync(new AdminAccess(Token));
        var loopback = world.Web.Loopback;
        var own = $"http://{loopback.BaseAddress!.Authority}";

        var (status, body) = await PostAsync(loopback, "/api/spawning/pause", null, ("Sec-Fetch-Site", "cross-site"));
        Assert.Equal(HttpStatusCode.Forbidden, status);
        AssertError(body, "CROSS_SITE", "Sec-Fetch-Site");

        foreach (var origin in new[] { "http://evil.example", "http://127.0.0.1:1", "null", $"https://{loopback.BaseAddress!.Host}" })
        {
            (status, body) = await PostAsync(loopback, "/api/spawning/pause", null, ("Origin", origin));
            Assert.True(status == HttpStatusCode.Forbidden, $"Origin {origin}: {status}");
            AssertError(body, "CROSS_SITE", "Origin");
        }

        // A token does not make a cross-site browser request acceptable either.
        (status, body) = await PostAsync(loopback, "/api/spawning/pause", null, ("Origin", "http://evil.example"), ("Authorization", $"Bearer {Token}"));
        Assert.Equal(HttpStatusCode.Forbidden, status);
        Assert.False(await world.PausedAsync());
        Assert.False(await world.Database.KeyExistsAsync(Keys.SpawningPaused));

        // A page of cfn's own origin, and a browser's same-origin fetch, are fine.
        Assert.Equal(HttpStatusCode.OK, (await PostAsync(loopback, "/api/spawning/pause", null, ("Origin", own), ("Sec-Fetch-Site", "same-origin"))).Status);
        Assert.True(await world.PausedAsync());
    }

    [Fact]
    public async Task Admin_DnsRebindingPageOnLoopback_401_LoopbackNamesAndTheTokenAccepted()
    {
        await using var world = await World.StartAsync(new AdminAccess(Token));
        var loopback = world.Web.Loopback;
        var port = loopback.BaseAddress!.Port;

        // A page of rebound.example whose name now resolves to 127.0.0.1: to the browser its fetch is same-origin, JSON
        // and all, and it reaches the loopback socket. Only its Host tells it from an operator's curl.
        var rebound = $"rebound.example:{port}";
        using (var json = new StringContent("{}", Encoding.UTF8, "application/json"))
        {
            var (status, body) = await PostAsync(loopback, "/api/timeouts/force-unblock-all", json,
                ("Host", rebound), ("Origin", $"http://{rebound}"), ("Sec-Fetch-Site", "same-origin"));
            Assert.Equal(HttpStatusCode.Unauthorized, status);
            AssertError(body, "UNAUTHORIZED", null);
        }

        Assert.Equal("401", await CfnRun.ShellAsync($"curl -s -o /dev/null -w '%{{http_code}}' -X POST -H 'Host: {rebound}' http://127.0.0.1:{port}/api/spawning/pause"));
        Assert.False(await world.PausedAsync());

        // The names an operator uses on the pod are trusted; the token works whatever the Host.
        foreach (var host in new[] { $"localhost:{port}", $"127.0.0.1:{port}", $"[::1]:{port}", $"LOCALHOST:{port}" })
        {
            Assert.Equal(HttpStatusCode.OK, (await PostAsync(loopback, "/api/spawning/pause", null, ("Host", host))).Status);
            Assert.Equal(HttpStatusCode.OK, (await PostAsync(loopback, "/api/spawning/resume", null, ("Host", host))).Status);
        }

        Assert.Equal(HttpStatusCode.OK, (await PostAsync(loopback, "/api/spawning/pause", null, ("Host", rebound), ("Authorization", $"Bearer {Token}"))).Status);
        Assert.True(await world.PausedAsync());
    }

    [Fact]
    public async Task Admin_NonJsonBody_415NamingContentType_EmptyBodyAndJsonFine_RunbookCurlCommandsWork()
    {
        await using var world = await World.StartAsync(new AdminAccess(Token));
        var loopback = world.Web.Loopback;

        var bodies = new HttpContent[]
        {
            new StringContent("pause please", Encoding.UTF8, "text/plain"),
            new StringContent("paused=true", Encoding.UTF8, "application/x-www-form-urlencoded"),
            new MultipartFormDataContent { { new StringContent("1"), "paused" } },
            new ByteArrayContent("{}"u8.ToArray()), // JSON text without a Content-Type
        };
        foreach (var content in bodies)
        {
            using (content)
            {
                var (status, body) = await PostAsync(loopback, "/api/spawning/pause", content);
                Assert.True(status == HttpStatusCode.UnsupportedMediaType, $"{content.Headers.ContentType}: {status}");
                AssertError(body, "UNSUPPORTED_MEDIA_TYPE", "Content-Type");
            }
        }

        Assert.False(await world.PausedAsync());

        // An empty body, whatever it claims to be, and a JSON body are accepted.
        using (var empty = new StringContent("", Encoding.UTF8, "text/plain"))
        {
            Assert.Equal(HttpStatusCode.OK, (await PostAsync(loopback, "/api/spawning/pause", empty)).Status);
        }

        using (var json = new StringContent("{}", Encoding.UTF8, "application/json"))
        {
            Assert.Equal(HttpStatusCode.OK, (await PostAsync(loopback, "/api/spawning/resume", json)).Status);
        }

        // The runbook's commands, as written (localhost, port of this app): bare POSTs and the scale with its JSON body.
        var h = $"http://localhost:{loopback.BaseAddress!.Port}";
        Assert.Contains("\"spawningPaused\":true", await CfnRun.ShellAsync($"curl -s -X POST {h}/api/spawning/pause"), StringComparison.Ordinal);
        Assert.Contains("\"spawningPaused\":false", await CfnRun.ShellAsync($"curl -s -X POST {h}/api/spawning/resume"), StringComparison.Ordinal);
        Assert.Contains("\"unblocked\":0", await CfnRun.ShellAsync($"curl -s -X POST {h}/api/timeouts/force-unblock-all"), StringComparison.Ordinal);
        Assert.Contains("\"keysDeleted\":0", await CfnRun.ShellAsync($"curl -s -X POST {h}/api/coordinators/coordinator-gone/cleanup"), StringComparison.Ordinal);
        var scale = await CfnRun.ShellAsync(
            $"curl -s -X POST {h}/api/swarms/swarm-none/scale \\\n  -H \"Content-Type: application/json\" \\\n  -d '{{\"targetSize\": 5}}'");
        Assert.Contains("\"code\":\"SWARM_NOT_FOUND\"", scale, StringComparison.Ordinal); // past the filter: the body was read
        // curl -d without a Content-Type sends a form: refused.
        Assert.Equal("415", await CfnRun.ShellAsync($"curl -s -o /dev/null -w '%{{http_code}}' -X POST {h}/api/swarms/swarm-none/scale -d '{{\"targetSize\": 5}}'"));
    }

    [Fact]
    public async Task Admin_LoopbackTrustOff_LoopbackNeedsTheToken()
    {
        await using var world = await World.StartAsync(new AdminAccess(Token, loopbackTrusted: false));
        var (status, body) = await PostAsync(world.Web.Loopback, "/api/spawning/pause");
        Assert.Equal(HttpStatusCode.Unauthorized, status);
        AssertError(body, "UNAUTHORIZED", null);
        Assert.Contains("CFN_ADMIN_LOOPBACK=false", body.GetProperty("error").GetString(), StringComparison.Ordinal);
        Assert.False(await world.PausedAsync());

        Assert.Equal(HttpStatusCode.OK, (await PostAsync(world.Web.Loopback, "/api/spawning/pause", null, ("Authorization", $"Bearer {Token}"))).Status);
        Assert.True(await world.PausedAsync());
    }

    [Fact]
    public async Task Serve_AdminLoopbackFalse_LoopbackCurlGets401_TheTokenIsAccepted()
    {
        await using (var admin = await ConnectionMultiplexer.ConnectAsync($"{TestRedis.Endpoint},allowAdmin=true"))
        {
            await admin.GetServer(admin.GetEndPoints()[0]).FlushDatabaseAsync(ProcessDb);
        }

        var port = CfnRun.FreePort();
        await using var run = CfnRun.Start(["serve", "--role", "swarm-manager"], Environment(port,
            ("REDIS_URL", $"redis://{TestRedis.Endpoint}/{ProcessDb}"), ("CFN_ADMIN_TOKEN", Token), ("CFN_ADMIN_LOOPBACK", "false")));
        var h = $"http://127.0.0.1:{port}";
        await EventuallyAsync(async () =>
        {
            Assert.False(run.HasExited, "cfn serve exited:\n" + run.Tail(30));
            return (await CfnRun.ShellAsync($"curl -s -o /dev/null -w '%{{http_code}}' {h}/health/ready", allowFailure: true)) == "200";
        }, "cfn serve never became ready", TimeSpan.FromSeconds(60), pollMs: 200);

        Assert.Contains(run.Lines, l => l.Contains("CFN_ADMIN_LOOPBACK=false", StringComparison.Ordinal) && l.Contains("CFN_ADMIN_TOKEN=<redacted>", StringComparison.Ordinal));
        Assert.DoesNotContain(Token, run.Output, StringComparison.Ordinal);
        Assert.Equal("401", await CfnRun.ShellAsync($"curl -s -o /dev/null -w '%{{http_code}}' -X POST {h}/api/spawning/pause"));
        Assert.Contains("\"spawningPaused\":true",
            await CfnRun.ShellAsync($"curl -s -X POST {h}/api/spawning/pause -H \"Authorization: Bearer {Token}\""), StringComparison.Ordinal);

        await run.SignalAsync("TERM");
        Assert.Equal(0, await run.WaitForExitAsync(TimeSpan.FromSeconds(20)));
    }

    [Fact]
    public async Task Serve_AdminTokenShorterThan32_ExitTwoWithOneLineNamingIt()
    {
        const string Short = "short-admin-token-0123456789abc"; // 31 characters
        await using var run = CfnRun.Start(["serve", "--role", "timeout-handler"], Environment(CfnRun.FreePort(),
            ("REDIS_URL", $"redis://{TestRedis.Endpoint}/{ProcessDb}"), ("CFN_ADMIN_TOKEN", Short)));

        Assert.Equal(2, await run.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        await EventuallyAsync(() => run.Lines.Any(l => l.Length > 0), "cfn exited without a line"); // the last line may trail the exit
        var line = Assert.Single(run.Lines, l => l.Length > 0);
        Assert.Equal("configuration error: CFN_ADMIN_TOKEN must be at least 32 characters (got 31)", line);
    }

    /// <summary>The environment of one process: HTTP_PORT, the secret, and nothing inherited that would change the test.</summary>
    private static Dictionary<string, string?> Environment(int httpPort, params (string Name, string? Value)[] variables)
    {
        var env = new Dictionary<string, string?>(StringComparer.Ordinal)
        {
            ["HTTP_PORT"] = httpPort.ToString(CultureInfo.InvariantCulture),
            ["BLOCKING_COORDINATION_SECRET"] = Secret,
            ["REDIS_HOST"] = null,
            ["REDIS_PORT"] = null,
            ["REDIS_PASSWORD"] = null,
            ["CFN_ADMIN_TOKEN"] = null,
            ["CFN_ADMIN_LOOPBACK"] = null,
        };
        foreach (var (name, value) in variables)
        {
            env[name] = value;
        }

        return env;
    }
}
