using System.Text.Json;
using Cfn.Coordination.Acks;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Security;
using Cfn.Coordination.Signals;
using Cfn.Coordination.Tests.Infrastructure;
using StackExchange.Redis;

namespace Cfn.Coordination.Tests.Signals;

[Collection(RedisCollection.Name)]
public sealed class SignalInboxTests(RedisServer server)
{
    private static readonly TimeSpan ReadTimeout = TimeSpan.FromSeconds(15);

    [Fact]
    public async Task ReadAllAsync_TwoSendersToOneReceiver_BothDeliveredInOrderAndAcked()
    {
        await using var h = Harness.Create(server);
        var senderA = await h.StartAsync();
        var senderB = await h.StartAsync();
        var receiver = await h.StartAsync();

        var sentA = await senderA.Signals.SendAsync(receiver.Id, SignalTypes.Completion, 1);
        var sentB = await senderB.Signals.SendAsync(receiver.Id, SignalTypes.Completion, 1);

        var received = await ReadAndCompleteAsync(receiver, 2);

        Assert.Equal([sentA.MessageId, sentB.MessageId], received.Select(r => r.Signal.MessageId));
        Assert.Equal([senderA.Id, senderB.Id], received.Select(r => r.Signal.SenderId));
        Assert.All(received, r => Assert.False(r.IsRedelivery));
        Assert.True(await h.Database.KeyExistsAsync($"blocking:ack:{receiver.Id}:{sentA.MessageId}"));
        Assert.True(await h.Database.KeyExistsAsync($"blocking:ack:{receiver.Id}:{sentB.MessageId}"));

        var waitA = await senderA.Waiter.WaitForAcksAsync([receiver.Id], sentA.MessageId, TimeSpan.FromSeconds(10));
        var waitB = await senderB.Waiter.WaitForAcksAsync([receiver.Id], sentB.MessageId, TimeSpan.FromSeconds(10));
        Assert.Equal(AckWaitStatus.Completed, waitA.Status);
        Assert.Equal(AckWaitStatus.Completed, waitB.Status);
    }

    [Fact]
    public async Task ReadAllAsync_SenderStoppedOrCleanedUp_SignalHandedOutButNoAckKeyNamesIt()
    {
        await using var h = Harness.Create(server);
        var alive = await h.StartAsync();
        var leaving = await h.StartAsync();
        var receiver = await h.StartAsync();
        var fromAlive = await alive.Signals.SendAsync(receiver.Id, SignalTypes.Completion, 1);
        var fromGone = await leaving.Signals.SendAsync(receiver.Id, SignalTypes.Completion, 1);
        await leaving.StopAsync(); // its heartbeat and registry entry are gone, as after a cleanup

        var received = await ReadAndCompleteAsync(receiver, 2);

        // The signal still reaches the application (a verdict from a validator that has since left still counts) …
        Assert.Equal([fromAlive.MessageId, fromGone.MessageId], received.Select(r => r.Signal.MessageId));
        Assert.False(received[0].SenderGone);
        Assert.True(received[1].SenderGone);
        // … but no ACK key is stored for a sender no one waits for: it would reappear under blocking:*{sender}* after cleanup.
        Assert.True(await h.Database.KeyExistsAsync($"blocking:ack:{receiver.Id}:{fromAlive.MessageId}"));
        Assert.False(await h.Database.KeyExistsAsync($"blocking:ack:{receiver.Id}:{fromGone.MessageId}"));
        Assert.Single(RecoveryKit.Lines(h, "Sender gone, ACK not stored", fromGone.MessageId));
    }

    [Fact]
    public async Task ReadAllAsync_SignalSentBeforeReceiverStarted_IsDelivered()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var receiverId = TestIds.New("recv");
        var sent = await sender.Signals.SendAsync(receiverId, SignalTypes.Completion, 1);

        var receiver = await h.StartAsync(receiverId);
        var received = await ReadAndCompleteAsync(receiver, 1);

