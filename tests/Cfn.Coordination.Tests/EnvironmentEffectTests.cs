using System.Collections;
using System.Diagnostics;
using System.Text.Json;
using Cfn.Coordination.Acks;
using Cfn.Coordination.Background;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Signals;
using Cfn.Coordination.Tests.Infrastructure;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;

namespace Cfn.Coordination.Tests;

/// <summary>
/// SPEC §3.6: each protocol variable read by <see cref="CoordinationOptions.FromEnvironment"/> changes what a
/// coordinator does in Redis. Every test parses an environment, gives the result to a real coordinator, and observes
/// the effect (sequence, TTL, log line, wait result) on the real server. docs/configuration.md links to these.
/// </summary>
[Collection(RedisCollection.Name)]
public sealed class EnvironmentEffectTests(RedisServer server)
{
    /// <summary>A harness whose options are exactly what <see cref="CoordinationOptions.FromEnvironment"/> read from <paramref name="variables"/>.</summary>
    internal static Harness FromEnvironment(RedisServer server, params (string Name, string Value)[] variables) =>
        FromEnvironment(server, null, variables);

    /// <summary>The same, with its loops on <paramref name="time"/>.</summary>
    internal static Harness FromEnvironment(RedisServer server, TimeProvider? time, params (string Name, string Value)[] variables)
    {
        var env = new Hashtable();
        foreach (var (name, value) in variables)
        {
            env[name] = value;
        }

        var parsed = CoordinationOptions.FromEnvironment(env);
        return Harness.Create(server, o =>
        {
            foreach (var property in typeof(CoordinationOptions).GetProperties().Where(p => p.CanWrite))
            {
                property.SetValue(o, property.GetValue(parsed));
            }
        }, time);
    }

    [Fact]
    public async Task HeartbeatIntervalMs_200_SequenceAdvancesAboutEvery200Ms()
    {
        var time = new FakeTimeProvider();
        await using var h = FromEnvironment(server, time, ("HEARTBEAT_INTERVAL_MS", "200"));
        var c = await h.StartAsync(heartbeatLoop: true);
        var first = await SequenceAsync(h, c.Id);
        await EventuallyAsync(() => h.Redis.Loops.Snapshot().Any(l => l.Loop == LoopNames.Heartbeat), "the heartbeat loop never started");

        // 2 s of the loop's clock, each beat it makes due awaited; the default (30 s) would give none.
        await FakeClock.AdvanceAsync(time, h.Redis.Loops, TimeSpan.FromSeconds(2), TimeSpan.FromMilliseconds(200), LoopNames.Heartbeat);
        var advanced = await SequenceAsync(h, c.Id) - first;

        Assert.Equal(10, advanced);
    }

    [Fact]
    public async Task HeartbeatTtlSeconds_77_K1Ttl()
    {
        await using var h = FromEnvironment(server, ("HEARTBEAT_TTL_SECONDS", "77"), ("HEARTBEAT_INTERVAL_MS", "1000"));
        var c = await h.StartAsync();

        var ttl = await h.Database.KeyTimeToLiveAsync(Keys.Heartbeat(c.Id));

        Assert.NotNull(ttl);
        Assert.InRange(ttl.Value.TotalSeconds, 70, 77);
    }

    [Theory]
    [InlineData("true", 4)]
    [InlineData("false", 0)]
    public async Task HeartbeatDebug_InfoLinePerBeatOnlyWhenTrue(string value, int expectedLines)
    {
        await using var h = FromEnvironment(server, ("HEARTBEAT_DEBUG", value));
        var c = await h.StartAsync(); // the first beat
        for (var i = 0; i < 3; i++)
        {
            Assert.True(await c.Heartbeats.BeatAsync());
        }

        var lines = h.Logs.GetSnapshot()
            .Where(r => r.Level == LogLevel.Information && r.Message.StartsWith($"Heartbeat sent coordinator={c.Id} ", StringComparison.Ordinal))
            .ToList();
        Assert.Equal(expectedLines, lines.Count);
    }

