using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Signals;
using Cfn.Coordination.Tests.Infrastructure;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Cfn.Coordination.Tests.Signals;

/// <summary>
/// Signals from the original TypeScript coordinators (issue 16, SPEC K2 and §2.1, D13). A TS sender writes only the K2
/// value <c>blocking:signal:{receiverId}</c> (plain SETEX, TS field order, no signature, no inbox entry) and its
/// idempotency record; these tests write exactly that with plain Redis commands, and check what the cfn receiver does
/// with it: with <c>CFN_TS_COMPAT</c> it is received once and ACKed in the shape the TS waiter verifies (§2.4), without
/// it it stays in Redis and is reported once; a graceful stop never deletes it.
/// </summary>
[Collection(RedisCollection.Name)]
public sealed class TsSignalTests(RedisServer server)
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);

    /// <summary>The K2 value as <c>sendSignal</c> writes it (blocking-coordination-signals.ts:239-252), in TS field order.</summary>
    private static (string Json, string MessageId) TsSignal(string senderId, string receiverId, int iteration = 2, string? extra = null)
    {
        var timestamp = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var messageId = $"{senderId}:{receiverId}:completion:{iteration}:{timestamp}";
        var json = string.Create(CultureInfo.InvariantCulture,
            $$$"""{"timestamp":{{{timestamp}}},"senderId":"{{{senderId}}}","receiverId":"{{{receiverId}}}","iteration":{{{iteration}}},"type":"completion","payload":{"phase":"loop-3","confidence":0.9},"messageId":"{{{messageId}}}"{{{extra}}}}""");
        return (json, messageId);
    }

    /// <summary>What the TS sender does: SETEX the K2 value, then SETEX its idempotency record (§2.1 steps 5 and 6).</summary>
    private static async Task SendAsTsAsync(IDatabase db, string receiverId, string json, string messageId)
    {
        await db.StringSetAsync(Keys.Signal(receiverId), json, TimeSpan.FromSeconds(86_400));
        await db.StringSetAsync(Keys.Idempotency(messageId), "1", TimeSpan.FromSeconds(86_400));
    }

    /// <summary>A TS coordinator's heartbeat (heartbeat-warning-system.ts:219-259): no timestamp, no instanceId.</summary>
    private static Task<bool> HeartbeatAsTsAsync(IDatabase db, string id) =>
        db.StringSetAsync(Keys.Heartbeat(id),
            $$$"""{"coordinatorId":"{{{id}}}","lastHeartbeat":{{{DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()}}},"sequence":1,"iteration":1,"metadata":{"phase":"p"}}""",
            TimeSpan.FromSeconds(300));

    /// <summary>
    /// The TS waiter's verification (§2.4), written here independently of cfn's code: HMAC-SHA256 keyed with the UTF-8
    /// bytes of the secret over <c>{coordinatorId}:{signalId}:{timestamp}:{iteration}</c>, lowercase hex.
    /// </summary>
    private static string TsHmac(string secret, string message) =>
        Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(secret), Encoding.UTF8.GetBytes(message)));

    /// <summary>A receiver in compat mode whose idle inbox looks at K2 every 200 ms.</summary>
    private static Harness CompatHarness(RedisServer server) => Harness.Create(server, o =>
    {
        o.TsCompat = true;
        o.AckFallbackPollInterval = TimeSpan.FromMilliseconds(200);
    });

    private static async Task<List<ReceivedSignal>> ReadForAsync(Coordinator receiver, TimeSpan duration, int stopAfter = int.MaxValue)
    {
        var got = new List<ReceivedSignal>();
        using var stop = new CancellationTokenSource(duration);
        try
        {
            await foreach (var received in receiver.Inbox.ReadAllAsync(stop.Token))
            {
                got.Add(received);
                if (got.Count >= stopAfter)
                {
                    break;
                }
            }
        }
        catch (OperationCanceledException)
        {
        }

        return got;
    }

    [Fact]
    public void TsHmac_GivesTheSpecTestVectors()
    {
        // The verifier these tests use is the TS one: it reproduces both vectors of SPEC §2.4.
        Assert.Equal("0e946afa7c29ba0c872a613cc9522f1f6fd5fbad2ef1100fd14eb93955d27908",
            TsHmac("test-secret-key", "coord-1:signal-abc:1696969600000:1"));
        Assert.Equal("ea446c79eb3218ef42e71867ae3f1902d7af508c25772c13385b64f851c85325",
            TsHmac("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "coordinator-2:coordinator-1:coordinator-2:completion:3:1234567890:1696889235123:3"));
    }

    [Fact]
    public async Task Compat_TsSignalWrittenOnlyToK2_ReceivedExactlyOnce_AckedInTheShapeTheTsWaiterVerifies()
    {
        await using var h = CompatHarness(server);
        var receiver = await h.StartAsync();
        var tsSender = TestIds.New("ts-coordinator");
        await HeartbeatAsTsAsync(h.Database, tsSender);
        var (json, messageId) = TsSignal(tsSender, receiver.Id);

        // The receiver is idle when the signal comes: no wake-up is published by a TS sender.
        var reading = ReadForAsync(receiver, TimeSpan.FromSeconds(4));
        await Task.Delay(500);
        await SendAsTsAsync(h.Database, receiver.Id, json, messageId);
        var got = await reading;

        var only = Assert.Single(got);
        Assert.Equal(messageId, only.Signal.MessageId);
        Assert.Equal(tsSender, only.Signal.SenderId);
        Assert.Equal("loop-3", only.Signal.Payload!.Value.GetProperty("phase").GetString());

        // The ACK, read as the TS waiter reads it: GET blocking:ack:{receiver}:{messageId}, JSON, HMAC over its own fields.
        var ackJson = (string?)await h.Database.StringGetAsync(Keys.Ack(receiver.Id, messageId));
        Assert.NotNull(ackJson);
        using var ack = JsonDocument.Parse(ackJson);
        var root = ack.RootElement;
        Assert.Equal(receiver.Id, root.GetProperty("coordinatorId").GetString());
        Assert.Equal(messageId, root.GetProperty("signalId").GetString());
        Assert.Equal("received", root.GetProperty("status").GetString());
        Assert.Equal("completion", root.GetProperty("metadata").GetProperty("signalType").GetString());
        Assert.Equal("loop-3", root.GetProperty("metadata").GetProperty("phase").GetString());
        var signed = string.Create(CultureInfo.InvariantCulture,
            $"{receiver.Id}:{messageId}:{root.GetProperty("timestamp").GetInt64()}:{root.GetProperty("iteration").GetInt64()}");
        Assert.Equal(TsHmac(Harness.Secret, signed), root.GetProperty("signature").GetString());
        // Kept for the TS waiter's polling (ACK_TTL_SECONDS), not cut to the cfn retention.
        Assert.InRange((await h.Database.KeyTimeToLiveAsync(Keys.Ack(receiver.Id, messageId)))!.Value.TotalSeconds, 3500, 3600);

        // Consumed: the inbox and K2 are empty, and it was counted as accepted unsigned.
        await receiver.Inbox.CompleteAsync(only);
        Assert.False(await h.Database.KeyExistsAsync(Keys.Signal(receiver.Id)));
        Assert.Equal(0, await h.Database.StreamLengthAsync(Keys.Inbox(receiver.Id)));
        Assert.Equal(1, h.Metrics.TsSignals.WithLabels(receiver.Id, "accepted_unsigned").Value);
        Assert.Contains(h.Messages, m => m.Contains("Accepting unsigned TS signal", StringComparison.Ordinal) && m.Contains(messageId, StringComparison.Ordinal));

        // Read again: nothing comes a second time.
        Assert.Empty(await ReadForAsync(receiver, TimeSpan.FromSeconds(1.5)));
    }

    [Fact]
    public async Task Compat_TsSignalBesideCfnSignals_EachReceivedOnce_NoneOverwritten()
    {
        await using var h = CompatHarness(server);
        var receiver = await h.StartAsync();
        var cfnSender = await h.StartAsync();
        var tsSender = TestIds.New("ts-coordinator");
        await HeartbeatAsTsAsync(h.Database, tsSender);

        // A cfn signal pending, then the TS write (it overwrites K2, as TS does), then another cfn signal: the second cfn
        // send must not overwrite the TS signal in K2 before it is taken.
        var first = await cfnSender.Signals.SendAsync(receiver.Id, SignalTypes.Completion, 1);
        var (json, messageId) = TsSignal(tsSender, receiver.Id);
        await SendAsTsAsync(h.Database, receiver.Id, json, messageId);
        var second = await cfnSender.Signals.SendAsync(receiver.Id, SignalTypes.Completion, 2);
        Assert.Equal(json, (string?)await h.Database.StringGetAsync(Keys.Signal(receiver.Id)));

        var got = await ReadForAsync(receiver, TimeSpan.FromSeconds(4));

        Assert.Equal(
            new[] { first.MessageId, messageId, second.MessageId }.Order(StringComparer.Ordinal),
            got.Select(g => g.Signal.MessageId).Order(StringComparer.Ordinal));
        Assert.True(await h.Database.KeyExistsAsync(Keys.Ack(receiver.Id, messageId)));
    }

    [Fact]
    public async Task Compat_TsSignalWithAForgedSignature_RefusedAndNotAcked()
    {
        await using var h = CompatHarness(server);
        var receiver = await h.StartAsync();
        var tsSender = TestIds.New("ts-coordinator");
        var (json, messageId) = TsSignal(tsSender, receiver.Id, extra: $",\"signature\":\"{new string('a', 64)}\"");
        await SendAsTsAsync(h.Database, receiver.Id, json, messageId);

        Assert.Empty(await ReadForAsync(receiver, TimeSpan.FromSeconds(1.5)));

        Assert.False(await h.Database.KeyExistsAsync(Keys.Ack(receiver.Id, messageId)));
        Assert.Equal(1, h.Metrics.AckVerificationFailures.WithLabels(receiver.Id, "signal_signature").Value);
        Assert.Contains(h.Messages, m => m.Contains("Invalid signal signature", StringComparison.Ordinal) && m.Contains(messageId, StringComparison.Ordinal));
    }

    [Fact]
    public async Task Compat_TsSignalSignedWithTheFaqScheme_Accepted()
    {
        await using var h = CompatHarness(server);
        var receiver = await h.StartAsync();
        var tsSender = TestIds.New("ts-coordinator");
        var timestamp = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var messageId = $"{tsSender}:{receiver.Id}:completion:1:{timestamp}";
        // The FAQ scheme (SPEC K2): HMAC over {senderId}:{receiverId}:{type}:{timestamp}.
        var signature = TsHmac(Harness.Secret, $"{tsSender}:{receiver.Id}:completion:{timestamp}");
        var json = $$"""{"timestamp":{{timestamp}},"senderId":"{{tsSender}}","receiverId":"{{receiver.Id}}","iteration":1,"type":"completion","messageId":"{{messageId}}","signature":"{{signature}}"}""";
        await SendAsTsAsync(h.Database, receiver.Id, json, messageId);

        var got = Assert.Single(await ReadForAsync(receiver, TimeSpan.FromSeconds(3), stopAfter: 1));

        Assert.Equal(messageId, got.Signal.MessageId);
        Assert.Equal(1, h.Metrics.TsSignals.WithLabels(receiver.Id, "accepted_signed").Value);
        Assert.Equal(0, h.Metrics.TsSignals.WithLabels(receiver.Id, "accepted_unsigned").Value);
    }

    [Fact]
    public async Task CompatOff_TsSignalLeftInK2Untouched_ReportedOnce_CfnSignalsStillFlow()
    {
        await using var h = Harness.Create(server, o => o.InboxFallbackPollInterval = TimeSpan.FromMilliseconds(200));
        var receiver = await h.StartAsync();
        var cfnSender = await h.StartAsync();
        var tsSender = TestIds.New("ts-coordinator");
        var (json, messageId) = TsSignal(tsSender, receiver.Id);
        await SendAsTsAsync(h.Database, receiver.Id, json, messageId);
        var cfn = await cfnSender.Signals.SendAsync(receiver.Id, SignalTypes.Completion, 1);

        // Several idle periods pass while reading: the cfn signal is received and consumed, the TS one is not.
        var got = await ReadForAsync(receiver, TimeSpan.FromSeconds(2));

        Assert.Equal(cfn.MessageId, Assert.Single(got).Signal.MessageId);
        Assert.Equal(json, (string?)await h.Database.StringGetAsync(Keys.Signal(receiver.Id)));
        Assert.InRange((await h.Database.KeyTimeToLiveAsync(Keys.Signal(receiver.Id)))!.Value.TotalSeconds, 86_000, 86_400);
        Assert.False(await h.Database.KeyExistsAsync(Keys.Ack(receiver.Id, messageId)));
        Assert.Single(h.Messages, m => m.Contains("CFN_TS_COMPAT=false", StringComparison.Ordinal) && m.Contains(messageId, StringComparison.Ordinal));
        Assert.Equal(1, h.Metrics.TsSignals.WithLabels(receiver.Id, "left_compat_off").Value);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task GracefulStop_NeverDeletesAnUnconsumedTsSignal_TheNextInstanceGetsIt(bool compat)
    {
        await using var h = Harness.Create(server, o =>
        {
            o.TsCompat = compat;
            o.AckFallbackPollInterval = TimeSpan.FromMilliseconds(200);
        });
        var id = TestIds.New("receiver");
        var first = await h.StartAsync(id);
        var tsSender = TestIds.New("ts-coordinator");
        var (json, messageId) = TsSignal(tsSender, id);
        await SendAsTsAsync(h.Database, id, json, messageId);

        await first.StopAsync();

        Assert.Equal(json, (string?)await h.Database.StringGetAsync(Keys.Signal(id)));
        Assert.Contains(h.Messages, m => m.Contains("stopped with a TS signal", StringComparison.Ordinal) && m.Contains(id, StringComparison.Ordinal));

        // The next instance under the same ID, in compat mode, receives it.
        await using var next = CompatHarness(server);
        var second = await next.StartAsync(id);
        var got = Assert.Single(await ReadForAsync(second, TimeSpan.FromSeconds(3), stopAfter: 1));
        Assert.Equal(messageId, got.Signal.MessageId);
    }

    [Fact]
    public async Task Compat_DeadReceiverWithATsSignalInK2_HandedToTheReplacement_WhichReceivesIt()
    {
        await using var h = CompatHarness(server);
        var dead = await h.StartAsync();
        var replacement = await h.StartAsync();
        var tsSender = TestIds.New("ts-coordinator");
        await HeartbeatAsTsAsync(h.Database, tsSender); // a sender still there: its signal is worth handing over
        var (json, messageId) = TsSignal(tsSender, dead.Id);
        await SendAsTsAsync(h.Database, dead.Id, json, messageId);

        var moved = await new SignalHandover(h.Redis, h.Keys, new RecoveryMetrics(h.Registry), h.LoggerFactory.CreateLogger("handover"))
            .MoveAllAsync(dead.Id, replacement.Id);

        Assert.Equal(1, moved);
        Assert.False(await h.Database.KeyExistsAsync(Keys.Signal(dead.Id)));
        var got = Assert.Single(await ReadForAsync(replacement, TimeSpan.FromSeconds(3), stopAfter: 1));
        Assert.Equal(messageId, got.Signal.HandedOverFrom);
        Assert.Equal(tsSender, got.Signal.SenderId);
        Assert.Equal(replacement.Id, got.Signal.ReceiverId);
    }

    [Fact]
    public async Task Cleanup_KeepsAnUnconsumedTsSignal_OnlyTheOperatorsForcedCleanupDeletesIt()
    {
        await using var h = Harness.Create(server);
        var dead = await h.StartAsync();
        var cfnSender = await h.StartAsync();
        await cfnSender.Signals.SendAsync(dead.Id, SignalTypes.Completion, 1); // a cfn signal pending too: it goes with the inbox
        var (json, messageId) = TsSignal(TestIds.New("ts-coordinator"), dead.Id);
        await SendAsTsAsync(h.Database, dead.Id, json, messageId);
        await dead.AbandonAsync();
        var cleanup = new CoordinatorCleanup(h.Redis, new RecoveryOptions(), new RecoveryMetrics(h.Registry));

        // As an escalation's last step cleans (its liveness check forced) and as the batch cleanup does: the TS signal stays.
        var escalationCleanup = await cleanup.CleanupAsync(dead.Id, force: true);
        Assert.False(escalationCleanup.Refused);
        Assert.Equal(json, (string?)await h.Database.StringGetAsync(Keys.Signal(dead.Id)));
        Assert.False(await h.Database.KeyExistsAsync(Keys.Inbox(dead.Id)));
        Assert.False(await h.Database.KeyExistsAsync(Keys.Heartbeat(dead.Id)));
        Assert.Contains(h.Messages, m => m.Contains("Cleanup kept a TS signal", StringComparison.Ordinal) && m.Contains(dead.Id, StringComparison.Ordinal));

        // The operator's forced cleanup (POST /api/coordinators/{id}/cleanup) deletes it.
        await using var handler = new TimeoutHandler(h.Redis, h.Keys, new RecoveryOptions(), h.Metrics, new RecoveryMetrics(h.Registry), "handler-test");
        await handler.CleanupAsync(dead.Id, force: true);
        Assert.False(await h.Database.KeyExistsAsync(Keys.Signal(dead.Id)));
    }

    [Fact]
    public async Task Cleanup_AK2ThatMirrorsTheInbox_IsDeletedAsBefore()
    {
        await using var h = Harness.Create(server);
        var dead = await h.StartAsync();
        var cfnSender = await h.StartAsync();
        await cfnSender.Signals.SendAsync(dead.Id, SignalTypes.Completion, 1);
        await dead.AbandonAsync();

        await new CoordinatorCleanup(h.Redis, new RecoveryOptions(), new RecoveryMetrics(h.Registry)).CleanupAsync(dead.Id, force: true);

        Assert.False(await h.Database.KeyExistsAsync(Keys.Signal(dead.Id)));
        Assert.False(await h.Database.KeyExistsAsync(Keys.Inbox(dead.Id)));
        Assert.DoesNotContain(h.Messages, m => m.Contains("Cleanup kept a TS signal", StringComparison.Ordinal));
    }
}
