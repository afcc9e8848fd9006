using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Cfn.Coordination.Acks;
using Cfn.Coordination.Identity;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Signals;
using Cfn.Coordination.Tests.Infrastructure;
using StackExchange.Redis;

namespace Cfn.Coordination.Tests.Acks;

[Collection(RedisCollection.Name)]
public sealed class AckServiceTests(RedisServer server)
{
    [Fact]
    public async Task AcknowledgeAsync_NewSignal_WritesK3WithTsShapeAndSignature()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var acker = await h.StartAsync();
        await acker.SetIterationAsync(3);
        var signalId = TestIds.New("signal");

        var ack = await acker.Acks.AcknowledgeAsync(signalId, sender.Id, SignalTypes.Completion, null, 1);

        var key = $"blocking:ack:{acker.Id}:{signalId}";
        var raw = (string?)await h.Database.StringGetAsync(key);
        Assert.NotNull(raw);
        using var doc = JsonDocument.Parse(raw);
        var root = doc.RootElement;
        Assert.Equal(acker.Id, root.GetProperty("coordinatorId").GetString());
        Assert.Equal(signalId, root.GetProperty("signalId").GetString());
        Assert.Equal(JsonValueKind.Number, root.GetProperty("timestamp").ValueKind);
        var timestamp = root.GetProperty("timestamp").GetInt64();
        Assert.True(timestamp > 1_600_000_000_000, $"timestamp {timestamp} is not in ms since the epoch");
        Assert.Equal(3, root.GetProperty("iteration").GetInt64());
        Assert.Equal("received", root.GetProperty("status").GetString());
        var signature = root.GetProperty("signature").GetString();
        Assert.Matches("^[0-9a-f]{64}$", signature);
        Assert.Equal(TsHmac(Harness.Secret, $"{acker.Id}:{signalId}:{timestamp}:3"), signature);
        Assert.Equal("completion", root.GetProperty("metadata").GetProperty("signalType").GetString());

        Assert.Equal(acker.Id, ack.CoordinatorId);
        Assert.Equal(signalId, ack.SignalId);
        Assert.Equal(timestamp, ack.Timestamp);
        Assert.Equal(signature, ack.Signature);