    [Theory]
    [InlineData("BLOCKING_TIMEOUT_MS")]
    [InlineData("BLOCKING_TIMEOUT")] // the obsolete alias has the same effect
    public async Task BlockingTimeout_WaitWithoutTimeoutEndsAfterItAndK7ShowsIt(string variable)
    {
        await using var h = FromEnvironment(server, (variable, "700"));
        var self = await h.StartAsync();
        var absent = TestIds.New("absent");
        var stopwatch = Stopwatch.StartNew();

        var waiting = self.Waiter.WaitForAcksAsync([absent], TestIds.New("signal"));
        long? timeoutMs = null;
        // Until K7 shows the timeout, or the wait is over (then the assertion below says it never showed).
        await EventuallyAsync(async () =>
        {
            var k7 = (string?)await h.Database.StringGetAsync(Keys.Activity(self.Id));
            using var doc = JsonDocument.Parse(k7!);
            if (doc.RootElement.TryGetProperty("timeoutMs", out var t) && t.ValueKind == JsonValueKind.Number)
            {
                timeoutMs = t.GetInt64();
            }

            return waiting.IsCompleted || timeoutMs is not null;
        }, TimeSpan.FromSeconds(20));

        var result = await waiting.WaitAsync(TimeSpan.FromSeconds(20));

        Assert.Equal(AckWaitStatus.Timeout, result.Status);
        Assert.Equal(700, timeoutMs);
        Assert.InRange(stopwatch.Elapsed.TotalMilliseconds, 600, 15_000);
        Assert.Contains(h.Messages, m => m.Contains("Waiting for ACKs", StringComparison.Ordinal) && m.EndsWith("timeout=700", StringComparison.Ordinal));
    }

    [Fact]
    public async Task AckSignalAndIdempotencyTtlSeconds_SetTheTtlOfK3K2AndK4()
    {
        await using var h = FromEnvironment(server,
            ("ACK_TTL_SECONDS", "123"), ("SIGNAL_TTL_SECONDS", "321"), ("IDEMPOTENCY_TTL_SECONDS", "222"));
        var sender = await h.StartAsync();
        var receiver = await h.StartAsync();

        var sent = await sender.Signals.SendAsync(receiver.Id, SignalTypes.Completion, 1);
        var signalTtl = await h.Database.KeyTimeToLiveAsync(Keys.Signal(receiver.Id));
        var idempotencyTtl = await h.Database.KeyTimeToLiveAsync(Keys.Idempotency(sent.MessageId));
        await receiver.Acks.AcknowledgeAsync(sent.MessageId, sender.Id, SignalTypes.Completion, null, sent.Timestamp);
        var ackTtl = await h.Database.KeyTimeToLiveAsync(Keys.Ack(receiver.Id, sent.MessageId));

        Assert.InRange(signalTtl!.Value.TotalSeconds, 310, 321);
        Assert.InRange(idempotencyTtl!.Value.TotalSeconds, 210, 222);
        Assert.InRange(ackTtl!.Value.TotalSeconds, 110, 123);
    }

    [Fact]
    public async Task SignalInboxMaxLength_2_ThirdPendingSignalRefusedAsInboxFull()
    {
        await using var h = FromEnvironment(server, ("SIGNAL_INBOX_MAX_LENGTH", "2"));
        var sender = await h.StartAsync();
        var receiver = await h.StartAsync();
        await sender.Signals.SendAsync(receiver.Id, SignalTypes.Completion, 1);
        await sender.Signals.SendAsync(receiver.Id, SignalTypes.Completion, 2);

        var refused = await Assert.ThrowsAsync<SignalDeliveryException>(() => sender.Signals.SendAsync(receiver.Id, SignalTypes.Completion, 3));

        Assert.Equal(SignalDeliveryException.InboxFull, refused.Reason);
        Assert.Contains("SIGNAL_INBOX_MAX_LENGTH is 2", refused.Message, StringComparison.Ordinal);
        Assert.Equal(2, await h.Database.StreamLengthAsync(Keys.Inbox(receiver.Id)));
    }

    [Theory]
    [InlineData("200", true)]
    [InlineData("600000", false)]
    public async Task AckPollIntervalMs_FallbackReadsOfAPendingWaitEveryInterval(string value, bool reads)
    {
        // The heartbeat loop every 100 ms is the witness that each step of the clock has been acted on.
        var time = new FakeTimeProvider();
        await using var h = FromEnvironment(server, time, ("ACK_POLL_INTERVAL_MS", value), ("HEARTBEAT_INTERVAL_MS", "100"));
        var self = await h.StartAsync(heartbeatLoop: true);
        using var cts = new CancellationTokenSource();
        var waiting = self.Waiter.WaitForAcksAsync([TestIds.New("absent")], TestIds.New("signal"), TimeSpan.FromMinutes(1), cts.Token);
        await EventuallyAsync(() => self.Status == "blocking" && h.Redis.Loops.Snapshot().Any(l => l.Loop == LoopNames.Heartbeat),
            "the wait never started, or the heartbeat loop never ran");
        var before = h.Redis.Wakeups.FallbackReads;

        // 3 s of the clock the fallback check and the heartbeat run on, in 100 ms steps.
        await FakeClock.AdvanceAsync(time, h.Redis.Loops, TimeSpan.FromSeconds(3), TimeSpan.FromMilliseconds(100), LoopNames.Heartbeat, LoopNames.AckFallback);
        var delta = h.Redis.Wakeups.FallbackReads - before;
        await cts.CancelAsync();
        await waiting;

        if (reads)
        {
            // About 15 in 3 s; a loaded 2-core machine delays timers, so only "several" is asserted (the other case is 0).
            Assert.InRange(delta, 2, 30);
        }
        else
        {
            Assert.Equal(0, delta);
        }
    }

