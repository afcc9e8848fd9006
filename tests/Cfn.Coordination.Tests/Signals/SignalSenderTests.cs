using System.Text;
using System.Text.Json;
using Cfn.Coordination.Identity;
using Cfn.Coordination.Security;
using Cfn.Coordination.Signals;
using Cfn.Coordination.Tests.Infrastructure;
using Microsoft.Extensions.Time.Testing;
using StackExchange.Redis;

namespace Cfn.Coordination.Tests.Signals;

[Collection(RedisCollection.Name)]
public sealed class SignalSenderTests(RedisServer server)
{
    [Fact]
    public async Task SendAsync_ValidSignal_ReturnsResultFields()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var receiverId = TestIds.New("recv");

        var result = await sender.Signals.SendAsync(receiverId, SignalTypes.Completion, 3);

        Assert.True(result.Success);
        Assert.False(result.IsDuplicate);
        Assert.True(result.Timestamp > 0);
        Assert.Equal($"blocking:signal:{receiverId}", result.Key);
        Assert.False(string.IsNullOrEmpty(result.MessageId));
        Assert.Equal($"{sender.Id}:{receiverId}:completion:3:{result.Timestamp}", result.MessageId);
        Assert.True(await h.Database.KeyExistsAsync(result.Key));
    }

    [Fact]
    public async Task SendAsync_NoPayload_K2JsonHasProtocolFieldsAndNoPayload()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var receiverId = TestIds.New("recv");

        var result = await sender.Signals.SendAsync(receiverId, SignalTypes.Completion, 2);

        using var doc = await ReadJsonAsync(h, $"blocking:signal:{receiverId}");
        var root = doc.RootElement;
        Assert.Equal(result.Timestamp, root.GetProperty("timestamp").GetInt64());
        Assert.Equal(sender.Id, root.GetProperty("senderId").GetString());
        Assert.Equal(receiverId, root.GetProperty("receiverId").GetString());
        Assert.Equal(2, root.GetProperty("iteration").GetInt32());
        Assert.Equal("completion", root.GetProperty("type").GetString());
        Assert.Equal(result.MessageId, root.GetProperty("messageId").GetString());
        var signature = root.GetProperty("signature").GetString();
        Assert.Matches("^[0-9a-f]{64}$", signature);
        Assert.Equal(h.Keys.Sign(SignedMessages.Signal(sender.Id, receiverId, "completion", result.Timestamp)), signature);
        Assert.False(root.TryGetProperty("payload", out _), "payload must be omitted when none was given");
    }

    [Fact]
    public async Task SendAsync_WithPayload_K2JsonCarriesPayload()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var receiverId = TestIds.New("recv");
        using var payload = JsonDocument.Parse("""{"phase":"loop-2-validation","confidence":0.85}""");

        await sender.Signals.SendAsync(receiverId, SignalTypes.StatusUpdate, 1, payload.RootElement);

        using var doc = await ReadJsonAsync(h, $"blocking:signal:{receiverId}");
        var stored = doc.RootElement.GetProperty("payload");
        Assert.Equal("loop-2-validation", stored.GetProperty("phase").GetString());
        Assert.Equal(0.85, stored.GetProperty("confidence").GetDouble());
        Assert.Equal("status_update", doc.RootElement.GetProperty("type").GetString());
    }

    [Fact]
    public async Task SendAsync_ValidSignal_K2TtlCloseTo86400Seconds()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var receiverId = TestIds.New("recv");

        await sender.Signals.SendAsync(receiverId, SignalTypes.Completion, 1);

        var ttl = await h.Database.KeyTimeToLiveAsync($"blocking:signal:{receiverId}");
        Assert.NotNull(ttl);
        Assert.InRange(ttl.Value.TotalSeconds, 86_390, 86_400);
    }

    [Fact]
    public async Task SendAsync_RetryTypeAlias_StoredAsRetryRequest()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var receiverId = TestIds.New("recv");

        var result = await sender.Signals.SendAsync(receiverId, "retry", 1);

        Assert.Contains(":retry_request:", result.MessageId, StringComparison.Ordinal);
        using var doc = await ReadJsonAsync(h, $"blocking:signal:{receiverId}");
        Assert.Equal("retry_request", doc.RootElement.GetProperty("type").GetString());
    }

    [Fact]
    public async Task SendAsync_SameIdempotencyKey_SecondIsDuplicateWithOneEntryAndOneAck()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var receiver = await h.StartAsync();

        var first = await sender.Signals.SendAsync(receiver.Id, SignalTypes.Completion, 4, idempotencyKey: "attempt-key-1");
        var second = await sender.Signals.SendAsync(receiver.Id, SignalTypes.Completion, 4, idempotencyKey: "attempt-key-1");

        Assert.True(first.Success);
        Assert.False(first.IsDuplicate);
        Assert.True(second.Success);
        Assert.True(second.IsDuplicate);
        Assert.Equal(first.MessageId, second.MessageId);
        Assert.Equal($"{sender.Id}:{receiver.Id}:completion:4:attempt-key-1", first.MessageId);
        Assert.Equal(1, await h.Database.StreamLengthAsync($"blocking:inbox:{receiver.Id}"));
        Assert.Contains(h.Messages, m => m.Contains("Duplicate signal detected, skipping", StringComparison.Ordinal));
        Assert.Equal(1, h.Metrics.SignalsSent.WithLabels(sender.Id, "completion").Value);

        // The receiver consumes everything there is: one signal, one ACK.
        var received = await ReadOneAndCompleteAsync(receiver);
        Assert.Equal(first.MessageId, received.Signal.MessageId);
        Assert.Equal(0, await h.Database.StreamLengthAsync($"blocking:inbox:{receiver.Id}"));
        var ackKeys = await ScanAsync($"blocking:ack:{receiver.Id}:*");
        Assert.Equal([$"blocking:ack:{receiver.Id}:{first.MessageId}"], ackKeys);

        // A resend after consumption is still recognised (the idempotency record outlives the inbox entry).
        var third = await sender.Signals.SendAsync(receiver.Id, SignalTypes.Completion, 4, idempotencyKey: "attempt-key-1");
        Assert.True(third.IsDuplicate);
        Assert.Equal(0, await h.Database.StreamLengthAsync($"blocking:inbox:{receiver.Id}"));
        Assert.False(await h.Database.KeyExistsAsync($"blocking:signal:{receiver.Id}"));
    }

    [Fact]
    public async Task SendAsync_NoIdempotencyKey_TwoSendsAreTwoMessages()
    {
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var h = Harness.Create(server, time: clock);
        var sender = await h.StartAsync();
        var receiverId = TestIds.New("recv");

        var first = await sender.Signals.SendAsync(receiverId, SignalTypes.Completion, 1);
        clock.Advance(TimeSpan.FromMilliseconds(5));
        var second = await sender.Signals.SendAsync(receiverId, SignalTypes.Completion, 1);

        Assert.False(first.IsDuplicate);
        Assert.False(second.IsDuplicate);
        Assert.NotEqual(first.MessageId, second.MessageId);
        Assert.Equal(2, await h.Database.StreamLengthAsync($"blocking:inbox:{receiverId}"));
        Assert.Equal(2, h.Metrics.SignalsSent.WithLabels(sender.Id, "completion").Value);
    }

    [Fact]
    public async Task SendAsync_TwoSendsInSameMillisecondWithoutKey_AreTwoMessages()
    {
        // The clock is frozen: both sends see the same millisecond, as two quick sends often do on a real clock.
        // "Without [an idempotency key] every call is a new message" (SignalSender.SendAsync docs), and D4.
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var h = Harness.Create(server, time: clock);
        var sender = await h.StartAsync();
        var receiverId = TestIds.New("recv");

        var first = await sender.Signals.SendAsync(receiverId, SignalTypes.Completion, 1);
        var second = await sender.Signals.SendAsync(receiverId, SignalTypes.Completion, 1);

        Assert.False(first.IsDuplicate);
        Assert.False(second.IsDuplicate, $"the second send was dropped as a duplicate of {first.MessageId}");
        Assert.NotEqual(first.MessageId, second.MessageId);
        Assert.Equal(2, await h.Database.StreamLengthAsync($"blocking:inbox:{receiverId}"));
    }

    [Fact]
    public async Task SendAsync_ConcurrentSendsWithoutIdempotencyKey_EveryCallIsANewMessage()
    {
        // The contract: "without [an idempotency key] every call is a new message" (SignalSender.SendAsync docs), and
        // D4: signals never get lost. Concurrent sends of the same type and iteration must all be delivered.
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var receiverId = TestIds.New("recv");
        const int count = 20;

        var results = await Task.WhenAll(Enumerable.Range(0, count)
            .Select(_ => sender.Signals.SendAsync(receiverId, SignalTypes.Completion, 1)));

        Assert.All(results, r => Assert.False(r.IsDuplicate, $"{r.MessageId} was reported as a duplicate (signal dropped)"));
        Assert.Equal(count, results.Select(r => r.MessageId).Distinct(StringComparer.Ordinal).Count());
        Assert.Equal(count, await h.Database.StreamLengthAsync($"blocking:inbox:{receiverId}"));
    }

    [Theory]
    [InlineData("a*b")]
    [InlineData("a:b")]
    [InlineData("")]
    [InlineData("a b")]
    [InlineData("a?b")]
    [InlineData("0123456789012345678901234567890123456789012345678901234567890123x")]
    public async Task SendAsync_InvalidReceiverId_ThrowsNamingFieldAndWritesNothing(string receiverId)
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();

        var e = await Assert.ThrowsAsync<InvalidIdException>(() => sender.Signals.SendAsync(receiverId, SignalTypes.Completion, 1));

        Assert.Equal("receiverId", e.Field);
        Assert.Equal("receiverId", e.ParamName);
        Assert.Contains("receiverId", e.Message, StringComparison.Ordinal);
        Assert.False(await h.Database.KeyExistsAsync($"blocking:signal:{receiverId}"));
        Assert.False(await h.Database.KeyExistsAsync($"blocking:inbox:{receiverId}"));
        Assert.Empty(await ScanAsync($"blocking:idempotency:{sender.Id}:*"));
        Assert.Equal(1, h.Metrics.SignalsFailed.WithLabels(sender.Id, "completion", "validation").Value);
        Assert.Equal(0, h.Metrics.SignalsSent.WithLabels(sender.Id, "completion").Value);
    }

    [Fact]
    public async Task SendAsync_NullReceiverId_ThrowsInvalidIdException()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();

        var e = await Assert.ThrowsAsync<InvalidIdException>(() => sender.Signals.SendAsync(null!, SignalTypes.Completion, 1));

        Assert.Equal("receiverId", e.Field);
        Assert.Equal(1, h.Metrics.SignalsFailed.WithLabels(sender.Id, "completion", "validation").Value);
    }

    [Theory]
    [InlineData("bogus")]
    [InlineData("COMPLETION")]
    [InlineData("")]
    public async Task SendAsync_UnknownType_RefusedAndWritesNothing(string type)
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var receiverId = TestIds.New("recv");

        var e = await Assert.ThrowsAsync<InvalidIdException>(() => sender.Signals.SendAsync(receiverId, type, 1));

        Assert.Equal("type", e.Field);
        Assert.False(await h.Database.KeyExistsAsync($"blocking:signal:{receiverId}"));
        Assert.False(await h.Database.KeyExistsAsync($"blocking:inbox:{receiverId}"));
        Assert.Empty(await ScanAsync($"blocking:idempotency:{sender.Id}:*"));
        Assert.Equal(1, h.Metrics.SignalsFailed.WithLabels(sender.Id, "unknown", "validation").Value);
    }

    [Theory]
    [InlineData("a:b")]
    [InlineData("key*")]
    [InlineData("")]
    public async Task SendAsync_InvalidIdempotencyKey_ThrowsNamingFieldAndWritesNothing(string idempotencyKey)
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var receiverId = TestIds.New("recv");

        var e = await Assert.ThrowsAsync<InvalidIdException>(
            () => sender.Signals.SendAsync(receiverId, SignalTypes.Completion, 1, idempotencyKey: idempotencyKey));

        Assert.Equal("idempotencyKey", e.Field);
        Assert.False(await h.Database.KeyExistsAsync($"blocking:signal:{receiverId}"));
        Assert.False(await h.Database.KeyExistsAsync($"blocking:inbox:{receiverId}"));
        Assert.Equal(1, h.Metrics.SignalsFailed.WithLabels(sender.Id, "completion", "validation").Value);
    }

    [Fact]
    public async Task SendAsync_OversizedPayload_ThrowsArgumentExceptionNamingPayloadAndWritesNothing()
    {
        await using var h = Harness.Create(server, o => o.MaxPayloadBytes = 1024);
        var sender = await h.StartAsync();
        var receiverId = TestIds.New("recv");
        var payload = JsonSerializer.SerializeToElement(new { blob = new string('x', 2048) });

        var e = await Assert.ThrowsAsync<ArgumentException>(
            () => sender.Signals.SendAsync(receiverId, SignalTypes.Completion, 1, payload));

        Assert.Equal("payload", e.ParamName);
        Assert.False(await h.Database.KeyExistsAsync($"blocking:signal:{receiverId}"));
        Assert.False(await h.Database.KeyExistsAsync($"blocking:inbox:{receiverId}"));
        Assert.Empty(await ScanAsync($"blocking:idempotency:{sender.Id}:*"));
        Assert.Equal(1, h.Metrics.SignalsFailed.WithLabels(sender.Id, "completion", "validation").Value);
        Assert.Equal(0, h.Metrics.SignalsSent.WithLabels(sender.Id, "completion").Value);
    }

    [Fact]
    public async Task SendAsync_PayloadWithinLimit_IsAccepted()
    {
        await using var h = Harness.Create(server, o => o.MaxPayloadBytes = 1024);
        var sender = await h.StartAsync();
        var receiverId = TestIds.New("recv");
        var payload = JsonSerializer.SerializeToElement(new { blob = new string('x', 200) });

        var result = await sender.Signals.SendAsync(receiverId, SignalTypes.Completion, 1, payload);

        Assert.True(result.Success);
        Assert.Equal(1, await h.Database.StreamLengthAsync($"blocking:inbox:{receiverId}"));
    }

    [Fact]
    public async Task SendAsync_PayloadExactlyAtLimit_IsAccepted()
    {
        // MaxPayloadBytes is "the largest signal payload, as serialized JSON bytes": a payload of exactly that size is allowed.
        await using var h = Harness.Create(server, o => o.MaxPayloadBytes = 1024);
        var sender = await h.StartAsync();
        var receiverId = TestIds.New("recv");
        var payload = JsonSerializer.SerializeToElement(new { blob = new string('x', 1024 - 11) });
        Assert.Equal(1024, Encoding.UTF8.GetByteCount(payload.GetRawText()));

        var result = await sender.Signals.SendAsync(receiverId, SignalTypes.Completion, 1, payload);

        Assert.True(result.Success);
        Assert.Equal(1, await h.Database.StreamLengthAsync($"blocking:inbox:{receiverId}"));
    }

    [Fact]
    public async Task SendAsync_NonAsciiPayloadOverByteLimit_Refused()
    {
        await using var h = Harness.Create(server, o => o.MaxPayloadBytes = 1024);
        var sender = await h.StartAsync();
        var receiverId = TestIds.New("recv");
        using var doc = JsonDocument.Parse("{\"text\":\"" + new string('\u00e9', 700) + "\"}");
        Assert.True(Encoding.UTF8.GetByteCount(doc.RootElement.GetRawText()) > 1024);

        var e = await Assert.ThrowsAsync<ArgumentException>(
            () => sender.Signals.SendAsync(receiverId, SignalTypes.Completion, 1, doc.RootElement));

        Assert.Equal("payload", e.ParamName);
        Assert.False(await h.Database.KeyExistsAsync($"blocking:inbox:{receiverId}"));
    }

    [Fact]
    public async Task SendAsync_NegativeIteration_RefusedAndWritesNothing()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var receiverId = TestIds.New("recv");

        var e = await Assert.ThrowsAsync<ArgumentOutOfRangeException>(
            () => sender.Signals.SendAsync(receiverId, SignalTypes.Completion, -1));

        Assert.Equal("iteration", e.ParamName);
        Assert.False(await h.Database.KeyExistsAsync($"blocking:inbox:{receiverId}"));
        Assert.Equal(1, h.Metrics.SignalsFailed.WithLabels(sender.Id, "completion", "validation").Value);
    }

    [Fact]
    public async Task SendAsync_Success_CountsSignalsSentPerType()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var receiverId = TestIds.New("recv");

        await sender.Signals.SendAsync(receiverId, SignalTypes.Completion, 1);
        await sender.Signals.SendAsync(receiverId, SignalTypes.Error, 1);
        await sender.Signals.SendAsync(receiverId, SignalTypes.Error, 2);

        Assert.Equal(1, h.Metrics.SignalsSent.WithLabels(sender.Id, "completion").Value);
        Assert.Equal(2, h.Metrics.SignalsSent.WithLabels(sender.Id, "error").Value);
        Assert.Contains(h.Messages, m => m.Contains("Signal sent successfully", StringComparison.Ordinal)
                                          && m.Contains(receiverId, StringComparison.Ordinal));
    }

    [Fact]
    public async Task SendAsync_Success_PublishesWakeUpOnReceiverChannel()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var receiverId = TestIds.New("recv");
        var got = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        var subscriber = server.Multiplexer.GetSubscriber();
        var channel = RedisChannel.Literal($"cfn:events:{receiverId}");
        await subscriber.SubscribeAsync(channel, (_, message) => got.TrySetResult(message!));
        try
        {
            var result = await sender.Signals.SendAsync(receiverId, SignalTypes.Completion, 1);

            var message = await got.Task.WaitAsync(TimeSpan.FromSeconds(10));
            Assert.Equal($"signal {result.MessageId}", message);
        }
        finally
        {
            await subscriber.UnsubscribeAsync(channel);
        }
    }

    private static async Task<JsonDocument> ReadJsonAsync(Harness h, string key)
    {
        var raw = (string?)await h.Database.StringGetAsync(key);
        Assert.NotNull(raw);
        return JsonDocument.Parse(raw);
    }

    private async Task<List<string>> ScanAsync(string pattern)
    {
        var keys = new List<string>();
        await foreach (var key in server.Server.KeysAsync(pattern: pattern, pageSize: 1000))
        {
            keys.Add(key!);
        }

        return keys;
    }

    private static async Task<ReceivedSignal> ReadOneAndCompleteAsync(Coordinator receiver)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        await foreach (var received in receiver.Inbox.ReadAllAsync(cts.Token))
        {
            await receiver.Inbox.CompleteAsync(received);
            return received;
        }

        Assert.Fail("no signal arrived");
        return null!;
    }
}