        var ttl = await h.Database.KeyTimeToLiveAsync(key);
        Assert.NotNull(ttl);
        Assert.InRange(ttl.Value.TotalSeconds, 3590, 3600);
    }

    [Fact]
    public async Task AcknowledgeAsync_SignalWithPhasePayload_MetadataCarriesTypeAndPhase()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var acker = await h.StartAsync();
        var signal = new Signal
        {
            Timestamp = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(),
            SenderId = sender.Id,
            ReceiverId = acker.Id,
            Iteration = 2,
            Type = SignalTypes.Validation,
            Payload = JsonSerializer.SerializeToElement(new { phase = "loop-2-validation" }),
            MessageId = $"{sender.Id}:{acker.Id}:validation:2:12345",
        };

        var ack = await acker.Acks.AcknowledgeAsync(signal);

        Assert.Equal(signal.MessageId, ack.SignalId);
        Assert.Equal("validation", ack.Metadata?.SignalType);
        Assert.Equal("loop-2-validation", ack.Metadata?.Phase);
        var raw = (string?)await h.Database.StringGetAsync($"blocking:ack:{acker.Id}:{signal.MessageId}");
        Assert.NotNull(raw);
        using var doc = JsonDocument.Parse(raw);
        Assert.Equal("loop-2-validation", doc.RootElement.GetProperty("metadata").GetProperty("phase").GetString());
    }

    [Fact]
    public async Task AcknowledgeAsync_SignalForAnotherReceiver_ThrowsAndWritesNothing()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var acker = await h.StartAsync();
        var signal = new Signal
        {
            Timestamp = 1,
            SenderId = sender.Id,
            ReceiverId = TestIds.New("someone-else"),
            Iteration = 1,
            Type = SignalTypes.Completion,
            MessageId = TestIds.New("signal"),
        };

        await Assert.ThrowsAnyAsync<ArgumentException>(() => acker.Acks.AcknowledgeAsync(signal));

        Assert.False(await h.Database.KeyExistsAsync($"blocking:ack:{acker.Id}:{signal.MessageId}"));
    }

    [Fact]
    public async Task AcknowledgeAsync_Repeated_ReturnsStoredAckAndLogsCachedAck()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var acker = await h.StartAsync();
        var signalId = TestIds.New("signal");
        await acker.SetIterationAsync(1);
        var first = await acker.Acks.AcknowledgeAsync(signalId, sender.Id, SignalTypes.Completion, null, 1);

        // A new ACK now would carry iteration 2: the stored one (iteration 1) must come back instead.
        await acker.SetIterationAsync(2);
        var second = await acker.Acks.AcknowledgeAsync(signalId, sender.Id, SignalTypes.Completion, null, 1);

        Assert.Equal(first.Timestamp, second.Timestamp);
        Assert.Equal(first.Signature, second.Signature);
        Assert.Equal(1, second.Iteration);
        Assert.Equal(first, second);
        Assert.Contains(h.Messages, m => m.Contains("Signal already processed, returning cached ACK", StringComparison.Ordinal)
                                          && m.Contains(signalId, StringComparison.Ordinal));
        using var doc = JsonDocument.Parse((string)(await h.Database.StringGetAsync($"blocking:ack:{acker.Id}:{signalId}"))!);
        Assert.Equal(first.Signature, doc.RootElement.GetProperty("signature").GetString());
    }

    [Fact]
    public async Task AcknowledgeAsync_InvalidValuePlantedUnderOwnKey_ReplacedByGenuineAck()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var acker = await h.StartAsync();
        var signalId = TestIds.New("signal");
        var key = $"blocking:ack:{acker.Id}:{signalId}";
        await h.Database.StringSetAsync(key, "not json");

        var ack = await acker.Acks.AcknowledgeAsync(signalId, sender.Id, SignalTypes.Completion, null, 1);

        var raw = (string?)await h.Database.StringGetAsync(key);
        Assert.Equal(AckRejection.None, AckVerifier.Verify(h.Keys, raw, acker.Id, signalId, out var stored));
        Assert.Equal(ack, stored);
        Assert.Contains(h.Messages, m => m.Contains("ACK signature verification failed", StringComparison.Ordinal));
        var ttl = await h.Database.KeyTimeToLiveAsync(key);
        Assert.NotNull(ttl);
        Assert.InRange(ttl.Value.TotalSeconds, 3590, 3600);
    }

    [Fact]
    public async Task AcknowledgeAsync_MessageIdFormatSignalId_Accepted()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var acker = await h.StartAsync();
        var signalId = $"{sender.Id}:{acker.Id}:completion:3:1234567890";

        var ack = await acker.Acks.AcknowledgeAsync(signalId, sender.Id, SignalTypes.Completion, null, 1);

        Assert.Equal(signalId, ack.SignalId);
        Assert.True(await h.Database.KeyExistsAsync($"blocking:ack:{acker.Id}:{signalId}"));
        Assert.True(await sender.Acks.IsAcknowledgedAsync(acker.Id, signalId));
        Assert.True(await sender.Acks.IsAcknowledgedAsync(acker.Id, signalId, verify: true));
        Assert.Equal(ack, await acker.Acks.GetAckAsync(signalId));
    }

    [Theory]
    [InlineData("a*b")]
    [InlineData("a::b")]
    [InlineData(":a")]
    [InlineData("a b")]
    [InlineData("")]
    public async Task AcknowledgeAsync_InvalidSignalId_ThrowsAndWritesNothing(string signalId)
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var acker = await h.StartAsync();

        var e = await Assert.ThrowsAsync<InvalidIdException>(
            () => acker.Acks.AcknowledgeAsync(signalId, sender.Id, SignalTypes.Completion, null, 1));

        Assert.Equal("signalId", e.Field);
        Assert.Empty(await ScanAsync($"blocking:ack:{acker.Id}:*"));
    }

    [Fact]
    public async Task AcknowledgeAsync_TsRetryType_StoredAsRetryRequest()
    {
        // SPEC §2.3: one type set for signals and ACKs; the ACK-manager's "retry" is "retry_request".
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var acker = await h.StartAsync();
        var signalId = TestIds.New("signal");

        var ack = await acker.Acks.AcknowledgeAsync(signalId, sender.Id, "retry", null, 1);

        Assert.Equal(SignalTypes.RetryRequest, ack.Metadata?.SignalType);
        Assert.Equal(1, h.Metrics.SignalLatency.WithLabels(acker.Id, SignalTypes.RetryRequest).Count);
    }

    [Theory]
    [InlineData("bogus")]
    [InlineData("completion\nINFO forged log line")]
    public async Task AcknowledgeAsync_UnknownSignalType_RefusedAndWritesNothing(string signalType)
    {
        // The type becomes a metric label (bounded label sets, D9) and part of a log line (one line per event, D11).
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var acker = await h.StartAsync();
        var signalId = TestIds.New("signal");

        await Assert.ThrowsAnyAsync<ArgumentException>(
            () => acker.Acks.AcknowledgeAsync(signalId, sender.Id, signalType, null, 1));

        Assert.False(await h.Database.KeyExistsAsync($"blocking:ack:{acker.Id}:{signalId}"));
        Assert.DoesNotContain(h.Metrics.SignalLatency.GetAllLabelValues(), l => l[1] == signalType);
    }

    [Fact]
    public async Task AcknowledgeAsync_Success_LogsReceivedAndSentLines()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var acker = await h.StartAsync();
        var signalId = TestIds.New("signal");

        await acker.Acks.AcknowledgeAsync(signalId, sender.Id, SignalTypes.Completion, null, 1);

        var messages = h.Messages;
        var received = messages.ToList().FindIndex(m => m.Contains("Received signal, sending immediate ACK", StringComparison.Ordinal)
                                                        && m.Contains(signalId, StringComparison.Ordinal));
        var sent = messages.ToList().FindIndex(m => m.Contains("ACK sent successfully", StringComparison.Ordinal)
                                                    && m.Contains(signalId, StringComparison.Ordinal));
        Assert.True(received >= 0, "missing 'Received signal, sending immediate ACK'");
        Assert.True(sent > received, "missing 'ACK sent successfully' after the receipt line");
        Assert.Contains(acker.Id, messages[received], StringComparison.Ordinal);
        Assert.Contains(sender.Id, messages[received], StringComparison.Ordinal);
    }

    [Fact]
    public async Task AcknowledgeAsync_ViaInbox_ObservesLatencyLabelledByReceiverAndType()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var receiver = await h.StartAsync();
        await sender.Signals.SendAsync(receiver.Id, SignalTypes.Completion, 1);
        await sender.Signals.SendAsync(receiver.Id, SignalTypes.Error, 1);

        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        var count = 0;
        await foreach (var received in receiver.Inbox.ReadAllAsync(cts.Token))
        {
            if (++count == 2)
            {
                await receiver.Inbox.CompleteAsync(received);
                break;
            }
        }

        Assert.Equal(2, count);
        Assert.Equal(1, h.Metrics.SignalLatency.WithLabels(receiver.Id, "completion").Count);
        Assert.Equal(1, h.Metrics.SignalLatency.WithLabels(receiver.Id, "error").Count);
        var labelSets = h.Metrics.SignalLatency.GetAllLabelValues().ToList();
        Assert.All(labelSets, l => Assert.Equal(receiver.Id, l[0]));
        Assert.DoesNotContain(labelSets, l => l.Contains(sender.Id));
        var sum = h.Metrics.SignalLatency.WithLabels(receiver.Id, "completion").Sum;
        Assert.InRange(sum, 0, 60);
    }

    [Fact]
    public async Task AcknowledgeAsync_CachedAck_DoesNotObserveLatencyTwice()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var acker = await h.StartAsync();
        var signalId = TestIds.New("signal");
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();

        await acker.Acks.AcknowledgeAsync(signalId, sender.Id, SignalTypes.Completion, null, now);
        await acker.Acks.AcknowledgeAsync(signalId, sender.Id, SignalTypes.Completion, null, now);

        Assert.Equal(1, h.Metrics.SignalLatency.WithLabels(acker.Id, "completion").Count);
    }

    [Fact]
    public async Task AcknowledgeAsync_Success_WakesSenderChannel()
    {
        await using var h = Harness.Create(server);
        var senderId = TestIds.New("sender");
        var acker = await h.StartAsync();
        var signalId = TestIds.New("signal");
        var got = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        var subscriber = server.Multiplexer.GetSubscriber();
        var channel = RedisChannel.Literal($"cfn:events:{senderId}");
        await subscriber.SubscribeAsync(channel, (_, message) => got.TrySetResult(message!));
        try
        {
            await acker.Acks.AcknowledgeAsync(signalId, senderId, SignalTypes.Completion, null, 1);

            // The wake-up carries the stored ACK, exactly as it is in Redis.
            var stored = (string?)await h.Database.StringGetAsync(Keys.Ack(acker.Id, signalId));
            Assert.Equal($"ack {signalId} {acker.Id} {stored}", await got.Task.WaitAsync(TimeSpan.FromSeconds(10)));
        }
        finally
        {
            await subscriber.UnsubscribeAsync(channel);
        }
    }

    [Fact]
    public async Task GetAckAsync_OwnStoredAck_ReturnsItAndMissingReturnsNull()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var acker = await h.StartAsync();
        var signalId = TestIds.New("signal");

        Assert.Null(await acker.Acks.GetAckAsync(signalId));
        var ack = await acker.Acks.AcknowledgeAsync(signalId, sender.Id, SignalTypes.Completion, null, 1);

        Assert.Equal(ack, await acker.Acks.GetAckAsync(signalId));
        Assert.Null(await sender.Acks.GetAckAsync(signalId)); // only the caller's own ACK keys are read
    }

    public static TheoryData<string, string> Tamperings => new()
    {
        { "iteration", "bad_signature" },
        { "timestamp", "bad_signature" },
        { "signature", "bad_signature" },
        { "short_signature", "bad_signature" },
        { "no_signature", "missing_signature" },
        { "not_json", "malformed" },
    };

    [Theory]
    [MemberData(nameof(Tamperings))]
    public async Task GetAckAsync_TamperedStoredAck_ReturnsNullLogsAndCounts(string tampering, string reason)
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var acker = await h.StartAsync();
        var signalId = TestIds.New("signal");
        var ack = await acker.Acks.AcknowledgeAsync(signalId, sender.Id, SignalTypes.Completion, null, 1);
        var key = $"blocking:ack:{acker.Id}:{signalId}";
        var raw = (string)(await h.Database.StringGetAsync(key))!;
        var forged = tampering switch
        {
            "iteration" => raw.Replace("\"iteration\":0", "\"iteration\":7", StringComparison.Ordinal),
            "timestamp" => raw.Replace($"\"timestamp\":{ack.Timestamp}", $"\"timestamp\":{ack.Timestamp + 1}", StringComparison.Ordinal),
            "signature" => raw.Replace(ack.Signature!, new string('0', 64), StringComparison.Ordinal),
            "short_signature" => raw.Replace(ack.Signature!, "abc123", StringComparison.Ordinal),
            "no_signature" => raw.Replace($",\"signature\":\"{ack.Signature}\"", "", StringComparison.Ordinal),
            _ => "not json",
        };
        Assert.NotEqual(raw, forged);
        await h.Database.StringSetAsync(key, forged);

        var read = await acker.Acks.GetAckAsync(signalId);

        Assert.Null(read);
        Assert.Contains(h.Messages, m => m.Contains("ACK signature verification failed", StringComparison.Ordinal)
                                          && m.Contains(signalId, StringComparison.Ordinal));
        Assert.Equal(1, h.Metrics.AckVerificationFailures.WithLabels(acker.Id, reason).Value);
    }

    [Fact]
    public async Task IsAcknowledgedAsync_BeforeAndAfterAck_ReflectsExistence()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var acker = await h.StartAsync();
        var signalId = $"{sender.Id}:{acker.Id}:completion:1:{TestIds.New("t")}";

        Assert.False(await sender.Acks.IsAcknowledgedAsync(acker.Id, signalId));
        Assert.False(await sender.Acks.IsAcknowledgedAsync(acker.Id, signalId, verify: true));

        await acker.Acks.AcknowledgeAsync(signalId, sender.Id, SignalTypes.Completion, null, 1);

        Assert.True(await sender.Acks.IsAcknowledgedAsync(acker.Id, signalId));
        Assert.True(await sender.Acks.IsAcknowledgedAsync(acker.Id, signalId, verify: true));
        Assert.False(await sender.Acks.IsAcknowledgedAsync(sender.Id, signalId));
    }

    [Fact]
    public async Task IsAcknowledgedAsync_ForgedValue_TrueWithoutVerifyFalseWithVerify()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var ackerId = TestIds.New("acker");
        var signalId = TestIds.New("signal");
        await h.Database.StringSetAsync($"blocking:ack:{ackerId}:{signalId}", "{\"coordinatorId\":\"x\"}");

        Assert.True(await sender.Acks.IsAcknowledgedAsync(ackerId, signalId));
        Assert.False(await sender.Acks.IsAcknowledgedAsync(ackerId, signalId, verify: true));
    }

    [Theory]
    [InlineData("a*b", "sig-1")]
    [InlineData("a:b", "sig-1")]
    [InlineData("acker-1", "sig*")]
    public async Task IsAcknowledgedAsync_InvalidIds_ThrowInvalidIdException(string coordinatorId, string signalId)
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();

        await Assert.ThrowsAsync<InvalidIdException>(() => sender.Acks.IsAcknowledgedAsync(coordinatorId, signalId));
    }

    private static string TsHmac(string secret, string message) =>
        Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(secret), Encoding.UTF8.GetBytes(message)));

    private async Task<List<string>> ScanAsync(string pattern)
    {
        var keys = new List<string>();
        await foreach (var key in server.Server.KeysAsync(pattern: pattern, pageSize: 1000))
        {
            keys.Add(key!);
        }

        return keys;
    }
}
