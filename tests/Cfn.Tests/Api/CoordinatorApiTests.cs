using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Cfn.Api;
using Cfn.Coordination;
using Cfn.Coordination.Acks;
using Cfn.Coordination.Metrics;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Security;
using Cfn.Coordination.Signals;
using Cfn.Hosting;
using Cfn.Tests.Infrastructure;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Cfn.Tests.Api;

/// <summary>
/// The coordinator's endpoints (SPEC §3.1 #5, #7, #10–#15) and force-check (#14) over real HTTP, on loopback and on a
/// non-loopback address (D12), against the test Redis (database 14, flushed at the start of each test).
/// </summary>
public sealed class CoordinatorApiTests
{
    private const int Db = 14;
    private const string Secret = "coordinator-api-secret-0123456789abcdef0123456789";
    private const string AdminToken = "admin-token-for-api-tests";
    private const int InboxCap = 20;
    private static readonly JsonSerializerOptions WebJson = new(JsonSerializerDefaults.Web);

    /// <summary>One test's world: a Redis pool, two coordinators (primary and peer), a timeout handler and the web app.</summary>
    private sealed class World : IAsyncDisposable
    {
        public required RedisPool Pool { get; init; }
        public required Coordinator Primary { get; init; }
        public required Coordinator Peer { get; init; }
        public required TestWebApp Web { get; init; }
        public required RecentEvents Events { get; init; }
        public required ILoggerFactory Loggers { get; init; }
        public required SigningKeys Keys { get; init; }
        public required TimeoutHandler Handler { get; init; }

        public IDatabase Db => Pool.Primary.Database;

        private const int DbIndex = CoordinatorApiTests.Db;

        public HttpClient Loopback => Web.Loopback;

        public HttpClient External => Web.External!;

        public static async Task<World> StartAsync()
        {
            var endpoint = TestRedis.Endpoint;
            await using (var admin = await ConnectionMultiplexer.ConnectAsync($"{endpoint},allowAdmin=true"))
            {
                await admin.GetServer(admin.GetEndPoints()[0]).FlushDatabaseAsync(DbIndex);
            }

            var events = new RecentEvents();
            var loggers = LoggerFactory.Create(b => b.SetMinimumLevel(LogLevel.Debug).AddProvider(events));
            var options = new CoordinationOptions { MaxPayloadBytes = 1024, SignalInboxMaxLength = InboxCap };
            var pool = await RedisPool.ConnectAsync($"{endpoint},defaultDatabase={DbIndex}", 2, options, loggerFactory: loggers);
            var keys = new SigningKeys(Secret);
            var metrics = new CoordinationMetrics(Prometheus.Metrics.NewCustomRegistry());
            var primary = await Coordinator.StartAsync(pool.Rent(), keys, Id("primary"), "swarm-api", metrics, runHeartbeatLoop: false);
            var peer = await Coordinator.StartAsync(pool.Rent(), keys, Id("peer"), "swarm-api", metrics, runHeartbeatLoop: false);
            var handler = new TimeoutHandler(pool.Primary, keys, new RecoveryOptions(), metrics,
                new RecoveryMetrics(Prometheus.Metrics.NewCustomRegistry()), "timeout-handler-test");
            var hosted = new Dictionary<string, Coordinator>(StringComparer.Ordinal) { [primary.Id] = primary, [peer.Id] = peer };
            var api = new CoordinatorApiOptions
            {
                Config = new Dictionary<string, string?>
                {
                    ["REDIS_POOL_SIZE"] = "2",
                    ["BLOCKING_COORDINATION_SECRET"] = "<redacted>",
                    ["CFN_ADMIN_TOKEN"] = AdminToken, // forgotten by the caller: redacted by the endpoint
                },
                Extra = c => new { loop = "running", coordinator = c.Id },
                Retry = new SignalRetryOptions { AckTimeout = TimeSpan.FromMilliseconds(150), Backoff = [TimeSpan.FromMilliseconds(10)] },
            };
            var access = new AdminAccess(AdminToken);
            var web = await TestWebApp.StartAsync(app =>
            {
                app.MapCoordinatorApi(id => id is null ? primary : hosted.GetValueOrDefault(id), pool, events, api, access);
                app.MapTimeoutHandlerApi(handler, access);
            }, listenExternally: true);
            var world = new World
            {
                Pool = pool, Primary = primary, Peer = peer, Web = web, Events = events, Loggers = loggers, Keys = keys, Handler = handler,
            };
            return world;
        }

        public async ValueTask DisposeAsync()
        {
            await Web.DisposeAsync();
            await Handler.DisposeAsync();
            await Primary.DisposeAsync();
            await Peer.DisposeAsync();
            await Pool.DisposeAsync();
            Loggers.Dispose();
        }
    }

    private static string Id(string prefix) => $"{prefix}-{Guid.NewGuid().ToString("N")[..8]}";

    private static StringContent Body(string json) => new(json, Encoding.UTF8, "application/json");