    [Fact]
    public async Task ActivityCheckIntervalMs_WithBlockingTimeout_SizesTheK7Ttl()
    {
        // K7 lives max(600, BLOCKING_TIMEOUT_MS + 2 × ACTIVITY_CHECK_INTERVAL_MS): 1000 + 2 × 120 s = 1240 s.
        await using var h = FromEnvironment(server, ("BLOCKING_TIMEOUT_MS", "1000000"), ("ACTIVITY_CHECK_INTERVAL_MS", "120000"));
        var c = await h.StartAsync();

        var ttl = await h.Database.KeyTimeToLiveAsync(Keys.Activity(c.Id));

        Assert.InRange(ttl!.Value.TotalSeconds, 1230, 1240);
    }

    [Fact]
    public async Task WorkResultTtlSeconds_123_FinishedWorkRecordKeptThatLong()
    {
        await using var h = FromEnvironment(server, ("WORK_RESULT_TTL_SECONDS", "123"));
        var swarm = TestIds.New("swarm");
        var c = await h.StartAsync(swarmId: swarm);
        await using var queue = new WorkQueue(h.Redis);
        var queued = await queue.EnqueueAsync(swarm, null, JsonSerializer.SerializeToElement(new { n = 1 }));
        var created = await c.Work.CreateAsync(queued.WorkId, JsonSerializer.SerializeToElement(new { input = new { n = 1 } }));
        var unfinished = await h.Database.KeyTimeToLiveAsync(Keys.WorkRecord(swarm, queued.WorkId));

        await c.Work.CompleteAsync(created.Item!, JsonSerializer.SerializeToElement(new { outcome = "pass" }));
        var finished = await h.Database.KeyTimeToLiveAsync(Keys.WorkRecord(swarm, queued.WorkId));

        Assert.True(unfinished!.Value.TotalDays > 6, "an unfinished record is kept a week, whatever the variable");
        Assert.InRange(finished!.Value.TotalSeconds, 110, 123);
        Assert.Equal("completed", (await queue.GetRecordAsync(swarm, queued.WorkId))!.Status);
    }

    [Fact]
    public async Task WorkTtlSeconds_60_NewWorkItemExpiresInAMinute()
    {
        await using var h = FromEnvironment(server, ("WORK_TTL_SECONDS", "60"));
        var swarm = TestIds.New("swarm");
        var c = await h.StartAsync(swarmId: swarm);
        var created = await c.Work.CreateAsync(TestIds.New("work"));

        var ttl = await h.Database.KeyTimeToLiveAsync(Keys.Work(swarm, c.Id, created.Item!.WorkId));
        Assert.InRange(ttl!.Value.TotalSeconds, 50, 60);
    }

    [Fact]
    public async Task FinishedWorkRetentionAndAckRetentionSeconds_CutTheK10OfACompletedItemAndTheAckOfACfnSender()
    {
        await using var h = FromEnvironment(server, ("FINISHED_WORK_RETENTION_SECONDS", "42"), ("ACK_RETENTION_SECONDS", "77"));
        var swarm = TestIds.New("swarm");
        var c = await h.StartAsync(swarmId: swarm);
        var created = await c.Work.CreateAsync(TestIds.New("work"));
        await c.Work.CompleteAsync(created.Item!, JsonSerializer.SerializeToElement(new { outcome = "pass" }));
        var k10 = await h.Database.KeyTimeToLiveAsync(Keys.Work(swarm, c.Id, created.Item!.WorkId));
        Assert.InRange(k10!.Value.TotalSeconds, 35, 42);

        var sender = await h.StartAsync();
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var reading = Task.Run(async () =>
        {
            await foreach (var received in c.Inbox.ReadAllAsync(stop.Token))
            {
                break; // read, verified and ACKed by the inbox
            }
        });
        var sent = await sender.Waiter.SendAndWaitAsync(c.Id, SignalTypes.Completion, 0, timeout: TimeSpan.FromSeconds(20));
        Assert.Equal(AckWaitStatus.Completed, sent.Wait.Status);
        await reading;

        var ack = await h.Database.KeyTimeToLiveAsync(Keys.Ack(c.Id, sent.Delivery.MessageId));
        Assert.InRange(ack!.Value.TotalSeconds, 70, 77);
    }

    private static async Task<long> SequenceAsync(Harness h, string id)
    {
        var json = (string?)await h.Database.StringGetAsync(Keys.Heartbeat(id));
        using var doc = JsonDocument.Parse(json!);
        return doc.RootElement.GetProperty("sequence").GetInt64();
    }
}
