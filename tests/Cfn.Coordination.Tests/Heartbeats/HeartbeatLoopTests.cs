using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using Cfn.Coordination.Heartbeats;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Signals;
using Cfn.Coordination.Tests.Infrastructure;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using StackExchange.Redis;

namespace Cfn.Coordination.Tests.Heartbeats;

/// <summary>The coordinator's heartbeat writer (SPEC K1, §2.9 writer side, D5, D6, L6, §7.5).</summary>
[Collection(RedisCollection.Name)]
public sealed partial class HeartbeatLoopTests(RedisServer server)
{
    [Fact]
    public async Task StartAsync_FirstHeartbeat_HasCanonicalFields()
    {
        await using var h = Harness.Create(server);
        var swarm = TestIds.New("swarm");
        var c = await h.StartAsync(swarmId: swarm);

        var k1 = await Probe.ReadJsonAsync(h.Database, "blocking:heartbeat:" + c.Id);

        Assert.Equal(c.Id, k1.GetProperty("coordinatorId").GetString());
        Assert.Equal(swarm, k1.GetProperty("swarmId").GetString());
        Assert.Equal(JsonValueKind.Number, k1.GetProperty("timestamp").ValueKind);
        Assert.True(k1.GetProperty("timestamp").TryGetInt64(out var timestamp), "timestamp is an integer");
        Assert.Equal(timestamp, k1.GetProperty("lastHeartbeat").GetInt64());
        Assert.Equal(1, k1.GetProperty("sequence").GetInt64());
        Assert.Equal(c.InstanceId, k1.GetProperty("instanceId").GetString());
        Assert.False(string.IsNullOrEmpty(c.InstanceId));
        Assert.Equal(c.Epoch, k1.GetProperty("epoch").GetInt64());
        Assert.Equal("idle", k1.GetProperty("status").GetString());
        Assert.Equal(timestamp, c.Heartbeats.LastSentAt);
    }

    [Fact]
    public async Task BeatAsync_SecondBeat_SequenceTwoSameInstanceNewerTimestamp()
    {
        await using var h = Harness.Create(server);
        var c = await h.StartAsync();
        var first = await Probe.ReadJsonAsync(h.Database, "blocking:heartbeat:" + c.Id);
        await RedisClockPastAsync(h, first.GetProperty("timestamp").GetInt64());

        Assert.True(await c.Heartbeats.BeatAsync());

        var second = await Probe.ReadJsonAsync(h.Database, "blocking:heartbeat:" + c.Id);
        Assert.Equal(2, second.GetProperty("sequence").GetInt64());
        Assert.Equal(2, c.Heartbeats.Sequence);
        Assert.Equal(c.InstanceId, second.GetProperty("instanceId").GetString());
        Assert.True(second.GetProperty("timestamp").GetInt64() > first.GetProperty("timestamp").GetInt64());
    }