    private static async Task<(HttpStatusCode Status, JsonElement Json)> SendAsync(HttpClient client, HttpMethod method, string path,
        string? json = null, string? bearer = null, params (string Name, string Value)[] headers)
    {
        using var request = new HttpRequestMessage(method, path);
        if (json is not null)
        {
            request.Content = Body(json);
        }

        if (bearer is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", bearer);
        }

        foreach (var (name, value) in headers)
        {
            request.Headers.TryAddWithoutValidation(name, value);
        }

        using var response = await client.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        using var document = JsonDocument.Parse(text.Length == 0 ? "null" : text);
        return (response.StatusCode, document.RootElement.Clone());
    }

    [Fact]
    public async Task PoolStats_Open_ValidJsonWithEveryField()
    {
        await using var world = await World.StartAsync();

        var text = await world.External.GetStringAsync("/api/redis/pool-stats");

        Assert.NotEmpty(await TestWebApp.JqAsync(".", text)); // the runbook's `| jq .`
        Assert.Equal("2", (await TestWebApp.JqAsync(".poolSize", text)).Trim());
        Assert.Equal("true", (await TestWebApp.JqAsync(".connected", text)).Trim());
        Assert.Equal("\"closed\"", (await TestWebApp.JqAsync(".circuitBreaker", text)).Trim());
        using var json = JsonDocument.Parse(text);
        foreach (var field in new[] { "poolSize", "connections", "connected", "busy", "idle", "pendingCommands", "totalCommands",
                     "failedCommands", "timeouts", "reconnects", "endpoint", "circuitBreaker" })
        {
            Assert.True(json.RootElement.TryGetProperty(field, out _), field);
        }

        Assert.Equal(2, json.RootElement.GetProperty("connections").GetInt32());
    }

