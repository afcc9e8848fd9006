using System.Text.Json;
using Cfn.Coordination.Acks;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Signals;
using Cfn.Coordination.Tests.Infrastructure;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Cfn.Coordination.Tests.Signals;

/// <summary>
/// Inboxes cannot grow without bound or lose a signal (issue 11): the per-inbox cap (<c>SIGNAL_INBOX_MAX_LENGTH</c>), a
/// graceful stop racing a send, and sends to an escalated receiver redirected to its replacement (decision 5).
/// </summary>
[Collection(RedisCollection.Name)]
public sealed class InboxSafetyTests(RedisServer server)
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);

    /// <summary>What the monitor and the escalation service leave behind for a dead coordinator: the fence, then K8.</summary>
    private static async Task<long> DeclareDeadAsync(Harness h, string deadId, string replacementId, string status)
    {
        var fence = await h.Database.StringIncrementAsync(Keys.Epoch(deadId));
        var record = new EscalationRecord
        {
            DeadCoordinatorId = deadId,
            SwarmId = "swarm-test",
            Timestamp = 1,
            Status = status,
            NewCoordinatorId = replacementId,
            FencingToken = fence,
        };
        await h.Database.StringSetAsync(Keys.Escalation(deadId), Json.Serialize(record), TimeSpan.FromMinutes(10));
        return fence;
    }

    private static async Task<List<Signal>> InboxAsync(Harness h, string id)
    {
        var entries = await h.Database.StreamRangeAsync(Keys.Inbox(id));
        return [.. entries.Select(e => System.Text.Json.JsonSerializer.Deserialize<Signal>((string)e["signal"]!, Json.Options)!)];
    }

    private static async Task<ReceivedSignal> ReadOneAsync(Coordinator receiver)
    {
        using var cancel = new CancellationTokenSource(Wait);
        await foreach (var received in receiver.Inbox.ReadAllAsync(cancel.Token))
        {
            await receiver.Inbox.CompleteAsync(received);
            return received;
        }

        throw new TimeoutException("no signal arrived");
    }

    // ---- The cap ------------------------------------------------------------------------------------------------

    [Fact]
    public async Task SendAsync_InboxAtCap_RefusedNamingReceiverAndRuleAndWritesNothing()
    {
        await using var h = Harness.Create(server, o => o.SignalInboxMaxLength = 3);
        var sender = await h.StartAsync();
        var receiver = await h.StartAsync();
        for (var i = 0; i < 3; i++)
        {
            await sender.Signals.SendAsync(receiver.Id, SignalTypes.Completion, i);
        }

        var view = (string?)await h.Database.StringGetAsync(Keys.Signal(receiver.Id));
        var sentBefore = h.Metrics.SignalsSent.WithLabels(sender.Id, SignalTypes.Completion).Value;

        var refused = await Assert.ThrowsAsync<SignalDeliveryException>(() =>
            sender.Signals.SendAsync(receiver.Id, SignalTypes.Completion, 9, idempotencyKey: "over-cap"));

        Assert.Equal(SignalDeliveryException.InboxFull, refused.Reason);
        Assert.Equal(receiver.Id, refused.ReceiverId);
        Assert.Contains(receiver.Id, refused.Message, StringComparison.Ordinal);
        Assert.Contains("SIGNAL_INBOX_MAX_LENGTH", refused.Message, StringComparison.Ordinal);
        Assert.Equal(3, await h.Database.StreamLengthAsync(Keys.Inbox(receiver.Id)));
        Assert.False(await h.Database.KeyExistsAsync(Keys.Idempotency($"{sender.Id}:{receiver.Id}:completion:9:over-cap")));
        Assert.Equal(view, (string?)await h.Database.StringGetAsync(Keys.Signal(receiver.Id)));
        Assert.Equal(1, h.Metrics.SignalsFailed.WithLabels(sender.Id, SignalTypes.Completion, "inbox_full").Value);
        Assert.Equal(sentBefore, h.Metrics.SignalsSent.WithLabels(sender.Id, SignalTypes.Completion).Value);

        // Once the receiver consumes one, there is room again, and the refused signal's retry is not a duplicate.
        await ReadOneAsync(receiver);
        var retried = await sender.Signals.SendAsync(receiver.Id, SignalTypes.Completion, 9, idempotencyKey: "over-cap");
        Assert.False(retried.IsDuplicate);
        Assert.Equal(3, await h.Database.StreamLengthAsync(Keys.Inbox(receiver.Id)));
    }

    [Fact]
    public async Task SendAsync_DuplicateOfDeliveredSignalWhileInboxFull_ReportedAsDuplicate()
    {
        await using var h = Harness.Create(server, o => o.SignalInboxMaxLength = 1);
        var sender = await h.StartAsync();
        var receiver = await h.StartAsync();
        var first = await sender.Signals.SendAsync(receiver.Id, SignalTypes.Completion, 1, idempotencyKey: "once");

        var again = await sender.Signals.SendAsync(receiver.Id, SignalTypes.Completion, 1, idempotencyKey: "once");

        Assert.True(again.IsDuplicate);
        Assert.Equal(first.MessageId, again.MessageId);
        Assert.Equal(0, h.Metrics.SignalsFailed.WithLabels(sender.Id, SignalTypes.Completion, "inbox_full").Value);
    }

    [Fact]
    public async Task SendAndWaitAsync_InboxFull_ThrowsInboxFullAndWaitsForNothing()
    {
        await using var h = Harness.Create(server, o => o.SignalInboxMaxLength = 1);
        var sender = await h.StartAsync();
        var receiver = await h.StartAsync();
        await sender.Signals.SendAsync(receiver.Id, SignalTypes.Completion, 1);

        var refused = await Assert.ThrowsAsync<SignalDeliveryException>(() =>
            sender.Waiter.SendAndWaitAsync(receiver.Id, SignalTypes.Completion, 2, timeout: Wait));

        Assert.Equal(SignalDeliveryException.InboxFull, refused.Reason);
        Assert.Equal(1, await h.Database.StreamLengthAsync(Keys.Inbox(receiver.Id)));
        Assert.Equal(0, sender.Activity.RunningWaits);
        Assert.Equal(1, h.Metrics.SignalsFailed.WithLabels(sender.Id, SignalTypes.Completion, "inbox_full").Value);
    }

    [Fact]
    public async Task SendWithRetry_InboxStaysFull_EveryAttemptRefusedAndCountedOnceAsInboxFull()
    {
        await using var h = Harness.Create(server, o => o.SignalInboxMaxLength = 1);
        var sender = await h.StartAsync();
        var receiver = await h.StartAsync();
        await sender.Signals.SendAsync(receiver.Id, SignalTypes.Completion, 1);
        var retrier = new SignalRetrier(sender, new SignalRetryOptions
        {
            AckTimeout = TimeSpan.FromMilliseconds(200),
            Backoff = [TimeSpan.FromMilliseconds(10)],
        });

        var result = await retrier.SendWithRetryAsync(receiver.Id, SignalTypes.Completion, 2, maxRetries: 2, idempotencyKey: "full");

        Assert.False(result.Success);
        Assert.Equal(3, result.Attempts);
        Assert.Equal(SignalRetryStatus.Exhausted, result.Status);
        Assert.Contains("is full", result.LastError, StringComparison.Ordinal);
        Assert.Equal(1, await h.Database.StreamLengthAsync(Keys.Inbox(receiver.Id)));
        Assert.False(await h.Database.KeyExistsAsync(Keys.Idempotency(result.SignalId)));
        Assert.Equal(1, h.Metrics.SignalsFailed.WithLabels(sender.Id, SignalTypes.Completion, "inbox_full").Value);
        Assert.Equal(0, h.Metrics.SignalsFailed.WithLabels(sender.Id, SignalTypes.Completion, "ack_timeout").Value);
    }

    [Fact]
    public async Task SendWithRetry_InboxDrainsBetweenAttempts_DeliveredAndAcked()
    {
        await using var h = Harness.Create(server, o => o.SignalInboxMaxLength = 1);
        var sender = await h.StartAsync();
        var receiver = await h.StartAsync();
        await sender.Signals.SendAsync(receiver.Id, SignalTypes.Completion, 1);
        var retrier = new SignalRetrier(sender, new SignalRetryOptions
        {
            AckTimeout = TimeSpan.FromSeconds(5),
            Backoff = [TimeSpan.FromMilliseconds(300)],
        });
        using var stop = new CancellationTokenSource();
        var reading = Task.Run(async () =>
        {
            // Drains only once the full inbox has refused the first attempt, so the retry is what delivers.
            await EventuallyAsync(() => h.Messages.Any(m => m.Contains("Signal retry attempt failed", StringComparison.Ordinal) &&
                                                            m.Contains(receiver.Id, StringComparison.Ordinal)), "the full inbox never refused an attempt");
            try
            {
                await foreach (var _ in receiver.Inbox.ReadAllAsync(stop.Token))
                {
                }
            }
            catch (OperationCanceledException)
            {
            }
        });

        var result = await retrier.SendWithRetryAsync(receiver.Id, SignalTypes.Completion, 2, maxRetries: 3);
        await stop.CancelAsync();
        await reading;

        Assert.True(result.Success, result.LastError);
        Assert.True(result.Attempts >= 2, "the first attempt must have been refused by the full inbox");
        Assert.Contains("is full", result.LastError, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Handover_ReplacementInboxAtCap_MovesEverySignalAnyway()
    {
        await using var h = Harness.Create(server, o => o.SignalInboxMaxLength = 2);
        var sender = await h.StartAsync();
        var dead = await h.StartAsync();
        var replacement = await h.StartAsync();
        await sender.Signals.SendAsync(dead.Id, SignalTypes.Completion, 1);
        await sender.Signals.SendAsync(dead.Id, SignalTypes.Completion, 2);
        await sender.Signals.SendAsync(replacement.Id, SignalTypes.Completion, 3);
        await sender.Signals.SendAsync(replacement.Id, SignalTypes.Completion, 4);
        var handover = new SignalHandover(h.Redis, h.Keys, new RecoveryMetrics(h.Registry),
            h.LoggerFactory.CreateLogger("handover"));

        var moved = await handover.MoveAllAsync(dead.Id, replacement.Id);

        Assert.Equal(2, moved);
        Assert.Equal(4, await h.Database.StreamLengthAsync(Keys.Inbox(replacement.Id)));
        Assert.Equal(0, await h.Database.StreamLengthAsync(Keys.Inbox(dead.Id)));
    }

    // ---- Graceful stop racing a send ----------------------------------------------------------------------------

    [Fact]
    public async Task StopAsync_SendsRacingTheStop_EverySignalStaysInTheInbox()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var receiverId = TestIds.New("stopping");
        // How long a stop takes here: each racing send is let go at a random point inside it, so over the rounds some
        // land between the stop's look at the inbox and its delete (with the check and the delete in two round trips,
        // those were deleted unread).
        var stopTicks = new List<long>();
        for (var i = 0; i < 5; i++)
        {
            var probe = await h.StartAsync(receiverId);
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            await probe.StopAsync();
            stopTicks.Add(System.Diagnostics.Stopwatch.GetTimestamp() - started);
        }

        stopTicks.Sort();
        var spread = stopTicks[^2];
        const int Rounds = 150;
        const int SendsPerRound = 2;
        var random = new Random(11);
        var sent = 0;
        for (var round = 0; round < Rounds; round++)
        {
            var receiver = await h.StartAsync(receiverId);
            await h.Database.KeyDeleteAsync([Keys.Inbox(receiverId), Keys.Signal(receiverId)]); // every stop starts empty
            var offsets = Enumerable.Range(0, SendsPerRound).Select(_ => (long)(random.NextDouble() * spread)).ToArray();
            using var go = new ManualResetEventSlim();
            var sends = offsets.Select((offset, i) => Task.Run(async () =>
            {
                go.Wait();
                var from = System.Diagnostics.Stopwatch.GetTimestamp();
                while (System.Diagnostics.Stopwatch.GetTimestamp() - from < offset)
                {
                    Thread.SpinWait(20);
                }

                return await sender.Signals.SendAsync(receiverId, SignalTypes.Completion, round, idempotencyKey: $"r{round}-{i}");
            })).ToList();
            var stop = Task.Run(async () =>
            {
                go.Wait();
                await receiver.StopAsync();
            });
            go.Set();
            await stop;
            var results = await Task.WhenAll(sends);

            // No reader ran, so nothing was consumed: every signal sent must still be pending.
            var inbox = (await InboxAsync(h, receiverId)).Select(s => s.MessageId).ToHashSet(StringComparer.Ordinal);
            foreach (var result in results)
            {
                Assert.False(result.IsDuplicate);
                Assert.True(inbox.Contains(result.MessageId), $"round {round}: {result.MessageId} was sent but is not in the inbox");
                sent++;
            }
        }

        Assert.Equal(Rounds * SendsPerRound, sent);
        await h.Database.KeyDeleteAsync([Keys.Inbox(receiverId), Keys.Signal(receiverId)]);
    }

    [Fact]
    public async Task StopAsync_EmptyInbox_DeletesInboxAndView()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var receiver = await h.StartAsync();
        await sender.Signals.SendAsync(receiver.Id, SignalTypes.Completion, 1);
        await ReadOneAsync(receiver);
        Assert.True(await h.Database.KeyExistsAsync(Keys.Inbox(receiver.Id)));

        await receiver.StopAsync();

        Assert.False(await h.Database.KeyExistsAsync(Keys.Inbox(receiver.Id)));
        Assert.False(await h.Database.KeyExistsAsync(Keys.Signal(receiver.Id)));
    }

    [Fact]
    public async Task StopAsync_PendingSignal_KeepsInboxAndView()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var receiver = await h.StartAsync();
        var sent = await sender.Signals.SendAsync(receiver.Id, SignalTypes.Completion, 1);

        await receiver.StopAsync();

        Assert.Equal([sent.MessageId], (await InboxAsync(h, receiver.Id)).Select(s => s.MessageId));
        Assert.True(await h.Database.KeyExistsAsync(Keys.Signal(receiver.Id)));
    }

    // ---- Redirect to the replacement ----------------------------------------------------------------------------

    [Fact]
    public async Task SendAsync_ReceiverEscalated_RedirectedToReplacementWithReaddressedSignedSignal()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var dead = await h.StartAsync();
        var replacementId = TestIds.New("repl");
        await DeclareDeadAsync(h, dead.Id, replacementId, EscalationStatus.ReplacementRequested);

        var result = await sender.Signals.SendAsync(dead.Id, SignalTypes.Completion, 4, idempotencyKey: "k1");

        Assert.Equal(replacementId, result.ReceiverId);
        Assert.True(result.Redirected);
        Assert.False(result.IsDuplicate);
        Assert.Equal($"{sender.Id}:{replacementId}:completion:4:k1", result.MessageId);
        Assert.Equal((string)Keys.Signal(replacementId)!, result.Key);
        Assert.False(await h.Database.KeyExistsAsync(Keys.Inbox(dead.Id)));
        Assert.False(await h.Database.KeyExistsAsync(Keys.Idempotency($"{sender.Id}:{dead.Id}:completion:4:k1")));
        var stored = Assert.Single(await InboxAsync(h, replacementId));
        Assert.Equal(replacementId, stored.ReceiverId);
        Assert.Equal(result.MessageId, stored.MessageId);
        Assert.Null(stored.HandedOverFrom);
        Assert.True(SignalSignatures.Verify(h.Keys, stored));
        Assert.Contains(h.Messages, m => m.StartsWith($"Signal redirected to replacement from={dead.Id} to={replacementId} messageId={result.MessageId}",
            StringComparison.Ordinal));

        // The replacement, once it runs, receives and ACKs it; the sender waits on the receiver the result names.
        var replacement = await h.StartAsync(replacementId);
        var received = await ReadOneAsync(replacement);
        Assert.Equal(result.MessageId, received.Signal.MessageId);
        var wait = await sender.Waiter.WaitForAcksAsync([result.ReceiverId], result.MessageId, Wait);
        Assert.Equal(AckWaitStatus.Completed, wait.Status);
    }

    [Fact]
    public async Task SendAsync_EscalatedThroughTheRealEscalationService_RedirectedToItsNewCoordinator()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var dead = await h.StartAsync(swarmId: "swarm-redirect");
        var options = new RecoveryOptions();
        var metrics = new RecoveryMetrics(h.Registry);
        var escalation = new EscalationService(h.Redis, h.Keys, options, metrics, new CoordinatorCleanup(h.Redis, options, metrics));
        var fence = await h.Database.StringIncrementAsync(Keys.Epoch(dead.Id));
        var escalated = await escalation.EscalateAsync(dead.Id, "swarm-redirect", fence, dead.Heartbeats.LastSentAt, "handler-test");
        Assert.NotNull(escalated.NewCoordinatorId);

        var result = await sender.Signals.SendAsync(dead.Id, SignalTypes.Completion, 1);

        Assert.Equal(escalated.NewCoordinatorId, result.ReceiverId);
        Assert.Contains(await InboxAsync(h, escalated.NewCoordinatorId!), s => s.MessageId == result.MessageId);
        await RecoveryKit.ForgetAsync(h.Database, dead.Id);
    }

    [Fact]
    public async Task SendAsync_ReceiverRestartedAfterEscalation_DeliveredToItNormally()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var receiverId = TestIds.New("restarted");
        await h.StartAsync(receiverId);
        await DeclareDeadAsync(h, receiverId, TestIds.New("repl"), EscalationStatus.Replaced);
        await h.StartAsync(receiverId); // a new instance under a newer epoch than the record's fence

        var result = await sender.Signals.SendAsync(receiverId, SignalTypes.Completion, 1);

        Assert.Equal(receiverId, result.ReceiverId);
        Assert.False(result.Redirected);
        Assert.Single(await InboxAsync(h, receiverId));
    }

    [Fact]
    public async Task SendAsync_EscalationFailed_ThrowsReceiverDeadCountsItAndWritesNothing()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var dead = await h.StartAsync();
        var replacementId = TestIds.New("never");
        await DeclareDeadAsync(h, dead.Id, replacementId, EscalationStatus.Failed);

        var refused = await Assert.ThrowsAsync<SignalDeliveryException>(() =>
            sender.Signals.SendAsync(dead.Id, SignalTypes.Completion, 1, idempotencyKey: "gone"));

        Assert.Equal(SignalDeliveryException.ReceiverDead, refused.Reason);
        Assert.Equal(dead.Id, refused.ReceiverId);
        Assert.Contains(dead.Id, refused.Message, StringComparison.Ordinal);
        Assert.Contains("no replacement", refused.Message, StringComparison.Ordinal);
        Assert.Equal(1, h.Metrics.SignalsFailed.WithLabels(sender.Id, SignalTypes.Completion, "receiver_dead").Value);
        Assert.False(await h.Database.KeyExistsAsync(Keys.Inbox(dead.Id)));
        Assert.False(await h.Database.KeyExistsAsync(Keys.Inbox(replacementId)));
        Assert.False(await h.Database.KeyExistsAsync(Keys.Idempotency($"{sender.Id}:{dead.Id}:completion:1:gone")));
    }

    [Fact]
    public async Task SendAsync_ReplacementEscalatedToo_FollowsTheChain()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var first = await h.StartAsync();
        var second = await h.StartAsync();
        var thirdId = TestIds.New("third");
        await DeclareDeadAsync(h, first.Id, second.Id, EscalationStatus.Replaced);
        await DeclareDeadAsync(h, second.Id, thirdId, EscalationStatus.ReplacementRequested);

        var result = await sender.Signals.SendAsync(first.Id, SignalTypes.Completion, 1);

        Assert.Equal(thirdId, result.ReceiverId);
        Assert.StartsWith($"{sender.Id}:{thirdId}:", result.MessageId, StringComparison.Ordinal);
        Assert.Single(await InboxAsync(h, thirdId));
        Assert.Equal(2, h.Messages.Count(m => m.StartsWith("Signal redirected to replacement", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task SendAsync_RedirectsNeverEnd_ThrowsTooManyRedirectsAndWritesNothing()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var ids = new List<string>();
        for (var i = 0; i <= SignalSender.MaxRedirects + 1; i++)
        {
            ids.Add((await h.StartAsync()).Id);
        }

        for (var i = 0; i < ids.Count - 1; i++)
        {
            await DeclareDeadAsync(h, ids[i], ids[i + 1], EscalationStatus.Replaced);
        }

        var refused = await Assert.ThrowsAsync<SignalDeliveryException>(() => sender.Signals.SendAsync(ids[0], SignalTypes.Completion, 1));

        Assert.Equal(SignalDeliveryException.TooManyRedirects, refused.Reason);
        foreach (var id in ids)
        {
            Assert.False(await h.Database.KeyExistsAsync(Keys.Inbox(id)), $"{id} got a signal");
        }
    }

    [Fact]
    public async Task SendAsync_SignalWithReceiverEpoch_RedirectedWithTheReplacementsEpoch()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var dead = await h.StartAsync();
        var replacement = await h.StartAsync();
        await DeclareDeadAsync(h, dead.Id, replacement.Id, EscalationStatus.Replaced);

        var result = await sender.Signals.SendAsync(dead.Id, SignalTypes.Completion, 1, receiverEpoch: dead.Epoch);

        var stored = Assert.Single(await InboxAsync(h, replacement.Id));
        Assert.Equal(replacement.Epoch, stored.ReceiverEpoch);
        Assert.True(SignalSignatures.Verify(h.Keys, stored));
        var received = await ReadOneAsync(replacement); // not void for the replacement's instance
        Assert.Equal(result.MessageId, received.Signal.MessageId);
    }

    [Fact]
    public async Task SendAsync_SameKeyDeliveredBeforeTheDeath_IsADuplicateNotARedirect()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var dead = await h.StartAsync();
        var first = await sender.Signals.SendAsync(dead.Id, SignalTypes.Completion, 1, idempotencyKey: "before");
        await DeclareDeadAsync(h, dead.Id, TestIds.New("repl"), EscalationStatus.ReplacementRequested);

        var again = await sender.Signals.SendAsync(dead.Id, SignalTypes.Completion, 1, idempotencyKey: "before");

        Assert.True(again.IsDuplicate);
        Assert.Equal(first.MessageId, again.MessageId);
        Assert.Equal(dead.Id, again.ReceiverId);
    }

    [Fact]
    public async Task Handover_AfterARedirectedCopyArrived_DeadCopyRemovedNotDeliveredTwice()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var dead = await h.StartAsync();
        var replacement = await h.StartAsync();
        var retrier = new SignalRetrier(sender, new SignalRetryOptions { AckTimeout = TimeSpan.FromMilliseconds(100), Backoff = [TimeSpan.FromMilliseconds(10)] });
        // Sent to the receiver before it died; the sender's retry after the death goes to the replacement.
        var before = await sender.Signals.SendAsync(dead.Id, SignalTypes.Completion, 1, idempotencyKey: "twice");
        await DeclareDeadAsync(h, dead.Id, replacement.Id, EscalationStatus.ReplacementRequested);
        await h.Database.KeyDeleteAsync(Keys.Idempotency(before.MessageId)); // as if the first attempt's record had expired
        var retried = await retrier.SendWithRetryAsync(dead.Id, SignalTypes.Completion, 1, maxRetries: 0, idempotencyKey: "twice");
        Assert.Equal(replacement.Id, retried.ReceiverId);

        var moved = await new SignalHandover(h.Redis, h.Keys, new RecoveryMetrics(h.Registry), h.LoggerFactory.CreateLogger("handover"))
            .MoveAllAsync(dead.Id, replacement.Id);

        Assert.Equal(1, moved);
        Assert.Equal(0, await h.Database.StreamLengthAsync(Keys.Inbox(dead.Id)));
        var copies = await InboxAsync(h, replacement.Id);
        Assert.Equal([retried.SignalId], copies.Select(s => s.MessageId));
    }

    [Fact]
    public async Task SendAndWaitAsync_ReceiverEscalated_WaitsForAndGetsTheReplacementsAck()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var dead = await h.StartAsync();
        var replacement = await h.StartAsync();
        await DeclareDeadAsync(h, dead.Id, replacement.Id, EscalationStatus.Replaced);
        var reading = ReadOneAsync(replacement);

        var result = await sender.Waiter.SendAndWaitAsync(dead.Id, SignalTypes.Completion, 2, timeout: Wait);

        Assert.Equal(replacement.Id, result.Delivery.ReceiverId);
        Assert.True(result.Delivery.Redirected);
        Assert.Equal(AckWaitStatus.Completed, result.Wait.Status);
        Assert.Equal(result.Delivery.MessageId, result.Wait.SignalId);
        Assert.Equal(replacement.Id, Assert.Single(result.Wait.Acks).Key);
        Assert.Equal(result.Delivery.MessageId, (await reading).Signal.MessageId);
    }

    [Fact]
    public async Task SendAndWaitAsync_EscalationFailed_ThrowsReceiverDead()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var dead = await h.StartAsync();
        await DeclareDeadAsync(h, dead.Id, TestIds.New("never"), EscalationStatus.Failed);

        var refused = await Assert.ThrowsAsync<SignalDeliveryException>(() =>
            sender.Waiter.SendAndWaitAsync(dead.Id, SignalTypes.Completion, 2, timeout: Wait));

        Assert.Equal(SignalDeliveryException.ReceiverDead, refused.Reason);
        Assert.Equal(0, sender.Activity.RunningWaits);
    }

    [Fact]
    public async Task SendWithRetry_ReceiverEscalated_RedirectedAndAckedByTheReplacement()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var dead = await h.StartAsync();
        var replacement = await h.StartAsync();
        await DeclareDeadAsync(h, dead.Id, replacement.Id, EscalationStatus.Replaced);
        var reading = ReadOneAsync(replacement);
        var retrier = new SignalRetrier(sender, new SignalRetryOptions { AckTimeout = Wait });

        var result = await retrier.SendWithRetryAsync(dead.Id, SignalTypes.Completion, 3);

        Assert.True(result.Success, result.LastError);
        Assert.Equal(replacement.Id, result.ReceiverId);
        Assert.StartsWith($"{sender.Id}:{replacement.Id}:completion:3:", result.SignalId, StringComparison.Ordinal);
        Assert.Equal(result.SignalId, (await reading).Signal.MessageId);
    }

    [Fact]
    public async Task SendWithRetry_EscalationFailed_StopsAtOnceWithReceiverDeadAndNoFailedRecord()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var dead = await h.StartAsync();
        await DeclareDeadAsync(h, dead.Id, TestIds.New("never"), EscalationStatus.Failed);
        var retrier = new SignalRetrier(sender, new SignalRetryOptions { AckTimeout = TimeSpan.FromMilliseconds(100) });

        var result = await retrier.SendWithRetryAsync(dead.Id, SignalTypes.Completion, 3, maxRetries: 3);

        Assert.False(result.Success);
        Assert.Equal(SignalRetryStatus.ReceiverDead, result.Status);
        Assert.Equal(1, result.Attempts);
        Assert.Contains(dead.Id, result.LastError, StringComparison.Ordinal);
        Assert.False(await h.Database.KeyExistsAsync(Keys.RetryFailed(result.SignalId)));
        Assert.Equal(1, h.Metrics.SignalsFailed.WithLabels(sender.Id, SignalTypes.Completion, "receiver_dead").Value);
    }

    [Fact]
    public async Task EnqueueAsync_SignalForThisCoordinator_AppendedOnceAndAckedByItsReader()
    {
        await using var h = Harness.Create(server);
        var receiver = await h.StartAsync();
        var sender = await h.StartAsync(); // a live sender: the ACK of a gone one is not stored
        var signal = new Signal
        {
            Timestamp = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(),
            SenderId = sender.Id,
            ReceiverId = receiver.Id,
            Iteration = 1,
            Type = SignalTypes.Completion,
            Payload = JsonDocument.Parse("""{"x":1}""").RootElement.Clone(),
            MessageId = $"{sender.Id}:{receiver.Id}:completion:1:abc",
        };

        var first = await receiver.Inbox.EnqueueAsync(signal);
        var replay = await receiver.Inbox.EnqueueAsync(signal);

        Assert.False(first.IsDuplicate);
        Assert.True(replay.IsDuplicate);
        Assert.Equal(1, await h.Database.StreamLengthAsync(Keys.Inbox(receiver.Id)));
        var received = await ReadOneAsync(receiver);
        Assert.Equal(signal.MessageId, received.Signal.MessageId);
        Assert.True(await h.Database.KeyExistsAsync(Keys.Ack(receiver.Id, signal.MessageId)));
    }
}
