using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Cfn.Tests.Infrastructure;
using StackExchange.Redis;

namespace Cfn.Tests.Agents;

/// <summary>
/// HTTP agent sessions (SPEC D21) through a real <c>cfn serve --role swarm-manager</c> (which hosts them), a real
/// <c>cfn serve --role timeout-handler</c> where recovery matters, real HTTP on loopback (and a non-loopback address for
/// the create rights) and the real redis-server, database 47.
/// </summary>
public sealed class AgentSessionApiTests : IAsyncLifetime
{
    private const int Db = 47;
    private const string Secret = "agent-session-secret-0123456789abcdef0123456789";
    private const string AgentToken = "agent-token-0123456789abcdef0123456789abcdef";
    private readonly List<CfnRun> _runs = [];
    private ConnectionMultiplexer _redis = null!;
    private IServer _server = null!;

    private IDatabase Database => _redis.GetDatabase(Db);

    public async Task InitializeAsync() => (_redis, _server, _) = await TestRedis.OpenEmptyAsync(Db);

    public async Task DisposeAsync()
    {
        foreach (var run in _runs)
        {
            await run.DisposeAsync();
        }

        await _server.FlushDatabaseAsync(Db);
        await _redis.DisposeAsync();
    }

    private async Task<(CfnRun Run, HttpClient Http, int Port)> ServeAsync(string role)
    {
        var port = CfnRun.FreePort();
        var run = CfnRun.Start(["serve", "--role", role], new Dictionary<string, string?>
        {
            ["REDIS_URL"] = $"redis://{TestRedis.Endpoint}/{Db}",
            ["HTTP_PORT"] = port.ToString(CultureInfo.InvariantCulture),
            ["BLOCKING_COORDINATION_SECRET"] = Secret,
            ["CFN_AGENT_TOKEN"] = AgentToken,
            ["HEARTBEAT_INTERVAL_MS"] = "300",
            ["HEARTBEAT_STALE_THRESHOLD_MS"] = "1500",
            ["HEARTBEAT_MONITOR_INTERVAL_MS"] = "300",
            ["HEARTBEAT_MAX_WARNINGS"] = "2",
        });
        _runs.Add(run);
        await run.WaitReadyAsync(port);
        return (run, new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(60) }, port);
    }

    private static Task<(HttpStatusCode Status, JsonElement Body)> CallAsync(HttpClient http, HttpMethod method, string path, string? json = null,
        string? token = null) => http.SendJsonAsync(method, path, json, token);

    private sealed record Session(string Id, string Token, string AgentId);

    private static async Task<Session> CreateAsync(HttpClient http, string agentId, string swarmId, int leaseMs = 30_000)
    {
        var (status, body) = await CallAsync(http, HttpMethod.Post, "/api/agents/sessions",
            $$"""{"agentId":"{{agentId}}","swarmId":"{{swarmId}}","leaseMs":{{leaseMs}}}""");
        Assert.True(status == HttpStatusCode.Created, $"{status}: {body}");
        Assert.Equal(agentId, body.GetProperty("agentId").GetString());
        return new Session(body.GetProperty("sessionId").GetString()!, body.GetProperty("token").GetString()!, agentId);
    }

    private static Task<(HttpStatusCode Status, JsonElement Body)> ActAsync(HttpClient http, Session session, string action, string json) =>
        CallAsync(http, HttpMethod.Post, $"/api/agents/sessions/{session.Id}/{action}", json, session.Token);

    [Fact]
    public async Task Sessions_CoordinatorAndValidator_SendWaitReceiveReply_ThenClose()
    {
        var (_, http, _) = await ServeAsync("swarm-manager");
        using var client = http;
        var validator = await CreateAsync(http, "http-val", "validators");
        var coordinator = await CreateAsync(http, "http-coord", "swarm-h");
        Assert.Equal("http", (string?)await Database.HashGetAsync("coordinator:agents", "http-val"));
        Assert.NotNull(await Database.SortedSetScoreAsync("blocking:coordinators", "http-coord"));

        // The coordinator sends and waits (a long-poll) while the validator receives (another long-poll).
        var sending = ActAsync(http, coordinator, "send", """{"to":["http-val"],"type":"validation","payload":{"n":4},"wait":true,"timeoutMs":30000}""");
        var (receiveStatus, request) = await ActAsync(http, validator, "receive", """{"timeoutMs":30000}""");
        Assert.Equal(HttpStatusCode.OK, receiveStatus);
        Assert.Equal("http-coord", request.GetProperty("senderId").GetString());
        Assert.Equal(4, request.GetProperty("payload").GetProperty("n").GetInt32());
        var (sendStatus, sent) = await sending;
        Assert.Equal(HttpStatusCode.OK, sendStatus);
        Assert.Equal("completed", sent.GetProperty("status").GetString());
        Assert.Equal(["http-val"], sent.GetProperty("acked").EnumerateArray().Select(e => e.GetString()!).ToArray());

        var requestId = request.GetProperty("messageId").GetString()!;
        var (replyStatus, reply) = await ActAsync(http, validator, "reply",
            $$$"""{"to":"http-coord","inReplyTo":"{{{requestId}}}","payload":{"verdict":"pass","reason":"even"}}""");
        Assert.Equal(HttpStatusCode.OK, replyStatus);
        Assert.False(reply.GetProperty("duplicate").GetBoolean());
        var (_, verdict) = await ActAsync(http, coordinator, "receive", """{"timeoutMs":30000}""");
        Assert.Equal("pass", verdict.GetProperty("payload").GetProperty("verdict").GetString());
        Assert.Equal(requestId, verdict.GetProperty("payload").GetProperty("inReplyTo").GetString());

        // Nothing more: a receive times out with its status; a wait for an ACK nobody gives times out naming the peer.
        var (_, empty) = await ActAsync(http, validator, "receive", """{"timeoutMs":200}""");
        Assert.Equal("timeout", empty.GetProperty("status").GetString());
        var (_, waited) = await ActAsync(http, coordinator, "wait", """{"for":"http-val","messageId":"http-coord:http-val:validation:1:99","timeoutMs":300}""");
        Assert.Equal("timeout", waited.GetProperty("status").GetString());
        Assert.Equal(["http-val"], waited.GetProperty("missing").EnumerateArray().Select(e => e.GetString()!).ToArray());

        // Closing is a graceful stop: the agent's liveness goes, and the session is gone.
        Assert.Equal(HttpStatusCode.OK, (await CallAsync(http, HttpMethod.Delete, $"/api/agents/sessions/{validator.Id}", token: validator.Token)).Status);
        Assert.Null(await Database.SortedSetScoreAsync("blocking:coordinators", "http-val"));
        Assert.False(await Database.HashExistsAsync("coordinator:agents", "http-val"));
        var (gone, goneBody) = await CallAsync(http, HttpMethod.Get, $"/api/agents/sessions/{validator.Id}", token: validator.Token);
        Assert.Equal(HttpStatusCode.NotFound, gone);
        Assert.Equal("SESSION_NOT_FOUND", goneBody.GetProperty("code").GetString());
    }

    [Fact]
    public async Task Sessions_LapsedLease_AgentDeclaredDeadAndWaiterGetsPeerDead()
    {
        var (sessions, http, _) = await ServeAsync("swarm-manager");
        using var client = http;
        var (handler, _, _) = await ServeAsync("timeout-handler");
        var silent = await CreateAsync(http, "http-silent", "validators", leaseMs: 1000);
        var waiter = await CreateAsync(http, "http-waiter", "swarm-h");

        // The waiter's send-and-wait is in flight (which keeps its own session alive); the silent agent never calls again.
        var (status, result) = await ActAsync(http, waiter, "send", """{"to":"http-silent","type":"validation","wait":true,"timeoutMs":60000}""");

        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("peer_dead", result.GetProperty("status").GetString());
        Assert.Equal(["http-silent"], result.GetProperty("missing").EnumerateArray().Select(e => e.GetString()!).ToArray());
        Assert.Contains(sessions.Lines, l => l.Contains($"Agent session lapsed sessionId={silent.Id} agent=http-silent", StringComparison.Ordinal));
        Assert.Contains(handler.Lines, l => l.Contains("Dead agent is not replaced agent=http-silent kind=http", StringComparison.Ordinal));
        Assert.Null(await Database.SortedSetScoreAsync("blocking:coordinators", "http-silent"));
        Assert.Equal(0, await Database.SortedSetLengthAsync("coordinator:spawns"));
        // The lapsed session is gone; the waiter's, kept alive by its long-poll, still answers.
        Assert.Equal(HttpStatusCode.NotFound, (await CallAsync(http, HttpMethod.Get, $"/api/agents/sessions/{silent.Id}", token: silent.Token)).Status);
        Assert.Equal(HttpStatusCode.OK, (await CallAsync(http, HttpMethod.Get, $"/api/agents/sessions/{waiter.Id}", token: waiter.Token)).Status);
    }

    [Theory]
    [InlineData("""{"agentId":"bad id!","swarmId":"s"}""", "agentId", "INVALID_ID")]
    [InlineData("""{"swarmId":"s"}""", "agentId", "VALIDATION_ERROR")]
    [InlineData("""{"agentId":"a-1","swarmId":"s","leaseMs":5}""", "leaseMs", "VALIDATION_ERROR")]
    [InlineData("""{"agentId":"a-1","swarmId":7}""", "swarmId", "VALIDATION_ERROR")]
    [InlineData("""[1,2]""", "body", "VALIDATION_ERROR")]
    public async Task Create_BadInput_400NamingTheFieldAndNothingWritten(string json, string field, string code)
    {
        var (_, http, _) = await ServeAsync("swarm-manager");
        using var client = http;
        var before = await _server.DatabaseSizeAsync(Db);

        var (status, body) = await CallAsync(http, HttpMethod.Post, "/api/agents/sessions", json);

        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal(field, body.GetProperty("field").GetString());
        Assert.Equal(code, body.GetProperty("code").GetString());
        Assert.StartsWith(field, body.GetProperty("error").GetString(), StringComparison.Ordinal);
        Assert.Equal(before, await _server.DatabaseSizeAsync(Db));
    }

    [Fact]
    public async Task SessionRequests_BadInputWrongTokenOversizedAndNotJson_RefusedAndNothingWritten()
    {
        var (_, http, _) = await ServeAsync("swarm-manager");
        using var client = http;
        var session = await CreateAsync(http, "http-strict", "swarm-h");
        var before = await _server.DatabaseSizeAsync(Db);

        var (s1, b1) = await ActAsync(http, session, "send", """{"to":"peer-1","type":"gossip"}""");
        Assert.Equal((HttpStatusCode.BadRequest, "type"), (s1, b1.GetProperty("field").GetString()));
        var (s2, b2) = await ActAsync(http, session, "send", """{"to":["peer-1","no good"],"type":"validation"}""");
        Assert.Equal((HttpStatusCode.BadRequest, "to", "INVALID_ID"), (s2, b2.GetProperty("field").GetString(), b2.GetProperty("code").GetString()));
        var (s3, b3) = await ActAsync(http, session, "reply", """{"to":"peer-1","inReplyTo":"not valid!","payload":{}}""");
        Assert.Equal((HttpStatusCode.BadRequest, "inReplyTo"), (s3, b3.GetProperty("field").GetString()));
        var (s4, b4) = await ActAsync(http, session, "reply", """{"to":"peer-1","inReplyTo":"http-strict:peer-1:validation:1:5","payload":[1]}""");
        Assert.Equal((HttpStatusCode.BadRequest, "payload"), (s4, b4.GetProperty("field").GetString()));
        var (s5, b5) = await ActAsync(http, session, "receive", """{"timeoutMs":900000}""");
        Assert.Equal((HttpStatusCode.BadRequest, "timeoutMs"), (s5, b5.GetProperty("field").GetString()));
        var big = new string('x', 70 * 1024);
        var (s6, _) = await ActAsync(http, session, "send", $$"""{"to":"peer-1","type":"validation","payload":"{{big}}"}""");
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, s6);
        using (var form = new HttpRequestMessage(HttpMethod.Post, $"/api/agents/sessions/{session.Id}/send"))
        {
            form.Content = new StringContent("to=peer-1", Encoding.UTF8, "application/x-www-form-urlencoded");
            form.Headers.Authorization = new AuthenticationHeaderValue("Bearer", session.Token);
            Assert.Equal(HttpStatusCode.UnsupportedMediaType, (await http.SendAsync(form)).StatusCode);
        }

        var (s7, b7) = await ActAsync(http, session with { Token = "0123456789abcdef" }, "send", """{"to":"peer-1","type":"validation"}""");
        Assert.Equal((HttpStatusCode.Unauthorized, "Authorization"), (s7, b7.GetProperty("field").GetString()));
        var (s8, _) = await CallAsync(http, HttpMethod.Post, $"/api/agents/sessions/{session.Id}/send", """{"to":"peer-1","type":"validation"}""");
        Assert.Equal(HttpStatusCode.Unauthorized, s8);
        var (s9, b9) = await ActAsync(http, session with { Id = "s-000000000000000000000000" }, "send", """{"to":"peer-1","type":"validation"}""");
        Assert.Equal((HttpStatusCode.NotFound, "SESSION_NOT_FOUND"), (s9, b9.GetProperty("code").GetString()));

        Assert.Equal(before, await _server.DatabaseSizeAsync(Db));
        Assert.False(await Database.KeyExistsAsync("blocking:inbox:peer-1"));
    }

    [Fact]
    public async Task Create_FromOutsideLoopback_NeedsTheAgentToken()
    {
        var (_, local, port) = await ServeAsync("swarm-manager");
        local.Dispose();
        using var remote = new HttpClient { BaseAddress = new Uri($"http://{TestWebApp.NonLoopbackAddress()}:{port}"), Timeout = TimeSpan.FromSeconds(10) };
        const string Body = """{"agentId":"http-remote","swarmId":"swarm-h"}""";

        Assert.Equal(HttpStatusCode.Unauthorized, (await CallAsync(remote, HttpMethod.Post, "/api/agents/sessions", Body)).Status);
        Assert.Equal(HttpStatusCode.Unauthorized, (await CallAsync(remote, HttpMethod.Post, "/api/agents/sessions", Body, token: "not-the-agent-token")).Status);
        var (status, created) = await CallAsync(remote, HttpMethod.Post, "/api/agents/sessions", Body, token: AgentToken);

        Assert.Equal(HttpStatusCode.Created, status);
        // The session's own token, not the agent token, opens the session.
        var session = new Session(created.GetProperty("sessionId").GetString()!, created.GetProperty("token").GetString()!, "http-remote");
        Assert.Equal(HttpStatusCode.Unauthorized, (await CallAsync(remote, HttpMethod.Get, $"/api/agents/sessions/{session.Id}", token: AgentToken)).Status);
        Assert.Equal(HttpStatusCode.OK, (await CallAsync(remote, HttpMethod.Get, $"/api/agents/sessions/{session.Id}", token: session.Token)).Status);
    }

    [Fact]
    public async Task Create_CrossSiteOrNonJson_RefusedFromLoopbackAndWithTheAgentToken()
    {
        var (_, loopback, port) = await ServeAsync("swarm-manager");
        using var local = loopback;
        using var remote = new HttpClient { BaseAddress = new Uri($"http://{TestWebApp.NonLoopbackAddress()}:{port}"), Timeout = TimeSpan.FromSeconds(10) };
        const string Body = """{"agentId":"http-browser","swarmId":"swarm-h"}""";

        async Task<(HttpStatusCode Status, string? Code, string? Field)> CreateAsync(HttpClient http, string mediaType, string? token,
            params (string Name, string Value)[] headers)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/api/agents/sessions") { Content = new StringContent(Body, Encoding.UTF8, mediaType) };
            if (token is not null)
            {
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
            }

            foreach (var (name, value) in headers)
            {
                request.Headers.TryAddWithoutValidation(name, value);
            }

            using var response = await http.SendAsync(request);
            using var doc = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
            return response.StatusCode == HttpStatusCode.Created
                ? (response.StatusCode, null, null)
                : (response.StatusCode, doc.RootElement.GetProperty("code").GetString(), doc.RootElement.GetProperty("field").GetString());
        }

        // The agent token opens session creation, but not to a page of another site or a form.
        Assert.Equal((HttpStatusCode.Forbidden, "CROSS_SITE", "Origin"), await CreateAsync(remote, "application/json", AgentToken, ("Origin", "http://evil.example")));
        Assert.Equal((HttpStatusCode.UnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE", "Content-Type"), await CreateAsync(remote, "text/plain", AgentToken));
        // Loopback goes through the admin check, which refuses the same.
        Assert.Equal((HttpStatusCode.Forbidden, "CROSS_SITE", "Sec-Fetch-Site"),
            await CreateAsync(local, "application/json", null, ("Sec-Fetch-Site", "cross-site")));
        Assert.Equal(HttpStatusCode.Created, (await CreateAsync(local, "application/json", null)).Status);
    }
}