        Assert.Equal(sent.MessageId, received[0].Signal.MessageId);
        Assert.False(received[0].IsRedelivery);
    }

    [Fact]
    public async Task ReadAllAsync_Consumption_K2PresentExactlyWhileSignalsUnconsumed()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var receiver = await h.StartAsync();
        var k2 = $"blocking:signal:{receiver.Id}";

        Assert.False(await h.Database.KeyExistsAsync(k2));
        var first = await sender.Signals.SendAsync(receiver.Id, SignalTypes.Completion, 1);
        var second = await sender.Signals.SendAsync(receiver.Id, SignalTypes.Error, 2);
        Assert.Equal(second.MessageId, await K2MessageIdAsync(h, receiver.Id));

        using var cts = new CancellationTokenSource(ReadTimeout);
        var items = receiver.Inbox.ReadAllAsync(cts.Token).GetAsyncEnumerator(cts.Token);
        try
        {
            Assert.True(await items.MoveNextAsync());
            Assert.Equal(first.MessageId, items.Current.Signal.MessageId);
            Assert.True(await h.Database.KeyExistsAsync(k2), "K2 must stay while the handed-out signal is not consumed");

            // Asking for the next one consumes the first: K2 now shows the remaining signal.
            Assert.True(await items.MoveNextAsync());
            var last = items.Current;
            Assert.Equal(second.MessageId, last.Signal.MessageId);
            Assert.Equal(second.MessageId, await K2MessageIdAsync(h, receiver.Id));
            Assert.Equal(1, await h.Database.StreamLengthAsync($"blocking:inbox:{receiver.Id}"));

            await receiver.Inbox.CompleteAsync(last);
            Assert.False(await h.Database.KeyExistsAsync(k2), "K2 must be gone once every signal is consumed");
            Assert.Equal(0, await h.Database.StreamLengthAsync($"blocking:inbox:{receiver.Id}"));
        }
        finally
        {
            await cts.CancelAsync();
            await items.DisposeAsync();
        }
    }

    [Fact]
    public async Task ReadAllAsync_ItemHandedOut_AckAlreadyStoredBeforeProcessing()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var receiver = await h.StartAsync();
        await receiver.SetIterationAsync(5);
        var sent = await sender.Signals.SendAsync(receiver.Id, SignalTypes.Completion, 1);

        using var cts = new CancellationTokenSource(ReadTimeout);
        ReceivedSignal? seen = null;
        string? storedAtReceipt = null;
        await foreach (var received in receiver.Inbox.ReadAllAsync(cts.Token))
        {
            // The application has just been handed the item and has not processed anything yet.
            storedAtReceipt = await h.Database.StringGetAsync($"blocking:ack:{receiver.Id}:{sent.MessageId}");
            seen = received;
            await receiver.Inbox.CompleteAsync(received);
            break;
        }

        Assert.NotNull(seen);
        Assert.NotNull(storedAtReceipt);
        using var doc = JsonDocument.Parse(storedAtReceipt);
        Assert.Equal(seen.Ack.Signature, doc.RootElement.GetProperty("signature").GetString());
        Assert.Equal(receiver.Id, seen.Ack.CoordinatorId);
        Assert.Equal(sent.MessageId, seen.Ack.SignalId);
        Assert.Equal(5, seen.Ack.Iteration);
        Assert.Equal(AckRejection.None,
            AckVerifier.Verify(h.Keys, storedAtReceipt, receiver.Id, sent.MessageId, out _));
    }

    [Fact]
    public async Task ReadAllAsync_LastSignalReadThenAskedForNext_ConsumedWithTheNextReadAndTheNextArrives()
    {
        // One signal per read: the handed-out entry is consumed by the script that reads the next (inbox_next.lua).
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var receiver = await h.StartAsync();
        var inbox = $"blocking:inbox:{receiver.Id}";
        var first = await sender.Signals.SendAsync(receiver.Id, SignalTypes.Completion, 1);

        using var cts = new CancellationTokenSource(ReadTimeout);
        var items = receiver.Inbox.ReadAllAsync(cts.Token).GetAsyncEnumerator(cts.Token);
        try
        {
            Assert.True(await items.MoveNextAsync());
            Assert.Equal(first.MessageId, items.Current.Signal.MessageId);
            Assert.Equal(1, await h.Database.StreamLengthAsync(inbox));

            var next = items.MoveNextAsync().AsTask();
            Assert.True(await EventuallyAsync(async () => await h.Database.StreamLengthAsync(inbox) == 0, TimeSpan.FromSeconds(20)),
                "the first signal was not consumed");
            Assert.False(await h.Database.KeyExistsAsync($"blocking:signal:{receiver.Id}"));
            Assert.False(next.IsCompleted);

            var second = await sender.Signals.SendAsync(receiver.Id, SignalTypes.Error, 2);
            Assert.True(await next);
            Assert.Equal(second.MessageId, items.Current.Signal.MessageId);
            Assert.False(items.Current.IsRedelivery);
            Assert.Equal(second.MessageId, await K2MessageIdAsync(h, receiver.Id));
        }
        finally
        {
            await cts.CancelAsync();
            await items.DisposeAsync();
        }
    }

    [Fact]
    public async Task ReadAllAsync_ReceiverCrashedBeforeConsuming_NewInstanceGetsRedeliveryWithSameAck()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var receiverId = TestIds.New("recv");
        var first = await h.StartAsync(receiverId);
        var sent = await sender.Signals.SendAsync(receiverId, SignalTypes.Completion, 1);

        ReceivedSignal? before = null;
        using (var cts = new CancellationTokenSource(ReadTimeout))
        {
            await foreach (var received in first.Inbox.ReadAllAsync(cts.Token))
            {
                before = received;
                break; // crash: never ask for the next item, never complete
            }
        }

        Assert.NotNull(before);
        Assert.False(before.IsRedelivery);
        await first.AbandonAsync();

        var second = await h.StartAsync(receiverId);
        Assert.True(second.Epoch > first.Epoch);
        var after = (await ReadAndCompleteAsync(second, 1))[0];

        Assert.Equal(sent.MessageId, after.Signal.MessageId);
        Assert.True(after.IsRedelivery);
        Assert.Equal(before.Ack, after.Ack);
        Assert.Equal(before.Ack.Timestamp, after.Ack.Timestamp);
        Assert.Equal(before.Ack.Signature, after.Ack.Signature);
        Assert.Single(await ScanAsync($"blocking:ack:{receiverId}:*"));
        Assert.Equal(0, await h.Database.StreamLengthAsync($"blocking:inbox:{receiverId}"));
        Assert.False(await h.Database.KeyExistsAsync($"blocking:signal:{receiverId}"));
    }

    [Fact]
    public async Task ReadAllAsync_SignalForEarlierEpoch_IgnoredConsumedAndCounted()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var receiverId = TestIds.New("recv");
        var old = await h.StartAsync(receiverId);
        var stale = await sender.Signals.SendAsync(receiverId, SignalTypes.Completion, 1, receiverEpoch: old.Epoch);
        await old.AbandonAsync();

        var current = await h.StartAsync(receiverId);
        var fresh = await sender.Signals.SendAsync(receiverId, SignalTypes.Completion, 2, receiverEpoch: current.Epoch);

        var received = await ReadAndCompleteAsync(current, 1);

        Assert.Equal(fresh.MessageId, received[0].Signal.MessageId);
        Assert.NotEqual(stale.MessageId, received[0].Signal.MessageId);
        Assert.Equal(1, h.Metrics.SignalsIgnored.WithLabels(receiverId, "stale_epoch").Value);
        Assert.Equal(0, await h.Database.StreamLengthAsync($"blocking:inbox:{receiverId}"));
        Assert.False(await h.Database.KeyExistsAsync($"blocking:signal:{receiverId}"));
    }

    public static TheoryData<string> Forgeries => ["wrong_secret", "tampered_type", "no_signature", "wrong_receiver"];

    [Theory]
    [MemberData(nameof(Forgeries))]
    public async Task ReadAllAsync_ForgedSignalEntry_NotYieldedLoggedAndLaterSignalsArrive(string forgery)
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var receiver = await h.StartAsync();
        var inbox = (RedisKey)$"blocking:inbox:{receiver.Id}";
        await h.Database.StreamCreateConsumerGroupAsync(inbox, "receivers", "0-0", createStream: true);

        var forgerId = TestIds.New("forger");
        var timestamp = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var claimedReceiver = forgery == "wrong_receiver" ? TestIds.New("other") : receiver.Id;
        var signedType = forgery == "tampered_type" ? SignalTypes.Error : SignalTypes.Completion;
        var signingKeys = forgery == "wrong_secret" ? new SigningKeys("an-unrelated-secret-0123456789abcdef0123") : h.Keys;
        // Each forgery is otherwise perfectly signed (content signature included), so only the one flaw can refuse it.
        var forged = SignalSignatures.Sign(signingKeys, new Signal
        {
            Timestamp = timestamp,
            SenderId = forgerId,
            ReceiverId = claimedReceiver,
            Iteration = 1,
            Type = signedType,
            MessageId = $"{forgerId}:{receiver.Id}:completion:1:{timestamp}",
        }) with { Type = SignalTypes.Completion };
        if (forgery == "no_signature")
        {
            forged = forged with { Signature = null };
        }

        await h.Database.StreamAddAsync(inbox,
            [new NameValueEntry("messageId", forged.MessageId), new NameValueEntry("signal", Json.Serialize(forged))]);
        var genuine = await sender.Signals.SendAsync(receiver.Id, SignalTypes.Completion, 1);

        var received = await ReadAndCompleteAsync(receiver, 1);

        Assert.Equal(genuine.MessageId, received[0].Signal.MessageId);
        Assert.Contains(h.Messages, m => m.Contains("Invalid signal signature", StringComparison.Ordinal)
                                          && m.Contains(forged.MessageId, StringComparison.Ordinal));
        Assert.False(await h.Database.KeyExistsAsync($"blocking:ack:{receiver.Id}:{forged.MessageId}"));
        Assert.Equal(1, h.Metrics.SignalsIgnored.WithLabels(receiver.Id, "invalid").Value);
        Assert.Equal(1, h.Metrics.AckVerificationFailures.WithLabels(receiver.Id, "signal_signature").Value);
        Assert.Equal(0, await h.Database.StreamLengthAsync(inbox));
    }

    [Fact]
    public async Task ReadAllAsync_TamperedStoredSignalJson_NotYielded()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var receiver = await h.StartAsync();
        var inbox = (RedisKey)$"blocking:inbox:{receiver.Id}";
        var victim = await sender.Signals.SendAsync(receiver.Id, SignalTypes.Completion, 1);

        // Re-add the genuine entry with its signed "type" changed, then remove the original.
        var original = (await h.Database.StreamRangeAsync(inbox))[0];
        var tampered = ((string)original["signal"]!).Replace("\"type\":\"completion\"", "\"type\":\"error\"", StringComparison.Ordinal);
        var tamperedId = victim.MessageId.Replace(":completion:", ":error:", StringComparison.Ordinal);
        tampered = tampered.Replace(victim.MessageId, tamperedId, StringComparison.Ordinal);
        await h.Database.StreamAddAsync(inbox, [new NameValueEntry("messageId", tamperedId), new NameValueEntry("signal", tampered)]);
        await h.Database.StreamDeleteAsync(inbox, [original.Id]);
        var later = await sender.Signals.SendAsync(receiver.Id, SignalTypes.Completion, 2);

        var received = await ReadAndCompleteAsync(receiver, 1);

        Assert.Equal(later.MessageId, received[0].Signal.MessageId);
        Assert.Contains(h.Messages, m => m.Contains("Invalid signal signature", StringComparison.Ordinal));
        Assert.False(await h.Database.KeyExistsAsync($"blocking:ack:{receiver.Id}:{tamperedId}"));
    }

    [Theory]
    [InlineData("\"amount\":10", "\"amount\":99999")]
    [InlineData("\"iteration\":1", "\"iteration\":2")]
    public async Task ReadAllAsync_PayloadOrIterationTampered_NotYielded(string genuine, string forged)
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var receiver = await h.StartAsync();
        var inbox = (RedisKey)$"blocking:inbox:{receiver.Id}";
        using var payload = System.Text.Json.JsonDocument.Parse("""{"amount":10}""");
        var victim = await sender.Signals.SendAsync(receiver.Id, SignalTypes.Completion, 1, payload.RootElement);

        // The FAQ signature (sender, receiver, type, timestamp) still matches; only the content signature can tell.
        var original = (await h.Database.StreamRangeAsync(inbox))[0];
        var tampered = ((string)original["signal"]!).Replace(genuine, forged, StringComparison.Ordinal);
        Assert.NotEqual((string)original["signal"]!, tampered);
        await h.Database.StreamAddAsync(inbox, [new NameValueEntry("messageId", victim.MessageId), new NameValueEntry("signal", tampered)]);
        await h.Database.StreamDeleteAsync(inbox, [original.Id]);
        var later = await sender.Signals.SendAsync(receiver.Id, SignalTypes.Completion, 3);

        var received = await ReadAndCompleteAsync(receiver, 1);

        Assert.Equal(later.MessageId, received[0].Signal.MessageId);
        Assert.Contains(h.Messages, m => m.Contains("Invalid signal signature", StringComparison.Ordinal));
        Assert.False(await h.Database.KeyExistsAsync($"blocking:ack:{receiver.Id}:{victim.MessageId}"));
    }

    [Fact]
    public async Task ReadAllAsync_PayloadWithEscapesAndUnicode_VerifiesAndRoundTrips()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var receiver = await h.StartAsync();
        using var payload = System.Text.Json.JsonDocument.Parse("""{ "text" : "caf\u00e9 \"quoted\" ✓ <tag>", "list": [1, 2.50, {"x": null}] }""");
        var sent = await sender.Signals.SendAsync(receiver.Id, SignalTypes.StatusUpdate, 1, payload.RootElement);

        var received = await ReadAndCompleteAsync(receiver, 1);

        Assert.Equal(sent.MessageId, received[0].Signal.MessageId);
        Assert.Equal("café \"quoted\" ✓ <tag>", received[0].Signal.Payload!.Value.GetProperty("text").GetString());
    }

    [Fact]
    public async Task ReadAllAsync_EntryQueuedLongerThanSignalTtl_IgnoredAsTooOld()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var receiver = await h.StartAsync();
        var inbox = (RedisKey)$"blocking:inbox:{receiver.Id}";
        await h.Database.StreamCreateConsumerGroupAsync(inbox, "receivers", "0-0", createStream: true);
        var old = SignedSignal(h, sender.Id, receiver.Id, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
        // A stream entry ID is the Redis time it was added: this one claims 1970.
        await h.Database.StreamAddAsync(inbox,
            [new NameValueEntry("messageId", old.MessageId), new NameValueEntry("signal", Json.Serialize(old))], messageId: "1000-0");
        var genuine = await sender.Signals.SendAsync(receiver.Id, SignalTypes.Completion, 1);

        var received = await ReadAndCompleteAsync(receiver, 1);

        Assert.Equal(genuine.MessageId, received[0].Signal.MessageId);
        Assert.Equal(1, h.Metrics.SignalsIgnored.WithLabels(receiver.Id, "too_old").Value);
        Assert.Contains(h.Messages, m => m.Contains("Signal timestamp too old", StringComparison.Ordinal)
                                          && m.Contains(old.MessageId, StringComparison.Ordinal));
        Assert.False(await h.Database.KeyExistsAsync($"blocking:ack:{receiver.Id}:{old.MessageId}"));
    }

    [Fact]
    public async Task ReadAllAsync_SignedSignalWhoseTimestampIsOlderThanTtl_NotYieldedAndLoggedTooOld()
    {
        // SPEC K2: log "Signal timestamp too old" when the signal is older than the TTL window (replay protection).
        // A genuine, correctly signed signal from two days ago is re-queued (replayed) now.
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var receiver = await h.StartAsync();
        var inbox = (RedisKey)$"blocking:inbox:{receiver.Id}";
        await h.Database.StreamCreateConsumerGroupAsync(inbox, "receivers", "0-0", createStream: true);
        var twoDaysAgo = DateTimeOffset.UtcNow.AddDays(-2).ToUnixTimeMilliseconds();
        var replayed = SignedSignal(h, sender.Id, receiver.Id, twoDaysAgo);
        await h.Database.StreamAddAsync(inbox,
            [new NameValueEntry("messageId", replayed.MessageId), new NameValueEntry("signal", Json.Serialize(replayed))]);
        var genuine = await sender.Signals.SendAsync(receiver.Id, SignalTypes.Completion, 1);

        var received = await ReadAndCompleteAsync(receiver, 1);

        Assert.Equal(genuine.MessageId, received[0].Signal.MessageId);
        Assert.Contains(h.Messages, m => m.Contains("Signal timestamp too old", StringComparison.Ordinal));
        Assert.False(await h.Database.KeyExistsAsync($"blocking:ack:{receiver.Id}:{replayed.MessageId}"));
    }

    [Theory]
    [InlineData("not json {")]
    [InlineData("")]
    [InlineData("null")]
    [InlineData("[1,2,3]")]
    [InlineData("""{"timestamp":"soon","senderId":"x","receiverId":"y","iteration":1,"type":"completion","messageId":"x:y"}""")]
    [InlineData("""{"senderId":"x"}""")]
    public async Task ReadAllAsync_MalformedSignalEntry_SkippedAndLaterSignalsArrive(string raw)
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var receiver = await h.StartAsync();
        var inbox = (RedisKey)$"blocking:inbox:{receiver.Id}";
        await h.Database.StreamCreateConsumerGroupAsync(inbox, "receivers", "0-0", createStream: true);
        await h.Database.StreamAddAsync(inbox, [new NameValueEntry("messageId", "junk:entry"), new NameValueEntry("signal", raw)]);
        var genuine = await sender.Signals.SendAsync(receiver.Id, SignalTypes.Completion, 1);

        var received = await ReadAndCompleteAsync(receiver, 1);

        Assert.Equal(genuine.MessageId, received[0].Signal.MessageId);
        Assert.Equal(1, h.Metrics.SignalsIgnored.WithLabels(receiver.Id, "invalid").Value);
        Assert.Equal(0, await h.Database.StreamLengthAsync(inbox));
    }

    [Fact]
    public async Task ReadAllAsync_EntryWithoutSignalField_SkippedAndLaterSignalsArrive()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var receiver = await h.StartAsync();
        var inbox = (RedisKey)$"blocking:inbox:{receiver.Id}";
        await h.Database.StreamCreateConsumerGroupAsync(inbox, "receivers", "0-0", createStream: true);
        await h.Database.StreamAddAsync(inbox, "something", "else");
        var genuine = await sender.Signals.SendAsync(receiver.Id, SignalTypes.Completion, 1);

        var received = await ReadAndCompleteAsync(receiver, 1);

        Assert.Equal(genuine.MessageId, received[0].Signal.MessageId);
        Assert.Equal(1, h.Metrics.SignalsIgnored.WithLabels(receiver.Id, "invalid").Value);
    }

    [Fact]
    public async Task ReadAllAsync_Receipt_LogsSignalReceivedAndWaitingForSignal()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var receiver = await h.StartAsync();
        var sent = await sender.Signals.SendAsync(receiver.Id, SignalTypes.Completion, 1);

        await ReadAndCompleteAsync(receiver, 1);

        Assert.Contains(h.Messages, m => m.Contains("Waiting for signal", StringComparison.Ordinal)
                                          && m.Contains(receiver.Id, StringComparison.Ordinal));
        Assert.Contains(h.Messages, m => m.Contains("Signal received", StringComparison.Ordinal)
                                          && m.Contains(sent.MessageId, StringComparison.Ordinal));
    }

    [Fact]
    public async Task ReadAllAsync_Cancelled_EndsWithoutException()
    {
        await using var h = Harness.Create(server);
        var receiver = await h.StartAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));
        var count = 0;

        await foreach (var _ in receiver.Inbox.ReadAllAsync(cts.Token).WithCancellation(CancellationToken.None))
        {
            count++;
        }

        Assert.Equal(0, count);
    }

    private static Signal SignedSignal(Harness h, string senderId, string receiverId, long timestamp) => SignalSignatures.Sign(h.Keys, new()
    {
        Timestamp = timestamp,
        SenderId = senderId,
        ReceiverId = receiverId,
        Iteration = 7, // differs from the genuine signals the tests send, so message IDs never coincide
        Type = SignalTypes.Completion,
        MessageId = $"{senderId}:{receiverId}:completion:7:{timestamp}",
    });

    /// <summary>Reads <paramref name="count"/> signals, consuming each one (the last one explicitly).</summary>
    private static async Task<List<ReceivedSignal>> ReadAndCompleteAsync(Coordinator receiver, int count)
    {
        var list = new List<ReceivedSignal>();
        using var cts = new CancellationTokenSource(ReadTimeout);
        await foreach (var received in receiver.Inbox.ReadAllAsync(cts.Token))
        {
            list.Add(received);
            if (list.Count == count)
            {
                await receiver.Inbox.CompleteAsync(received);
                break;
            }
        }

        Assert.True(list.Count == count, $"expected {count} signals, got {list.Count} before the read timed out");
        return list;
    }

    private static async Task<string?> K2MessageIdAsync(Harness h, string receiverId)
    {
        var raw = (string?)await h.Database.StringGetAsync($"blocking:signal:{receiverId}");
        if (raw is null)
        {
            return null;
        }

        using var doc = JsonDocument.Parse(raw);
        return doc.RootElement.GetProperty("messageId").GetString();
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
}