    [Fact]
    public async Task State_AfterForgedAckAndTimeout_ShowsThemAndRunbookGrepMatches()
    {
        await using var world = await World.StartAsync();
        var signalId = $"{world.Primary.Id}:{world.Peer.Id}:completion:1:42";
        await world.Db.StringSetAsync(Keys.Ack(world.Peer.Id, signalId), "{\"forged\":true}");

        // While a wait runs, the state shows it.
        using var cancel = new CancellationTokenSource();
        var running = world.Primary.Waiter.WaitForAcksAsync([world.Peer.Id], $"{world.Primary.Id}:{world.Peer.Id}:completion:1:43",
            TimeSpan.FromSeconds(30), cancel.Token);
        var (status, during) = await SendAsync(world.Loopback, HttpMethod.Get, "/api/coordinator/state");
        Assert.Equal(HttpStatusCode.OK, status);
        var blocking = during.GetProperty("blocking");
        Assert.Equal(JsonValueKind.Object, blocking.ValueKind);
        Assert.Equal(world.Peer.Id, blocking.GetProperty("waitingFor")[0].GetString());
        Assert.Equal(world.Peer.Id, blocking.GetProperty("missing")[0].GetString());
        Assert.Equal(0, blocking.GetProperty("received").GetArrayLength());
        Assert.Equal(30000, blocking.GetProperty("timeoutMs").GetInt64());
        Assert.Equal("blocking", during.GetProperty("status").GetString());
        await cancel.CancelAsync();
        await running;

        // A forged ACK (ERROR) and a wait that times out (WARN "ACK wait timeout").
        var timedOut = await world.Primary.Waiter.WaitForAcksAsync([world.Peer.Id], signalId, TimeSpan.FromMilliseconds(200));
        Assert.Equal(AckWaitStatus.Timeout, timedOut.Status);

        using var response = await world.External.GetAsync($"/api/coordinator/state?coordinatorId={world.Primary.Id}");
        var text = await response.Content.ReadAsStringAsync();
        using var state = JsonDocument.Parse(text);
        var root = state.RootElement;
        Assert.Equal(world.Primary.Id, root.GetProperty("coordinatorId").GetString());
        Assert.Equal("swarm-api", root.GetProperty("swarmId").GetString());
        Assert.Equal(world.Primary.InstanceId, root.GetProperty("instanceId").GetString());
        Assert.Equal(world.Primary.Epoch, root.GetProperty("epoch").GetInt64());
        Assert.Equal(JsonValueKind.Null, root.GetProperty("blocking").ValueKind);
        Assert.Equal(30000, root.GetProperty("heartbeat").GetProperty("intervalMs").GetInt64());
        Assert.True(root.GetProperty("heartbeat").GetProperty("sequence").GetInt64() >= 1);
        Assert.Equal("closed", root.GetProperty("circuitBreakers").GetProperty("redis").GetString());
        Assert.Equal("<redacted>", root.GetProperty("config").GetProperty("CFN_ADMIN_TOKEN").GetString());
        Assert.Equal("2", root.GetProperty("config").GetProperty("REDIS_POOL_SIZE").GetString());
        Assert.Equal("running", root.GetProperty("work").GetProperty("loop").GetString());
        Assert.DoesNotContain(AdminToken, text, StringComparison.Ordinal);
        var errors = root.GetProperty("recentErrors").EnumerateArray().ToList();
        Assert.Contains(errors, e => e.GetProperty("level").GetString() == "ERROR" &&
                                     e.GetProperty("message").GetString()!.Contains("ACK signature verification failed", StringComparison.Ordinal));
        var timeouts = root.GetProperty("recentTimeouts").EnumerateArray().ToList();
        Assert.Contains(timeouts, e => e.GetProperty("message").GetString()!.Contains("ACK wait timeout", StringComparison.Ordinal));

        // The runbook: curl …/api/coordinator/state > coordinator-state.json; grep -i "error\|exception\|timeout" coordinator-state.json
        Assert.Matches(new Regex("error|exception|timeout", RegexOptions.IgnoreCase), text);
        var file = Path.Combine(Path.GetTempPath(), $"coordinator-state-{Guid.NewGuid():N}.json");
        await File.WriteAllTextAsync(file, text);
        try
        {
            var grep = new ProcessStartInfo("grep", ["-i", "error\\|exception\\|timeout", file]) { RedirectStandardOutput = true };
            using var process = Process.Start(grep)!;
            var output = await process.StandardOutput.ReadToEndAsync();
            await process.WaitForExitAsync();
            Assert.Equal(0, process.ExitCode);
            Assert.Contains("ACK wait timeout", output, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public async Task State_RecentTimeouts_HoldOnlyRealTimeoutEventsNotLinesMentioningATimeoutSetting()
    {
        await using var world = await World.StartAsync();
        var log = world.Loggers.CreateLogger("Cfn.Hosting.CfnProcess");
        // The start-up line as `cfn serve` writes it, and an ordinary warning that merely mentions a timeout.
        log.LogInformation("config {Settings}", "BLOCKING_TIMEOUT_MS=20000 EXTERNAL_API_TIMEOUT_MS=5000 SIGNAL_ACK_TIMEOUT_MS=5000");
        log.LogWarning("Validator timeout not recorded validatorId={ValidatorId}: {Error}", "validator-1", "READONLY");

        // Normal waits: each logs "Waiting for ACKs … timeout=…" and "ACK wait complete … status=completed".
        for (var i = 0; i < 3; i++)
        {
            var sent = await world.Primary.Signals.SendAsync(world.Peer.Id, SignalTypes.Completion, i);
            await world.Peer.Acks.AcknowledgeAsync(sent.MessageId, world.Primary.Id, SignalTypes.Completion, null, sent.Timestamp);
            var done = await world.Primary.Waiter.WaitForAcksAsync([world.Peer.Id], sent.MessageId, TimeSpan.FromSeconds(20));
            Assert.Equal(AckWaitStatus.Completed, done.Status);
        }

        var (status, quiet) = await SendAsync(world.Loopback, HttpMethod.Get, "/api/coordinator/state");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Empty(quiet.GetProperty("recentTimeouts").EnumerateArray());
        Assert.Contains(quiet.GetProperty("recentErrors").EnumerateArray(),
            e => e.GetProperty("message").GetString()!.StartsWith("Validator timeout not recorded", StringComparison.Ordinal));

        // A real ACK wait timeout, and an INFO entry logged with a timeout exception, are events.
        var signalId = $"{world.Primary.Id}:{world.Peer.Id}:completion:9:77";
        var timedOut = await world.Primary.Waiter.WaitForAcksAsync([world.Peer.Id], signalId, TimeSpan.FromMilliseconds(200));
        Assert.Equal(AckWaitStatus.Timeout, timedOut.Status);
        // As HttpClient reports its own timeout: a cancellation whose inner exception is the TimeoutException.
        log.LogInformation(new TaskCanceledException("The request was canceled", new TimeoutException("HttpClient.Timeout of 5 seconds elapsed")),
            "Status probe gave up");

        var (_, after) = await SendAsync(world.Loopback, HttpMethod.Get, "/api/coordinator/state");
        var timeouts = after.GetProperty("recentTimeouts").EnumerateArray().ToList();
        Assert.Equal(2, timeouts.Count);
        Assert.StartsWith($"ACK wait timeout signalId={signalId}", timeouts[0].GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.Equal("WARN", timeouts[0].GetProperty("level").GetString());
        Assert.Equal("Status probe gave up", timeouts[1].GetProperty("message").GetString());
        Assert.Equal("INFO", timeouts[1].GetProperty("level").GetString());
        Assert.Contains("TimeoutException", timeouts[1].GetProperty("exception").GetString(), StringComparison.Ordinal);
        Assert.DoesNotContain(world.Events.Timeouts, e => e.Message.Contains("Waiting for ACKs", StringComparison.Ordinal) ||
                                                          e.Message.StartsWith("config ", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("ACK wait timeout signalId=a:b:completion:1:2 received=0 total=1 missing=b duration=200", true)]
    [InlineData("external API timeout timeoutMs=5000 elapsedMs=5003 method=GET url=http://api:8080/health", true)]
    [InlineData("Operation timed out name=redis timeoutMs=3000", true)]
    [InlineData("Coordinator timeout detected coordinator=c-1 signalId=s waitingFor=c-2 blockedForMs=301000 timeoutMs=300000", true)]
    [InlineData("Coordinator timeout event coordinator=c-1 reason=\"Coordinator blocking for 301s past its 300s timeout\"", true)]
    [InlineData("Signal retry exhausted all attempts signalId=s receiverId=r attempts=4 lastError=\"x\"", true)]
    [InlineData("Validation timeout workId=w coordinator=c missing=v noAck=v waitedMs=20015", true)]
    [InlineData("Heartbeat write failed (reason=timeout) coordinator=c seq=3: Timeout performing EVALSHA", true)]
    [InlineData("Waiting for ACKs signalId=s coordinators=c-2 timeout=20000", false)]
    [InlineData("ACK wait complete signalId=s received=0 total=1 duration=200 status=timeout", false)]
    [InlineData("config BLOCKING_TIMEOUT_MS=20000", false)]
    [InlineData("Heartbeat write failed (reason=connection) coordinator=c seq=3: Request rejected - circuit is OPEN", false)]
    [InlineData("Timeout handler started handler=h heartbeatMonitoring=True autoEscalation=True", false)]
    public void IsTimeoutEvent_ByTheLinesOpening(string message, bool expected) =>
        Assert.Equal(expected, RecentEvents.IsTimeoutEvent(message, null));

    [Fact]
    public void IsTimeoutEvent_TimeoutExceptionAnywhereInTheChain()
    {
        Assert.True(RecentEvents.IsTimeoutEvent("call failed", new TimeoutException("slow")));
        Assert.True(RecentEvents.IsTimeoutEvent("call failed", new TaskCanceledException("cancelled", new TimeoutException("slow"))));
        Assert.True(RecentEvents.IsTimeoutEvent("call failed", new AggregateException(new IOException("x"), new TimeoutException("slow"))));
        Assert.False(RecentEvents.IsTimeoutEvent("call failed", new IOException("the timeout setting is wrong")));
    }

    [Fact]
    public async Task Send_ValidAndInvalid_DeliversOrRefusesNamingFieldAndWritesNothing()
    {
        await using var world = await World.StartAsync();
        var inbox = Keys.Inbox(world.Peer.Id);

        var (status, sent) = await SendAsync(world.Loopback, HttpMethod.Post, "/api/signals/send",
            $"{{\"receiverId\":\"{world.Peer.Id}\",\"signalType\":\"completion\",\"iteration\":2,\"payload\":{{\"phase\":\"loop-2\"}}}}");

        Assert.Equal(HttpStatusCode.OK, status);
        Assert.True(sent.GetProperty("success").GetBoolean());
        Assert.False(sent.GetProperty("isDuplicate").GetBoolean());
        Assert.StartsWith($"{world.Primary.Id}:{world.Peer.Id}:completion:2:", sent.GetProperty("messageId").GetString(), StringComparison.Ordinal);
        Assert.Equal($"blocking:signal:{world.Peer.Id}", sent.GetProperty("key").GetString());
        Assert.Equal(1, await world.Db.StreamLengthAsync(inbox));
        using var view = JsonDocument.Parse((string)(await world.Db.StringGetAsync(Keys.Signal(world.Peer.Id)))!);
        Assert.Equal(sent.GetProperty("messageId").GetString(), view.RootElement.GetProperty("messageId").GetString());

        var keysBefore = (long)await world.Db.ExecuteAsync("DBSIZE");
        var cases = new (string Json, string Field, string Code)[]
        {
            ("{\"receiverId\":\"bad id\",\"signalType\":\"completion\",\"iteration\":1}", "receiverId", "INVALID_ID"),
            ("{\"signalType\":\"completion\",\"iteration\":1}", "receiverId", "INVALID_ID"),
            ($"{{\"receiverId\":\"{world.Peer.Id}\",\"signalType\":\"shout\",\"iteration\":1}}", "signalType", "VALIDATION_ERROR"),
            ($"{{\"receiverId\":\"{world.Peer.Id}\",\"signalType\":\"completion\",\"iteration\":-1}}", "iteration", "VALIDATION_ERROR"),
            ($"{{\"receiverId\":\"{world.Peer.Id}\",\"signalType\":\"completion\",\"iteration\":1,\"payload\":{{\"blob\":\"{new string('x', 2000)}\"}}}}",
                "payload", "VALIDATION_ERROR"),
            ("not json", "body", "VALIDATION_ERROR"),
        };
        foreach (var (json, field, code) in cases)
        {
            var (badStatus, error) = await SendAsync(world.Loopback, HttpMethod.Post, "/api/signals/send", json);
            Assert.Equal(HttpStatusCode.BadRequest, badStatus);
            Assert.Equal(field, error.GetProperty("field").GetString());
            Assert.Equal(code, error.GetProperty("code").GetString());
            Assert.Contains(field, error.GetProperty("error").GetString(), StringComparison.OrdinalIgnoreCase);
        }

        Assert.Equal(keysBefore, (long)await world.Db.ExecuteAsync("DBSIZE"));
        Assert.Equal(1, await world.Db.StreamLengthAsync(inbox));

        var (unknown, notFound) = await SendAsync(world.Loopback, HttpMethod.Get, "/api/coordinator/state?coordinatorId=nobody-here");
        Assert.Equal(HttpStatusCode.NotFound, unknown);
        Assert.Equal("COORDINATOR_NOT_FOUND", notFound.GetProperty("code").GetString());
        var (invalid, invalidId) = await SendAsync(world.Loopback, HttpMethod.Get, "/api/locks/status?coordinatorId=a*b");
        Assert.Equal(HttpStatusCode.BadRequest, invalid);
        Assert.Equal("INVALID_ID", invalidId.GetProperty("code").GetString());
        Assert.Equal("coordinatorId", invalidId.GetProperty("field").GetString());
    }

    [Fact]
    public async Task MutatingEndpoints_FromOutsideLoopback_NeedTheBearerToken()
    {
        await using var world = await World.StartAsync();
        var send = $"{{\"receiverId\":\"{world.Peer.Id}\",\"signalType\":\"status_update\",\"iteration\":1}}";

        foreach (var (path, json) in new[] { ("/api/signals/send", send), ("/api/signals/retry", send), ("/api/signals/retry-failed", "{}"),
                     ("/api/timeouts/force-check", $"{{\"coordinatorId\":\"{world.Primary.Id}\"}}") })
        {
            var (status, error) = await SendAsync(world.External, HttpMethod.Post, path, json);
            Assert.Equal(HttpStatusCode.Unauthorized, status);
            Assert.Equal("UNAUTHORIZED", error.GetProperty("code").GetString());
            var (wrong, _) = await SendAsync(world.External, HttpMethod.Post, path, json, bearer: "not-the-token");
            Assert.Equal(HttpStatusCode.Unauthorized, wrong);
        }

        Assert.False(await world.Db.KeyExistsAsync(Keys.Inbox(world.Peer.Id)));

        var (ok, sent) = await SendAsync(world.External, HttpMethod.Post, "/api/signals/send", send, bearer: AdminToken);
        Assert.Equal(HttpStatusCode.OK, ok);
        Assert.True(sent.GetProperty("success").GetBoolean());
        var (okRetryFailed, summary) = await SendAsync(world.External, HttpMethod.Post, "/api/signals/retry-failed", null, bearer: AdminToken);
        Assert.Equal(HttpStatusCode.OK, okRetryFailed);
        Assert.Equal(0, summary.GetProperty("retried").GetInt32());
    }

    [Fact]
    public async Task Retry_ThenRetryFailedOnceReceiverReads_ExhaustedThenSucceeded()
    {
        await using var world = await World.StartAsync();

        var (status, result) = await SendAsync(world.Loopback, HttpMethod.Post, "/api/signals/retry",
            $"{{\"receiverId\":\"{world.Peer.Id}\",\"signalType\":\"completion\",\"iteration\":5,\"maxRetries\":1}}");

        Assert.Equal(HttpStatusCode.OK, status);
        Assert.False(result.GetProperty("success").GetBoolean());
        Assert.Equal("exhausted", result.GetProperty("status").GetString());
        Assert.Equal(2, result.GetProperty("attempts").GetInt32());
        var signalId = result.GetProperty("signalId").GetString()!;
        Assert.True(await world.Db.KeyExistsAsync(Keys.RetryFailed(signalId)));
        Assert.Contains(world.Events.Errors, e => e.Message.Contains("Signal retry exhausted all attempts", StringComparison.Ordinal));
        Assert.Contains(world.Events.Errors, e => e.Message.Contains("Signal retry attempt failed", StringComparison.Ordinal));

        using var stop = new CancellationTokenSource();
        var reading = Task.Run(async () =>
        {
            try
            {
                await foreach (var _ in world.Peer.Inbox.ReadAllAsync(stop.Token))
                {
                }
            }
            catch (OperationCanceledException)
            {
                // stopped
            }
        });
        try
        {
            var (again, summary) = await SendAsync(world.Loopback, HttpMethod.Post, "/api/signals/retry-failed");
            Assert.Equal(HttpStatusCode.OK, again);
            Assert.Equal(1, summary.GetProperty("retried").GetInt32());
            Assert.Equal(1, summary.GetProperty("succeeded").GetInt32());
            Assert.Equal(0, summary.GetProperty("failed").GetInt32());
            Assert.False(await world.Db.KeyExistsAsync(Keys.RetryFailed(signalId)));
        }
        finally
        {
            await stop.CancelAsync();
            await reading;
        }
    }

    private static (string, string)[] ReceiveHeaders(SigningKeys keys, long timestamp, string receiverId, string body,
        string path = CoordinatorEndpoints.ReceivePath) =>
        [(CoordinatorEndpoints.TimestampHeader, timestamp.ToString(CultureInfo.InvariantCulture)),
            (CoordinatorEndpoints.SignatureHeader, CoordinatorEndpoints.SignReceive(keys, timestamp, receiverId, body, path))];

    private static async Task<List<Signal>> InboxAsync(World world, string id) =>
        [.. (await world.Db.StreamRangeAsync(Keys.Inbox(id))).Select(e => JsonSerializer.Deserialize<Signal>((string)e["signal"]!, WebJson)!)];

    [Fact]
    public async Task Receive_HmacSigned_AppendedToTheInboxAndAckedByItsReader_ReplayIsADuplicate_BadSignaturesRefused()
    {
        await using var world = await World.StartAsync();
        var sender = world.Peer.Id; // a live coordinator: the ACK of a gone sender is not stored
        var receiver = world.Primary.Id;
        var body = $"{{\"signalType\":\"completion\",\"senderId\":\"{sender}\",\"iteration\":3,\"payload\":{{\"phase\":\"loop-3\"}}}}";
        var timestamp = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var ts = timestamp.ToString(CultureInfo.InvariantCulture);
        var good = ReceiveHeaders(world.Keys, timestamp, receiver, body);
        var signature = good[1].Item2;
        var messageId = $"{sender}:{receiver}:completion:3:{ts}";
        var keysBefore = (long)await world.Db.ExecuteAsync("DBSIZE");

        // Refused: no signature, a bad one, another secret, no timestamp, an old one (properly signed), one signed for
        // another receiver, one signed for another path. Nothing is written.
        var refusals = new (string Header, (string, string)[] Headers)[]
        {
            (CoordinatorEndpoints.SignatureHeader, [(CoordinatorEndpoints.TimestampHeader, ts)]),
            (CoordinatorEndpoints.SignatureHeader, [(CoordinatorEndpoints.TimestampHeader, ts),
                (CoordinatorEndpoints.SignatureHeader, signature[..^1] + (signature[^1] == '0' ? '1' : '0'))]),
            (CoordinatorEndpoints.SignatureHeader, ReceiveHeaders(new SigningKeys(Secret + "-other"), timestamp, receiver, body)),
            (CoordinatorEndpoints.TimestampHeader, [(CoordinatorEndpoints.SignatureHeader, signature)]),
            (CoordinatorEndpoints.TimestampHeader, ReceiveHeaders(world.Keys, timestamp - 600_000, receiver, body)),
            (CoordinatorEndpoints.SignatureHeader, ReceiveHeaders(world.Keys, timestamp, world.Peer.Id, body)),
            (CoordinatorEndpoints.SignatureHeader, ReceiveHeaders(world.Keys, timestamp, receiver, body, "/api/signals/send")),
        };
        foreach (var (header, headers) in refusals)
        {
            var (status, error) = await SendAsync(world.External, HttpMethod.Post, "/api/signals/receive", body, null, headers);
            Assert.Equal(HttpStatusCode.Unauthorized, status);
            Assert.Equal(header, error.GetProperty("header").GetString());
            Assert.Contains(header, error.GetProperty("error").GetString(), StringComparison.Ordinal);
        }

        // A request captured on its way to the primary, replayed to the peer (same process, other coordinator).
        var (replayedStatus, _) = await SendAsync(world.External, HttpMethod.Post, $"/api/signals/receive?coordinatorId={world.Peer.Id}",
            body, null, good);
        Assert.Equal(HttpStatusCode.Unauthorized, replayedStatus);
        Assert.Equal(keysBefore, (long)await world.Db.ExecuteAsync("DBSIZE"));

        var (okStatus, accepted) = await SendAsync(world.External, HttpMethod.Post, "/api/signals/receive", body, null, good);

        Assert.Equal(HttpStatusCode.Accepted, okStatus);
        Assert.True(accepted.GetProperty("accepted").GetBoolean());
        Assert.False(accepted.GetProperty("duplicate").GetBoolean());
        Assert.Equal(messageId, accepted.GetProperty("messageId").GetString());
        Assert.Equal(receiver, accepted.GetProperty("receiverId").GetString());
        var stored = Assert.Single(await InboxAsync(world, receiver));
        Assert.Equal(messageId, stored.MessageId);
        Assert.Equal(sender, stored.SenderId);
        Assert.True(SignalSignatures.Verify(world.Keys, stored));
        Assert.True(await world.Db.KeyExistsAsync(Keys.Signal(receiver)));

        // The replay inside the skew window is a duplicate: nothing is written twice.
        var (replayStatus, replay) = await SendAsync(world.External, HttpMethod.Post, "/api/signals/receive", body, null, good);
        Assert.Equal(HttpStatusCode.Accepted, replayStatus);
        Assert.True(replay.GetProperty("duplicate").GetBoolean());
        Assert.Single(await InboxAsync(world, receiver));

        // The receiver's own inbox reader hands it out and ACKs it as usual.
        using var cancel = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        ReceivedSignal? received = null;
        await foreach (var r in world.Primary.Inbox.ReadAllAsync(cancel.Token))
        {
            received = r;
            await world.Primary.Inbox.CompleteAsync(r);
            break;
        }

        Assert.Equal(messageId, received!.Signal.MessageId);
        Assert.Equal("loop-3", received.Signal.Payload!.Value.GetProperty("phase").GetString());
        Assert.True(await world.Primary.Acks.IsAcknowledgedAsync(receiver, messageId, verify: true));
        Assert.Equal(0, await world.Db.StreamLengthAsync(Keys.Inbox(receiver)));
    }

    [Theory]
    [InlineData("""{"signalType":"completion","senderId":"bad sender","iteration":3}""", "senderId")]
    [InlineData("""{"signalType":"completion","iteration":3}""", "senderId")]
    [InlineData("""{"signalType":"shout","senderId":"s-1","iteration":3}""", "signalType")]
    [InlineData("""{"signalType":"completion","senderId":"s-1","iteration":-1}""", "iteration")]
    [InlineData("""{"signalType":"completion","senderId":"s-1","iteration":3,"messageId":"other:x:completion:3:1"}""", "messageId")]
    [InlineData("""not json""", "body")]
    public async Task Receive_BadField_400NamingTheFieldAndNothingWritten(string body, string field)
    {
        await using var world = await World.StartAsync();
        var keysBefore = (long)await world.Db.ExecuteAsync("DBSIZE");

        var (status, error) = await SendAsync(world.External, HttpMethod.Post, "/api/signals/receive", body, null,
            ReceiveHeaders(world.Keys, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), world.Primary.Id, body));

        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal(field, error.GetProperty("field").GetString());
        Assert.Contains(field, error.GetProperty("error").GetString(), StringComparison.OrdinalIgnoreCase);
        Assert.Equal(keysBefore, (long)await world.Db.ExecuteAsync("DBSIZE"));
    }

    [Fact]
    public async Task Receive_OversizedPayload_400NamingPayloadAndNothingWritten()
    {
        await using var world = await World.StartAsync();
        var keysBefore = (long)await world.Db.ExecuteAsync("DBSIZE");
        var body = $"{{\"signalType\":\"completion\",\"senderId\":\"s-1\",\"iteration\":1,\"payload\":{{\"blob\":\"{new string('x', 2000)}\"}}}}";

        var (status, error) = await SendAsync(world.External, HttpMethod.Post, "/api/signals/receive", body, null,
            ReceiveHeaders(world.Keys, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), world.Primary.Id, body));

        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("payload", error.GetProperty("field").GetString());
        Assert.Contains("maximum size", error.GetProperty("error").GetString(), StringComparison.Ordinal);
        Assert.Equal(keysBefore, (long)await world.Db.ExecuteAsync("DBSIZE"));
    }

    [Fact]
    public async Task Receive_InboxFull_429NamingReceiverAndRuleAndNothingWritten()
    {
        await using var world = await World.StartAsync();
        var receiver = world.Primary.Id;
        for (var i = 0; i < InboxCap; i++)
        {
            await world.Peer.Signals.SendAsync(receiver, SignalTypes.StatusUpdate, i);
        }

        var body = """{"signalType":"completion","senderId":"s-1","iteration":1}""";
        var timestamp = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();

        var (status, error) = await SendAsync(world.External, HttpMethod.Post, "/api/signals/receive", body, null,
            ReceiveHeaders(world.Keys, timestamp, receiver, body));

        Assert.Equal(HttpStatusCode.TooManyRequests, status);
        Assert.Equal("INBOX_FULL", error.GetProperty("code").GetString());
        Assert.Equal(receiver, error.GetProperty("receiverId").GetString());
        Assert.Equal("SIGNAL_INBOX_MAX_LENGTH", error.GetProperty("rule").GetString());
        Assert.Contains(receiver, error.GetProperty("error").GetString(), StringComparison.Ordinal);
        Assert.Equal(InboxCap, await world.Db.StreamLengthAsync(Keys.Inbox(receiver)));
        Assert.False(await world.Db.KeyExistsAsync(Keys.Idempotency($"s-1:{receiver}:completion:1:{timestamp}")));
    }

    [Fact]
    public async Task Send_ReceiverEscalated_RedirectedAndResponseNamesTheReplacement_EscalationFailed_410()
    {
        await using var world = await World.StartAsync();
        var dead = world.Peer.Id;
        var replacement = Id("replacement");
        var fence = await world.Db.StringIncrementAsync(Keys.Epoch(dead));
        await world.Db.StringSetAsync(Keys.Escalation(dead),
            $"{{\"deadCoordinatorId\":\"{dead}\",\"swarmId\":\"swarm-api\",\"timestamp\":1,\"status\":\"replacement_requested\",\"newCoordinatorId\":\"{replacement}\",\"fencingToken\":{fence}}}",
            TimeSpan.FromHours(1));
        var body = $"{{\"receiverId\":\"{dead}\",\"signalType\":\"completion\",\"iteration\":1}}";

        var (status, sent) = await SendAsync(world.Loopback, HttpMethod.Post, "/api/signals/send", body);

        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(replacement, sent.GetProperty("receiverId").GetString());
        Assert.True(sent.GetProperty("redirected").GetBoolean());
        Assert.StartsWith($"{world.Primary.Id}:{replacement}:", sent.GetProperty("messageId").GetString(), StringComparison.Ordinal);
        Assert.Equal(1, await world.Db.StreamLengthAsync(Keys.Inbox(replacement)));

        await world.Db.StringSetAsync(Keys.Escalation(dead),
            $"{{\"deadCoordinatorId\":\"{dead}\",\"swarmId\":\"swarm-api\",\"timestamp\":1,\"status\":\"failed\",\"newCoordinatorId\":\"{replacement}\",\"fencingToken\":{fence}}}",
            TimeSpan.FromHours(1));
        var (goneStatus, gone) = await SendAsync(world.Loopback, HttpMethod.Post, "/api/signals/send", body);

        Assert.Equal(HttpStatusCode.Gone, goneStatus);
        Assert.Equal("RECEIVER_DEAD", gone.GetProperty("code").GetString());
        Assert.Equal(dead, gone.GetProperty("receiverId").GetString());
        Assert.Equal(1, await world.Db.StreamLengthAsync(Keys.Inbox(replacement)));
    }

    [Fact]
    public async Task LocksStatus_ShowsEscalationCleanupLockWorkFencesAndEpoch()
    {
        await using var world = await World.StartAsync();
        var id = world.Primary.Id;
        await world.Db.StringSetAsync(Keys.Escalation(id),
            $"{{\"deadCoordinatorId\":\"{id}\",\"swarmId\":\"swarm-api\",\"timestamp\":1,\"status\":\"escalated\",\"newCoordinatorId\":\"coordinator-1-abc\",\"fencingToken\":9}}",
            TimeSpan.FromHours(1));
        await world.Db.StringSetAsync(Keys.CleanupLock, "token-1", TimeSpan.FromMinutes(10));
        var created = await world.Primary.Work.CreateAsync("work-1");
        Assert.True(created.Succeeded);

        var (status, locks) = await SendAsync(world.Loopback, HttpMethod.Get, "/api/locks/status");

        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(id, locks.GetProperty("coordinatorId").GetString());
        Assert.Equal(world.Primary.Epoch, locks.GetProperty("epoch").GetInt64());
        Assert.Equal(world.Primary.Epoch, locks.GetProperty("currentEpoch").GetInt64());
        Assert.False(locks.GetProperty("superseded").GetBoolean());
        var escalation = Assert.Single(locks.GetProperty("escalations").EnumerateArray());
        Assert.Equal("declared_dead", escalation.GetProperty("role").GetString());
        Assert.Equal(9, escalation.GetProperty("fencingToken").GetInt64());
        var cleanup = locks.GetProperty("cleanupLock");
        Assert.True(cleanup.GetProperty("held").GetBoolean());
        Assert.InRange(cleanup.GetProperty("ttlMs").GetInt64(), 1, 600_000);
        var fence = Assert.Single(locks.GetProperty("workFences").EnumerateArray());
        Assert.Equal("work-1", fence.GetProperty("workId").GetString());
        Assert.Equal(id, fence.GetProperty("owner").GetString());
        Assert.Equal(world.Primary.Epoch, fence.GetProperty("ownerEpoch").GetInt64());
    }

    [Fact]
    public async Task ForceCheck_LiveStaleInvalidAndUnknown_200_200_400_404()
    {
        await using var world = await World.StartAsync();
        var ghost = Id("ghost");
        var old = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - 600_000;
        await world.Db.StringSetAsync(Keys.Heartbeat(ghost),
            string.Create(CultureInfo.InvariantCulture, $"{{\"coordinatorId\":\"{ghost}\",\"timestamp\":{old},\"lastHeartbeat\":{old}}}"), TimeSpan.FromMinutes(5));

        var (liveStatus, live) = await SendAsync(world.Loopback, HttpMethod.Post, "/api/timeouts/force-check", $"{{\"coordinatorId\":\"{world.Primary.Id}\"}}");
        var (staleStatus, stale) = await SendAsync(world.Loopback, HttpMethod.Post, "/api/timeouts/force-check", $"{{\"coordinatorId\":\"{ghost}\"}}");
        var (badStatus, bad) = await SendAsync(world.Loopback, HttpMethod.Post, "/api/timeouts/force-check", "{\"coordinatorId\":\"no such id!\"}");
        var (missingStatus, _) = await SendAsync(world.Loopback, HttpMethod.Post, "/api/timeouts/force-check", "{}");
        var (unknownStatus, unknown) = await SendAsync(world.Loopback, HttpMethod.Post, "/api/timeouts/force-check", "{\"coordinatorId\":\"nobody-at-all\"}");
        var (tokenStatus, _) = await SendAsync(world.External, HttpMethod.Post, "/api/timeouts/force-check", $"{{\"coordinatorId\":\"{ghost}\"}}", bearer: AdminToken);

        Assert.Equal(HttpStatusCode.OK, liveStatus);
        Assert.Equal(world.Primary.Id, live.GetProperty("coordinatorId").GetString());
        Assert.False(live.GetProperty("timedOut").GetBoolean());
        Assert.True(live.GetProperty("durationMs").GetInt64() >= 0);
        Assert.False(string.IsNullOrEmpty(live.GetProperty("reason").GetString()));
        Assert.Equal(HttpStatusCode.OK, staleStatus);
        Assert.True(stale.GetProperty("timedOut").GetBoolean());
        Assert.Equal("heartbeat", stale.GetProperty("kind").GetString());
        Assert.InRange(stale.GetProperty("durationMs").GetInt64(), 590_000, 700_000);
        Assert.Equal(HttpStatusCode.BadRequest, badStatus);
        Assert.Equal("coordinatorId", bad.GetProperty("field").GetString());
        Assert.Equal(HttpStatusCode.BadRequest, missingStatus);
        Assert.Equal(HttpStatusCode.NotFound, unknownStatus);
        Assert.Equal("COORDINATOR_NOT_FOUND", unknown.GetProperty("code").GetString());
        Assert.Equal(HttpStatusCode.OK, tokenStatus);
    }
}