    [Fact]
    public async Task BeatAsync_Timestamp_SerializedAsBareIntegerWithoutSpace()
    {
        await using var h = Harness.Create(server);
        var c = await h.StartAsync();
        Assert.True(await c.Heartbeats.BeatAsync());

        var raw = (string?)await h.Database.StringGetAsync("blocking:heartbeat:" + c.Id);

        Assert.NotNull(raw);
        // The legacy cleanup Lua ("timestamp":(%d+)) and bash (?<="timestamp":)\d+ regexes depend on this exact form.
        var match = TimestampRegex().Match(raw);
        Assert.True(match.Success, raw);
        var lastHeartbeat = LastHeartbeatRegex().Match(raw);
        Assert.True(lastHeartbeat.Success, raw);
        Assert.Equal(match.Groups[1].Value, lastHeartbeat.Groups[1].Value);
        Assert.Equal(c.Heartbeats.LastSentAt, long.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture));
        Assert.DoesNotContain("\"timestamp\": ", raw, StringComparison.Ordinal);
        Assert.DoesNotContain("__NOW__", raw, StringComparison.Ordinal);
    }

    [Fact]
    public async Task BeatAsync_Timestamp_IsRedisServerTime()
    {
        await using var h = Harness.Create(server);
        var c = await h.StartAsync();

        Assert.True(await c.Heartbeats.BeatAsync());
        var redisNow = await Probe.RedisNowMsAsync(h.Database);
        var timestamp = (await Probe.ReadJsonAsync(h.Database, "blocking:heartbeat:" + c.Id)).GetProperty("timestamp").GetInt64();

        Assert.InRange(redisNow - timestamp, -2000, 2000);
    }

    [Fact]
    public async Task BeatAsync_ProcessClockIn2001_TimestampIsStillRedisTime()
    {
        // D5: the coordinator's clock skew must never reach the heartbeat.
        var fake = new FakeTimeProvider(new DateTimeOffset(2001, 9, 9, 1, 46, 40, TimeSpan.Zero));
        await using var h = Harness.Create(server, time: fake);
        var c = await h.StartAsync();

        Assert.True(await c.Heartbeats.BeatAsync());
        var redisNow = await Probe.RedisNowMsAsync(h.Database);
        var k1 = await Probe.ReadJsonAsync(h.Database, "blocking:heartbeat:" + c.Id);
        var timestamp = k1.GetProperty("timestamp").GetInt64();

        Assert.InRange(redisNow - timestamp, -2000, 2000);
        Assert.InRange(redisNow - k1.GetProperty("lastHeartbeat").GetInt64(), -2000, 2000);
        Assert.True(timestamp - fake.GetUtcNow().ToUnixTimeMilliseconds() > TimeSpan.FromDays(365).TotalMilliseconds);
        var score = await h.Database.SortedSetScoreAsync(Keys.Registry, c.Id);
        Assert.Equal(timestamp, (long)score!.Value);
    }

    [Fact]
    public async Task BeatAsync_Registry_ScoreEqualsK1Timestamp()
    {
        await using var h = Harness.Create(server);
        var c = await h.StartAsync();

        var afterStart = await h.Database.SortedSetScoreAsync("blocking:coordinators", c.Id);
        var startTimestamp = (await Probe.ReadJsonAsync(h.Database, "blocking:heartbeat:" + c.Id)).GetProperty("timestamp").GetInt64();
        Assert.NotNull(afterStart);
        Assert.Equal(startTimestamp, (long)afterStart.Value);

        await RedisClockPastAsync(h, startTimestamp);
        Assert.True(await c.Heartbeats.BeatAsync());
        var afterBeat = await h.Database.SortedSetScoreAsync("blocking:coordinators", c.Id);
        var beatTimestamp = (await Probe.ReadJsonAsync(h.Database, "blocking:heartbeat:" + c.Id)).GetProperty("timestamp").GetInt64();
        Assert.Equal(beatTimestamp, (long)afterBeat!.Value);
        Assert.True(afterBeat.Value > afterStart.Value);
    }

    [Fact]
    public async Task BeatAsync_Ttl_PositiveAndAtMostConfiguredTtl()
    {
        await using var h = Harness.Create(server, o => o.HeartbeatTtlSeconds = 123);
        var c = await h.StartAsync();
        Assert.True(await c.Heartbeats.BeatAsync());

        var ttl = await h.Database.KeyTimeToLiveAsync("blocking:heartbeat:" + c.Id);

        Assert.NotNull(ttl);
        Assert.InRange(ttl.Value.TotalSeconds, 100, 123);
    }

    [Fact]
    public async Task BeatAsync_DefaultOptions_TtlIsAtMost300Seconds()
    {
        await using var h = Harness.Create(server);
        var c = await h.StartAsync();

        var ttl = await h.Database.KeyTimeToLiveAsync("blocking:heartbeat:" + c.Id);

        Assert.Equal(300, h.Options.HeartbeatTtlSeconds);
        Assert.NotNull(ttl);
        Assert.InRange(ttl.Value.TotalSeconds, 1, 300);
    }

    [Fact]
    public async Task BeatAsync_Success_GaugeHoldsTimestampInMilliseconds()
    {
        await using var h = Harness.Create(server);
        var swarm = TestIds.New("swarm");
        var c = await h.StartAsync(swarmId: swarm);
        Assert.True(await c.Heartbeats.BeatAsync());

        var timestamp = (await Probe.ReadJsonAsync(h.Database, "blocking:heartbeat:" + c.Id)).GetProperty("timestamp").GetInt64();

        Assert.Equal(timestamp, h.Metrics.HeartbeatTimestamp.WithLabels(c.Id, swarm).Value);
        Assert.Equal(timestamp, c.Heartbeats.LastSentAt);
    }

    [Fact]
    public async Task BeatAsync_HeartbeatDebugOn_LogsHeartbeatSentWithCoordinatorId()
    {
        await using var h = Harness.Create(server, o => o.HeartbeatDebug = true);
        var c = await h.StartAsync();
        Assert.True(await c.Heartbeats.BeatAsync());

        var lines = h.Logs.GetSnapshot()
            .Where(r => r.Message.Contains("Heartbeat sent", StringComparison.Ordinal) && r.Message.Contains(c.Id, StringComparison.Ordinal))
            .ToList();

        Assert.Equal(2, lines.Count); // the first beat in StartAsync, then ours
        Assert.All(lines, r => Assert.Equal(LogLevel.Information, r.Level));
        Assert.Contains(lines, r => r.Message.Contains("seq=2", StringComparison.Ordinal) &&
                                    r.Message.Contains("timestamp=" + c.Heartbeats.LastSentAt.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal));
        Assert.DoesNotContain('\n', lines[0].Message);
    }

    [Fact]
    public async Task BeatAsync_HeartbeatDebugOff_LogsNoSuccessLine()
    {
        await using var h = Harness.Create(server);
        var c = await h.StartAsync();
        Assert.True(await c.Heartbeats.BeatAsync());

        Assert.DoesNotContain(h.Messages, m => m.Contains("Heartbeat sent", StringComparison.Ordinal));
    }

    [Fact]
    public async Task BeatAsync_ConnectionGone_ReturnsFalseCountsConnectionFailureAndLogsWarn()
    {
        var h = await Harness.CreateIsolatedAsync(server);
        try
        {
            var c = await h.StartAsync();
            await h.Redis.Multiplexer.DisposeAsync();

            var ok = await c.Heartbeats.BeatAsync();

            Assert.False(ok);
            Assert.NotNull(c.Heartbeats.LastError);
            Assert.Equal(1, h.Metrics.HeartbeatFailures.WithLabels(c.Id, "connection", "connection").Value);
            var warnings = h.Logs.GetSnapshot().Where(r => r.Level == LogLevel.Warning).Select(r => r.Message).ToList();
            Assert.Contains(warnings, m =>
                m.Contains("heartbeat", StringComparison.OrdinalIgnoreCase) &&
                m.Contains("connection", StringComparison.Ordinal) &&
                m.Contains(c.Id, StringComparison.Ordinal));
            Assert.False(c.IsSuperseded);
        }
        finally
        {
            // The coordinators' graceful stop cannot reach Redis any more; what matters here is the failed beat.
            try
            {
                await h.DisposeAsync();
            }
            catch (Exception e) when (e is RedisException or ObjectDisposedException)
            {
            }
        }
    }

    [Fact]
    public async Task BeatAsync_RedisServerStopped_ReturnsFalseCountsFailureAndLogsWarn()
    {
        await using var redis = await PrivateRedisServer.StartAsync();
        await using var world = await PrivateWorld.CreateAsync(redis);
        var c = await world.StartAsync();

        redis.Kill();
        var ok = await c.Heartbeats.BeatAsync();

        Assert.False(ok);
        var connection = world.Metrics.HeartbeatFailures.WithLabels(c.Id, "connection", "connection").Value;
        var timeout = world.Metrics.HeartbeatFailures.WithLabels(c.Id, "timeout", "timeout").Value;
        Assert.Equal(1, connection + timeout);
        Assert.Equal(0, world.Metrics.HeartbeatFailures.WithLabels(c.Id, "error", "error").Value);
        var reason = connection == 1 ? "connection" : "timeout";
        Assert.Contains(world.Logs.GetSnapshot(), r =>
            r.Level == LogLevel.Warning &&
            r.Message.Contains("heartbeat", StringComparison.OrdinalIgnoreCase) &&
            r.Message.Contains("reason=" + reason, StringComparison.Ordinal) &&
            r.Message.Contains(c.Id, StringComparison.Ordinal));
        Assert.False(c.IsSuperseded);
    }

    [Fact]
    public async Task StopAsync_RedisServerStopped_DoesNotThrow()
    {
        // A SIGTERM while Redis is unreachable: the keys cannot be removed, but the stop itself must not fail.
        await using var redis = await PrivateRedisServer.StartAsync();
        await using var world = await PrivateWorld.CreateAsync(redis);
        var c = await world.StartAsync();

        redis.Kill();
        var thrown = await Record.ExceptionAsync(() => c.StopAsync());

        Assert.Null(thrown);
    }

    [Fact]
    public async Task BeatAsync_RedisRestartedWithoutData_ResumesAndIsNotSuperseded()
    {
        // SPEC §5 #53: coordinators must survive a Redis restart (reconnect, resume heartbeats, not crash). A restarted
        // Redis without persistence has lost coordinator:epoch:{id}; nobody newer took over, so this is not supersession.
        await using var redis = await PrivateRedisServer.StartAsync();
        await using var world = await PrivateWorld.CreateAsync(redis);
        var c = await world.StartAsync();

        redis.Kill();
        Assert.False(await c.Heartbeats.BeatAsync());
        await redis.RestartAsync();
        // A superseded coordinator stops trying, so that ends the wait too; the assertions then say which happened.
        var resumed = false;
        await EventuallyAsync(async () => (resumed = await c.Heartbeats.BeatAsync()) || c.IsSuperseded, TimeSpan.FromSeconds(30), pollMs: 200);

        Assert.False(c.IsSuperseded, "the coordinator declared itself superseded after a Redis restart");
        Assert.True(resumed, "heartbeats did not resume after the Redis restart");
        Assert.True(await world.Redis.Database.KeyExistsAsync("blocking:heartbeat:" + c.Id));
    }

    public static TheoryData<string, string> Exceptions => new()
    {
        { "redis-connection", "connection" },
        { "object-disposed", "connection" },
        { "redis-timeout", "timeout" },
        { "timeout", "timeout" },
        { "redis-server", "error" },
        { "redis", "error" },
        { "invalid-operation", "error" },
    };

    [Theory]
    [MemberData(nameof(Exceptions))]
    public void Classify_Exception_GivesReasonLabel(string kind, string reason)
    {
#pragma warning disable CS0618 // the simplest public constructors are enough to exercise the classification
        Exception exception = kind switch
        {
            "redis-connection" => new RedisConnectionException(ConnectionFailureType.SocketFailure, "socket closed"),
            "object-disposed" => new ObjectDisposedException("ConnectionMultiplexer"),
            "redis-timeout" => new RedisTimeoutException("Timeout awaiting response", CommandStatus.Sent),
            "timeout" => new TimeoutException(),
            "redis-server" => new RedisServerException("ERR something"),
            "redis" => new RedisException("other"),
            "invalid-operation" => new InvalidOperationException(),
            _ => throw new ArgumentOutOfRangeException(nameof(kind)),
        };
#pragma warning restore CS0618

        Assert.Equal(reason, HeartbeatLoop.Classify(exception));
    }

    [Fact]
    public async Task BeatAsync_SecondInstanceWithSameId_FirstIsSupersededAndK1StaysSeconds()
    {
        await using var h = Harness.Create(server);
        var id = TestIds.New("coord");
        var first = await h.StartAsync(id);
        var second = await h.StartAsync(id);

        Assert.NotEqual(first.InstanceId, second.InstanceId);
        Assert.True(second.Epoch > first.Epoch);
        var beat = await first.Heartbeats.BeatAsync();

        Assert.False(beat);
        Assert.True(first.IsSuperseded);
        Assert.True(first.SupersededToken.IsCancellationRequested);
        Assert.False(second.IsSuperseded);
        var k1 = await Probe.ReadJsonAsync(h.Database, "blocking:heartbeat:" + id);
        Assert.Equal(second.InstanceId, k1.GetProperty("instanceId").GetString());
        Assert.Equal(second.Epoch, k1.GetProperty("epoch").GetInt64());
        // Being superseded is not a write failure.
        Assert.Equal(0, h.Metrics.HeartbeatFailures.WithLabels(id, "connection", "connection").Value);
        Assert.Equal(0, h.Metrics.HeartbeatFailures.WithLabels(id, "error", "error").Value);
        Assert.True(await second.Heartbeats.BeatAsync());
    }

    [Fact]
    public async Task StopAsync_SupersededInstance_LeavesSuccessorsKeys()
    {
        await using var h = Harness.Create(server);
        var id = TestIds.New("coord");
        var first = await h.StartAsync(id);
        var second = await h.StartAsync(id);

        await first.StopAsync();

        var k1 = await Probe.ReadJsonAsync(h.Database, "blocking:heartbeat:" + id);
        Assert.Equal(second.InstanceId, k1.GetProperty("instanceId").GetString());
        Assert.True(await h.Database.KeyExistsAsync("coordinator:activity:" + id));
        Assert.NotNull(await h.Database.SortedSetScoreAsync(Keys.Registry, id));
    }

    [Fact]
    public async Task StopAsync_Graceful_RemovesOwnKeysButKeepsPendingInboxAndK2()
    {
        await using var h = Harness.Create(server);
        var c = await h.StartAsync();
        var peer = await h.StartAsync();
        var neighbour = await h.StartAsync(c.Id + "0"); // shares c's ID as a prefix (SPEC §7.14 item 7)
        var signalId = TestIds.New("sig");
        await c.Acks.AcknowledgeAsync(signalId, peer.Id, SignalTypes.Completion, null, 0);
        await c.Acks.AcknowledgeAsync(signalId + ":2", peer.Id, SignalTypes.Completion, null, 0);
        await neighbour.Acks.AcknowledgeAsync(signalId, peer.Id, SignalTypes.Completion, null, 0);
        await peer.Signals.SendAsync(c.Id, SignalTypes.Completion, 1); // pending: never read
        Assert.True(await h.Database.KeyExistsAsync("blocking:ack:" + c.Id + ":" + signalId));
        Assert.True(await h.Database.KeyExistsAsync("blocking:signal:" + c.Id));

        await c.StopAsync();

        Assert.False(await h.Database.KeyExistsAsync("blocking:heartbeat:" + c.Id));
        Assert.False(await h.Database.KeyExistsAsync("coordinator:activity:" + c.Id));
        Assert.Null(await h.Database.SortedSetScoreAsync("blocking:coordinators", c.Id));
        Assert.False(await h.Database.KeyExistsAsync("blocking:ack:" + c.Id + ":" + signalId));
        Assert.False(await h.Database.KeyExistsAsync("blocking:ack:" + c.Id + ":" + signalId + ":2"));
        Assert.True(await h.Database.KeyExistsAsync("blocking:inbox:" + c.Id));
        Assert.True(await h.Database.KeyExistsAsync("blocking:signal:" + c.Id));
        Assert.Equal(1, await h.Database.StreamLengthAsync("blocking:inbox:" + c.Id));
        // Nobody else's keys.
        Assert.True(await h.Database.KeyExistsAsync("blocking:ack:" + neighbour.Id + ":" + signalId));
        Assert.True(await h.Database.KeyExistsAsync("blocking:heartbeat:" + neighbour.Id));
        Assert.True(await h.Database.KeyExistsAsync("blocking:heartbeat:" + peer.Id));
    }

    [Fact]
    public async Task StopAsync_Graceful_ConsumedInboxIsRemovedToo()
    {
        await using var h = Harness.Create(server);
        var c = await h.StartAsync();
        var peer = await h.StartAsync();
        await peer.Signals.SendAsync(c.Id, SignalTypes.Completion, 1);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        await foreach (var received in c.Inbox.ReadAllAsync(cts.Token))
        {
            await c.Inbox.CompleteAsync(received);
            break;
        }

        Assert.False(await h.Database.KeyExistsAsync("blocking:signal:" + c.Id));
        await c.StopAsync();

        Assert.False(await h.Database.KeyExistsAsync("blocking:inbox:" + c.Id));
        Assert.False(await h.Database.KeyExistsAsync("blocking:signal:" + c.Id));
        Assert.False(await h.Database.KeyExistsAsync("blocking:heartbeat:" + c.Id));
        Assert.False(await h.Database.KeyExistsAsync("coordinator:activity:" + c.Id));
    }

    [Fact]
    public async Task HeartbeatLoop_Running_WritesPeriodicallyWithIncreasingSequence()
    {
        await using var h = Harness.Create(server, o => o.HeartbeatInterval = TimeSpan.FromMilliseconds(100));
        var c = await h.StartAsync(heartbeatLoop: true);

        await EventuallyAsync(
            async () => (await Probe.ReadJsonAsync(h.Database, "blocking:heartbeat:" + c.Id)).GetProperty("sequence").GetInt64(),
            sequence => sequence >= 3, "the heartbeat loop never reached sequence 3", TimeSpan.FromSeconds(20));
        await c.StopAsync();
        var stoppedAt = c.Heartbeats.Sequence;
        // Shows that no beat follows the stop: four heartbeat intervals would have brought about four. A negative check:
        // a stopped loop has no pass to await.
        await Task.Delay(4 * h.Options.HeartbeatInterval);
        Assert.Equal(stoppedAt, c.Heartbeats.Sequence);
        Assert.False(await h.Database.KeyExistsAsync("blocking:heartbeat:" + c.Id));
    }

    [Fact]
    public async Task BeatAsync_WhileWaitingForAcks_StatusIsBlocking()
    {
        await using var h = Harness.Create(server);
        var c = await h.StartAsync();
        using var cts = new CancellationTokenSource();
        var waiting = c.Waiter.WaitForAcksAsync([TestIds.New("peer")], TestIds.New("sig"), TimeSpan.FromMinutes(5), cts.Token);
        try
        {
            await EventuallyAsync(() => c.Status == "blocking", "the coordinator never reported itself blocking", TimeSpan.FromSeconds(20));

            Assert.True(await c.Heartbeats.BeatAsync());
            var k1 = await Probe.ReadJsonAsync(h.Database, "blocking:heartbeat:" + c.Id);
            Assert.Equal("blocking", k1.GetProperty("status").GetString());
        }
        finally
        {
            await cts.CancelAsync();
            await waiting;
        }

        Assert.True(await c.Heartbeats.BeatAsync());
        Assert.Equal("idle", (await Probe.ReadJsonAsync(h.Database, "blocking:heartbeat:" + c.Id)).GetProperty("status").GetString());
    }

    [Fact]
    public async Task StopAsync_Graceful_RemovesHeartbeatGaugeSeries()
    {
        // D9: label sets are bounded by the live coordinators.
        await using var h = Harness.Create(server);
        var c = await h.StartAsync();
        Assert.Contains(c.Id, await ExportAsync(h), StringComparison.Ordinal);

        await c.StopAsync();

        var exported = await ExportAsync(h);
        Assert.DoesNotContain(
            exported.Split('\n'),
            line => line.StartsWith("blocking_heartbeat_timestamp{", StringComparison.Ordinal) && line.Contains(c.Id, StringComparison.Ordinal));
    }

    [Fact]
    public async Task HeartbeatLoop_SupersededInstance_StopsBeating()
    {
        await using var h = Harness.Create(server, o => o.HeartbeatInterval = TimeSpan.FromMilliseconds(100));
        var id = TestIds.New("coord");
        var first = await h.StartAsync(id, heartbeatLoop: true);

        var second = await h.StartAsync(id);
        await EventuallyAsync(() => first.IsSuperseded, "the first instance never saw it was superseded", TimeSpan.FromSeconds(20));
        var sequence = first.Heartbeats.Sequence;
        // Shows that a superseded instance beats no more: five heartbeat intervals would have brought about five. A
        // negative check: a loop that ended has no pass to await.
        await Task.Delay(5 * h.Options.HeartbeatInterval);
        Assert.Equal(sequence, first.Heartbeats.Sequence);
        Assert.Equal(second.InstanceId, (await Probe.ReadJsonAsync(h.Database, "blocking:heartbeat:" + id)).GetProperty("instanceId").GetString());
        Assert.Contains(h.Logs.GetSnapshot(), r => r.Level == LogLevel.Error && r.Message.Contains("superseded", StringComparison.Ordinal) &&
                                                   r.Message.Contains(id, StringComparison.Ordinal));
    }

    /// <summary>Waits until Redis's clock has passed <paramref name="timestampMs"/>, so the next beat's timestamp is strictly newer.</summary>
    private static Task RedisClockPastAsync(Harness h, long timestampMs) =>
        EventuallyAsync(async () => await Probe.RedisNowMsAsync(h.Database) > timestampMs, "the Redis clock never moved past the last beat");

    private static async Task<string> ExportAsync(Harness h)
    {
        using var stream = new MemoryStream();
        await h.Registry.CollectAndExportAsTextAsync(stream);
        return System.Text.Encoding.UTF8.GetString(stream.ToArray());
    }

    /// <summary>A RedisContext, metrics and captured logs on a <see cref="PrivateRedisServer"/>, with short client timeouts.</summary>
    private sealed class PrivateWorld : IAsyncDisposable
    {
        private readonly List<Coordinator> _coordinators = [];
        private readonly ILoggerFactory _loggerFactory;

        private PrivateWorld(RedisContext redis, ILoggerFactory loggerFactory, Microsoft.Extensions.Logging.Testing.FakeLogCollector logs, Cfn.Coordination.Metrics.CoordinationMetrics metrics)
        {
            Redis = redis;
            _loggerFactory = loggerFactory;
            Logs = logs;
            Metrics = metrics;
        }

        public RedisContext Redis { get; }

        public Microsoft.Extensions.Logging.Testing.FakeLogCollector Logs { get; }

        public Cfn.Coordination.Metrics.CoordinationMetrics Metrics { get; }

        public static async Task<PrivateWorld> CreateAsync(PrivateRedisServer redis)
        {
            var logs = new Microsoft.Extensions.Logging.Testing.FakeLogCollector();
            var loggerFactory = LoggerFactory.Create(b =>
                b.SetMinimumLevel(LogLevel.Debug).AddProvider(new Microsoft.Extensions.Logging.Testing.FakeLoggerProvider(logs)));
            var multiplexer = await ConnectionMultiplexer.ConnectAsync(
                $"127.0.0.1:{redis.Port},abortConnect=false,connectTimeout=1000,syncTimeout=1500,asyncTimeout=1500");
            var context = new RedisContext(multiplexer, new CoordinationOptions(), loggerFactory: loggerFactory, ownsMultiplexer: true);
            var metrics = new Cfn.Coordination.Metrics.CoordinationMetrics(Prometheus.Metrics.NewCustomRegistry());
            return new PrivateWorld(context, loggerFactory, logs, metrics);
        }

        public async Task<Coordinator> StartAsync()
        {
            var c = await Coordinator.StartAsync(
                Redis, new Cfn.Coordination.SigningKeys(Harness.Secret), TestIds.New("coord"), "swarm-private", Metrics, runHeartbeatLoop: false);
            _coordinators.Add(c);
            return c;
        }

        public async ValueTask DisposeAsync()
        {
            foreach (var c in _coordinators)
            {
                try
                {
                    await c.DisposeAsync();
                }
                catch (Exception e) when (e is RedisException or TimeoutException or ObjectDisposedException)
                {
                    // Reported by StopAsync_RedisServerStopped_DoesNotThrow; here only the resources matter.
                }
            }

            try
            {
                await Redis.DisposeAsync();
            }
            catch (Exception e) when (e is RedisException or TimeoutException or ObjectDisposedException)
            {
            }

            _loggerFactory.Dispose();
        }
    }

    [GeneratedRegex("\"timestamp\":(\\d+)[,}]")]
    private static partial Regex TimestampRegex();

    [GeneratedRegex("\"lastHeartbeat\":(\\d+)[,}]")]
    private static partial Regex LastHeartbeatRegex();
}
