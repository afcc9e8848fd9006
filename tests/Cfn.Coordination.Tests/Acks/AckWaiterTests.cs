using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Cfn.Coordination.Acks;
using Cfn.Coordination.Background;
using Cfn.Coordination.Identity;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Security;
using Cfn.Coordination.Signals;
using Cfn.Coordination.Tests.Infrastructure;
using Microsoft.Extensions.Time.Testing;
using StackExchange.Redis;

namespace Cfn.Coordination.Tests.Acks;

[Collection(RedisCollection.Name)]
public sealed class AckWaiterTests(RedisServer server)
{
    [Fact]
    public async Task WaitForAcks_SignalReceivedAndAcked_Completes()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var receiver = await h.StartAsync();

        var sent = await sender.Signals.SendAsync(receiver.Id, SignalTypes.Completion, 1);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var receiving = Task.Run(async () =>
        {
            await foreach (var received in receiver.Inbox.ReadAllAsync(cts.Token))
            {
                return received;
            }

            return null;
        });

        var result = await sender.Waiter.WaitForAcksAsync([receiver.Id], sent.MessageId, TimeSpan.FromSeconds(10));

        Assert.Equal(AckWaitStatus.Completed, result.Status);
        Assert.Equal(receiver.Id, result.Acks[receiver.Id].CoordinatorId);
        Assert.Empty(result.Missing);
        var got = await receiving;
        Assert.NotNull(got);
        Assert.Equal(sent.MessageId, got.Signal.MessageId);
    }

    [Fact]
    public async Task WaitForAcks_AckArrivesLater_ReleasedByWakeUpNotByFallbackPoll()
    {
        // The fallback poll is set far beyond the test: only the pub/sub wake-up can release the waiter in time.
        await using var h = Harness.Create(server, o => o.AckFallbackPollInterval = TimeSpan.FromMinutes(10));
        var sender = await h.StartAsync();
        var receiver = await h.StartAsync();
        var sent = await sender.Signals.SendAsync(receiver.Id, SignalTypes.Completion, 1);

        var waiting = sender.Waiter.WaitForAcksAsync([receiver.Id], sent.MessageId, TimeSpan.FromSeconds(30));
        await EventuallyAsync(() => sender.Status == "blocking", "the sender never started waiting");
        Assert.False(waiting.IsCompleted);
        var ackedAt = Stopwatch.StartNew();
        await receiver.Acks.AcknowledgeAsync(sent.MessageId, sender.Id, SignalTypes.Completion, null, sent.Timestamp);
        var result = await waiting;

        Assert.Equal(AckWaitStatus.Completed, result.Status);
        Assert.True(ackedAt.Elapsed < TimeSpan.FromSeconds(5), $"released after {ackedAt.Elapsed}");
        Assert.Equal(0, h.Redis.Wakeups.FallbackReads);
    }

    [Fact]
    public async Task WaitForAcks_OneOfTwoPeersAcks_TimeoutWithPartialResultLogsAndCounts()
    {
        await using var h = Harness.Create(server);
        var self = await h.StartAsync();
        var peerA = await h.StartAsync();
        var peerB = await h.StartAsync();
        var signalId = TestIds.New("signal");
        await peerA.Acks.AcknowledgeAsync(signalId, self.Id, SignalTypes.Completion, null, 1);

        var result = await self.Waiter.WaitForAcksAsync([peerA.Id, peerB.Id], signalId, TimeSpan.FromSeconds(1));

        Assert.Equal(AckWaitStatus.Timeout, result.Status);
        Assert.Equal(signalId, result.SignalId);
        Assert.Equal([peerA.Id], result.Acks.Keys);
        Assert.Equal(peerA.Id, result.Acks[peerA.Id].CoordinatorId);
        Assert.Equal([peerB.Id], result.Missing);

        var messages = h.Messages;
        var waiting = Assert.Single(messages, m => m.Contains("Waiting for ACKs", StringComparison.Ordinal));
        Assert.Contains(signalId, waiting, StringComparison.Ordinal);
        Assert.Contains($"{peerA.Id},{peerB.Id}", waiting, StringComparison.Ordinal);
        var timeout = Assert.Single(messages, m => m.Contains("ACK wait timeout", StringComparison.Ordinal));
        Assert.Contains(signalId, timeout, StringComparison.Ordinal);
        Assert.Contains(peerB.Id, timeout, StringComparison.Ordinal);
        Assert.DoesNotContain(peerA.Id, timeout, StringComparison.Ordinal);
        var complete = Assert.Single(messages, m => m.Contains("ACK wait complete", StringComparison.Ordinal));
        Assert.Contains(signalId, complete, StringComparison.Ordinal);
        Assert.Contains("timeout", complete, StringComparison.Ordinal);

        Assert.Equal(1, h.Metrics.TimeoutEvents.WithLabels(self.Id, "blocking", "blocking").Value);
        Assert.Equal(1, h.Metrics.BlockingDuration.WithLabels(self.SwarmId, self.Id, "timeout").Count);
        Assert.Equal(0, h.Metrics.BlockingDuration.WithLabels(self.SwarmId, self.Id, "completed").Count);
    }

    [Fact]
    public async Task WaitForAcks_NobodyAcks_ReturnsEmptyMapWithoutThrowing()
    {
        await using var h = Harness.Create(server);
        var self = await h.StartAsync();
        var ghost = TestIds.New("ghost");

        var result = await self.Waiter.WaitForAcksAsync([ghost], TestIds.New("signal"), TimeSpan.FromMilliseconds(500));

        Assert.Equal(AckWaitStatus.Timeout, result.Status);
        Assert.Empty(result.Acks);
        Assert.Equal([ghost], result.Missing);
    }

    [Fact]
    public async Task WaitForAcks_NoTimeoutGiven_UsesConfiguredBlockingTimeout()
    {
        await using var h = Harness.Create(server, o => o.BlockingTimeout = TimeSpan.FromMilliseconds(700));
        var self = await h.StartAsync();

        var waiting = self.Waiter.WaitForAcksAsync([TestIds.New("ghost")], TestIds.New("signal"));
        var result = await waiting.WaitAsync(TimeSpan.FromSeconds(20));

        Assert.Equal(AckWaitStatus.Timeout, result.Status);
        Assert.Contains(h.Messages, m => m.Contains("Waiting for ACKs", StringComparison.Ordinal)
                                          && m.Contains("700", StringComparison.Ordinal));
    }

    [Fact]
    public async Task WaitForAcks_EmptyList_CompletesImmediately()
    {
        await using var h = Harness.Create(server);
        var self = await h.StartAsync();

        var result = await self.Waiter.WaitForAcksAsync([], TestIds.New("signal"), TimeSpan.FromSeconds(30))
            .WaitAsync(TimeSpan.FromSeconds(10));

        Assert.Equal(AckWaitStatus.Completed, result.Status);
        Assert.Empty(result.Acks);
        Assert.Empty(result.Missing);
    }

    [Theory]
    [InlineData("a*b")]
    [InlineData("a:b")]
    [InlineData("")]
    public async Task WaitForAcks_InvalidCoordinatorId_ThrowsAndDoesNotBlock(string badId)
    {
        await using var h = Harness.Create(server);
        var self = await h.StartAsync();

        var e = await Assert.ThrowsAsync<InvalidIdException>(
            () => self.Waiter.WaitForAcksAsync(["peer-1", badId], TestIds.New("signal"), TimeSpan.FromSeconds(30)));

        Assert.Equal("coordinatorIds", e.Field);
        Assert.Empty(h.Metrics.BlockingActive.GetAllLabelValues());
        Assert.Equal("idle", (await ActivityAsync(h, self.Id)).RootElement.GetProperty("status").GetString());
    }

    [Theory]
    [InlineData("sig*")]
    [InlineData("a::b")]
    public async Task WaitForAcks_InvalidSignalId_ThrowsNamingSignalId(string signalId)
    {
        await using var h = Harness.Create(server);
        var self = await h.StartAsync();

        var e = await Assert.ThrowsAsync<InvalidIdException>(
            () => self.Waiter.WaitForAcksAsync(["peer-1"], signalId, TimeSpan.FromSeconds(30)));

        Assert.Equal("signalId", e.Field);
    }

    [Fact]
    public async Task WaitForAcks_TimeoutBeyondTimerRange_LeavesNoBlockingStateBehind()
    {
        // 60 days is a positive timeout that a timer cannot represent (the limit is about 49.7 days). Whether the
        // waiter refuses it or waits, the coordinator must not stay "blocking" (gauge, status) once the call is over.
        await using var h = Harness.Create(server);
        var self = await h.StartAsync();
        var peer = TestIds.New("peer");

        try
        {
            var waiting = self.Waiter.WaitForAcksAsync([peer], TestIds.New("signal"), TimeSpan.FromDays(60));
            if (!waiting.IsCompleted)
            {
                await WaitUntilAsync(() => Task.FromResult(self.ForceUnblock() > 0), "a wait to force-unblock");
            }

            await waiting.WaitAsync(TimeSpan.FromSeconds(20));
        }
        catch (ArgumentOutOfRangeException)
        {
            // refusing the timeout is fine
        }

        Assert.Empty(h.Metrics.BlockingActive.GetAllLabelValues());
        Assert.NotEqual("blocking", self.Status);
        Assert.Equal(0, self.ForceUnblock());
    }

    [Fact]
    public async Task WaitForAcks_Cancelled_ReturnsCancelledWithoutException()
    {
        await using var h = Harness.Create(server);
        var self = await h.StartAsync();
        var peer = TestIds.New("peer");
        using var cts = new CancellationTokenSource();

        var waiting = self.Waiter.WaitForAcksAsync([peer], TestIds.New("signal"), TimeSpan.FromMinutes(5), cts.Token);
        await WaitUntilAsync(() => Task.FromResult(IsBlockingGaugePresent(h, self)), "the wait to start");
        await cts.CancelAsync();
        var result = await waiting.WaitAsync(TimeSpan.FromSeconds(20));

        Assert.Equal(AckWaitStatus.Cancelled, result.Status);
        Assert.Equal([peer], result.Missing);
        Assert.Equal(0, h.Metrics.TimeoutEvents.WithLabels(self.Id, "blocking", "blocking").Value);
        Assert.False(IsBlockingGaugePresent(h, self));
    }

    [Fact]
    public async Task WaitForAcks_ForceUnblock_ReturnsForcedAndLogs()
    {
        await using var h = Harness.Create(server);
        var self = await h.StartAsync();
        var peer = TestIds.New("peer");
        var signalId = TestIds.New("signal");

        var waiting = self.Waiter.WaitForAcksAsync([peer], signalId, TimeSpan.FromMinutes(5));
        await WaitUntilAsync(() => Task.FromResult(self.ForceUnblock() > 0), "a wait to force-unblock");
        var result = await waiting.WaitAsync(TimeSpan.FromSeconds(20));

        Assert.Equal(AckWaitStatus.Forced, result.Status);
        Assert.Equal([peer], result.Missing);
        Assert.Contains(h.Messages, m => m.Contains("Force unblock received", StringComparison.Ordinal)
                                          && m.Contains(signalId, StringComparison.Ordinal));
        Assert.Equal(1, h.Metrics.BlockingDuration.WithLabels(self.SwarmId, self.Id, "forced").Count);
        Assert.Equal(0, h.Metrics.TimeoutEvents.WithLabels(self.Id, "blocking", "blocking").Value);
    }

    [Fact]
    public async Task WaitForAcks_UnblockPublishedOnEventsChannel_ReturnsForced()
    {
        await using var h = Harness.Create(server);
        var self = await h.StartAsync();
        var peer = TestIds.New("peer");

        var waiting = self.Waiter.WaitForAcksAsync([peer], TestIds.New("signal"), TimeSpan.FromMinutes(5));
        await WaitUntilAsync(async () => await ActivityStatusAsync(h, self.Id) == "blocking", "the wait to start");
        var subscribers = await server.Database.PublishAsync(RedisChannel.Literal($"cfn:events:{self.Id}"), "unblock");
        var result = await waiting.WaitAsync(TimeSpan.FromSeconds(20));

        Assert.True(subscribers >= 1);
        Assert.Equal(AckWaitStatus.Forced, result.Status);
        Assert.Contains(h.Messages, m => m.Contains("Force unblock received", StringComparison.Ordinal));
    }

    [Fact]
    public async Task WaitForAcks_MalformedAckUnderAwaitedKey_DoesNotAbortWaitAndIsCounted()
    {
        await using var h = Harness.Create(server);
        var self = await h.StartAsync();
        var good = await h.StartAsync();
        var badId = TestIds.New("bad");
        var signalId = TestIds.New("signal");
        await h.Database.StringSetAsync($"blocking:ack:{badId}:{signalId}", "not json");
        await good.Acks.AcknowledgeAsync(signalId, self.Id, SignalTypes.Completion, null, 1);

        var result = await self.Waiter.WaitForAcksAsync([good.Id, badId], signalId, TimeSpan.FromSeconds(2));

        Assert.Equal(AckWaitStatus.Timeout, result.Status);
        Assert.True(result.Acks.ContainsKey(good.Id));
        Assert.Equal([badId], result.Missing);
        Assert.Equal(1, h.Metrics.AckVerificationFailures.WithLabels(self.Id, "malformed").Value);
        Assert.Contains(h.Messages, m => m.Contains("ACK signature verification failed", StringComparison.Ordinal)
                                          && m.Contains(badId, StringComparison.Ordinal));
    }

    [Fact]
    public async Task WaitForAcks_MalformedAckLaterReplacedByGenuineAck_Completes()
    {
        await using var h = Harness.Create(server);
        var self = await h.StartAsync();
        var peer = await h.StartAsync();
        var signalId = TestIds.New("signal");
        await h.Database.StringSetAsync($"blocking:ack:{peer.Id}:{signalId}", "{\"coordinatorId\":");

        var waiting = self.Waiter.WaitForAcksAsync([peer.Id], signalId, TimeSpan.FromSeconds(30));
        await WaitUntilAsync(
            () => Task.FromResult(h.Metrics.AckVerificationFailures.WithLabels(self.Id, "malformed").Value >= 1),
            "the malformed ACK to be seen");
        await peer.Acks.AcknowledgeAsync(signalId, self.Id, SignalTypes.Completion, null, 1);
        var result = await waiting.WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(AckWaitStatus.Completed, result.Status);
        Assert.Equal(peer.Id, result.Acks[peer.Id].CoordinatorId);
    }

    [Fact]
    public async Task WaitForAcks_AckCopiedFromAnotherCoordinator_RejectedAsCoordinatorMismatch()
    {
        await using var h = Harness.Create(server);
        var self = await h.StartAsync();
        var peerA = await h.StartAsync();
        var peerBId = TestIds.New("peer-b");
        var signalId = TestIds.New("signal");
        await peerA.Acks.AcknowledgeAsync(signalId, self.Id, SignalTypes.Completion, null, 1);
        var genuine = await h.Database.StringGetAsync($"blocking:ack:{peerA.Id}:{signalId}");
        await h.Database.StringSetAsync($"blocking:ack:{peerBId}:{signalId}", genuine);

        var result = await self.Waiter.WaitForAcksAsync([peerBId], signalId, TimeSpan.FromSeconds(1));

        Assert.Equal(AckWaitStatus.Timeout, result.Status);
        Assert.Empty(result.Acks);
        Assert.Equal([peerBId], result.Missing);
        Assert.Equal(1, h.Metrics.AckVerificationFailures.WithLabels(self.Id, "coordinator_mismatch").Value);
    }

    [Fact]
    public async Task WaitForAcks_AckOfAnotherSignalCopied_RejectedAsSignalMismatch()
    {
        await using var h = Harness.Create(server);
        var self = await h.StartAsync();
        var peer = await h.StartAsync();
        var otherSignal = TestIds.New("signal-old");
        var signalId = TestIds.New("signal");
        await peer.Acks.AcknowledgeAsync(otherSignal, self.Id, SignalTypes.Completion, null, 1);
        var replayed = await h.Database.StringGetAsync($"blocking:ack:{peer.Id}:{otherSignal}");
        await h.Database.StringSetAsync($"blocking:ack:{peer.Id}:{signalId}", replayed);

        var result = await self.Waiter.WaitForAcksAsync([peer.Id], signalId, TimeSpan.FromSeconds(1));

        Assert.Equal(AckWaitStatus.Timeout, result.Status);
        Assert.Equal([peer.Id], result.Missing);
        Assert.Equal(1, h.Metrics.AckVerificationFailures.WithLabels(self.Id, "signal_mismatch").Value);
    }

    [Fact]
    public async Task WaitForAcks_DuplicateTargetIds_CompletesOnceThePeerAcks()
    {
        await using var h = Harness.Create(server);
        var self = await h.StartAsync();
        var peer = await h.StartAsync();
        var signalId = TestIds.New("signal");

        var waiting = self.Waiter.WaitForAcksAsync([peer.Id, peer.Id, peer.Id], signalId, TimeSpan.FromSeconds(30));
        await peer.Acks.AcknowledgeAsync(signalId, self.Id, SignalTypes.Completion, null, 1);
        var result = await waiting.WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(AckWaitStatus.Completed, result.Status);
        Assert.Single(result.Acks);
        Assert.Empty(result.Missing);
        var line = Assert.Single(h.Messages, m => m.Contains("Waiting for ACKs", StringComparison.Ordinal));
        Assert.DoesNotContain($"{peer.Id},{peer.Id}", line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task WaitForAcks_ThousandConcurrentWaitsInOneProcess_AllComplete()
    {
        const int senders = 20;
        const int signalsPerSender = 50;
        await using var h = Harness.Create(server);
        var receiver = await h.StartAsync();
        var senderList = new List<Coordinator>();
        for (var i = 0; i < senders; i++)
        {
            senderList.Add(await h.StartAsync());
        }

        var plan = senderList
            .SelectMany(s => Enumerable.Range(0, signalsPerSender).Select(i => (Sender: s, SignalId: $"{s.Id}:{receiver.Id}:completion:1:{i}")))
            .ToList();
        var waits = plan.Select(p => p.Sender.Waiter.WaitForAcksAsync([receiver.Id], p.SignalId, TimeSpan.FromSeconds(90))).ToList();

        await Task.WhenAll(plan.Select(p =>
            receiver.Acks.AcknowledgeAsync(p.SignalId, p.Sender.Id, SignalTypes.Completion, null, 1)));
        var results = await Task.WhenAll(waits).WaitAsync(TimeSpan.FromSeconds(120));

        Assert.Equal(senders * signalsPerSender, results.Length);
        Assert.All(results, r => Assert.Equal(AckWaitStatus.Completed, r.Status));
        Assert.All(results, r => Assert.Equal(receiver.Id, r.Acks[receiver.Id].CoordinatorId));
        Assert.Empty(h.Metrics.BlockingActive.GetAllLabelValues());
        foreach (var sender in senderList)
        {
            Assert.Equal(signalsPerSender, h.Metrics.BlockingDuration.WithLabels(sender.SwarmId, sender.Id, "completed").Count);
        }
    }

    [Fact]
    public async Task WaitForAcks_AckWrittenWithoutWakeUp_ReleasedByFallbackPoll()
    {
        await using var h = Harness.Create(server, o => o.AckFallbackPollInterval = TimeSpan.FromMilliseconds(200));
        var self = await h.StartAsync();
        var peerId = TestIds.New("peer");
        var signalId = TestIds.New("signal");

        var waiting = self.Waiter.WaitForAcksAsync([peerId], signalId, TimeSpan.FromSeconds(60));
        // The fallback poll has looked at this wait at least once, so the wait's own first read is long done.
        await WaitUntilAsync(() => Task.FromResult(h.Redis.Wakeups.FallbackReads > 0), "the fallback poll to run");
        Assert.False(waiting.IsCompleted);
        var readsBefore = h.Redis.Wakeups.FallbackReads;

        // A correctly signed ACK written like a TS coordinator would: plain SET, no PUBLISH.
        await h.Database.StringSetAsync($"blocking:ack:{peerId}:{signalId}", TestAcks.SignedJson(h.Keys, peerId, signalId));
        var result = await waiting.WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(AckWaitStatus.Completed, result.Status);
        Assert.Equal(peerId, result.Acks[peerId].CoordinatorId);
        Assert.True(h.Redis.Wakeups.FallbackReads > readsBefore);
    }

    [Fact]
    public async Task WaitForAcks_AckArrivesWithItsWakeUp_ReleasedWithoutReadingTheKey()
    {
        // The ACK script publishes the stored ACK with the wake-up. Shown with a wake-up whose ACK is not stored at all:
        // only the message can release the wait (the fallback is set beyond the test).
        await using var h = Harness.Create(server, o => o.AckFallbackPollInterval = TimeSpan.FromMinutes(10));
        var self = await h.StartAsync();
        var peer = await h.StartAsync();
        var signalId = TestIds.New("signal");
        var waiting = self.Waiter.WaitForAcksAsync([peer.Id], signalId, TimeSpan.FromSeconds(30));
        await WaitUntilAsync(async () => await ActivityStatusAsync(h, self.Id) == "blocking", "the wait to start");

        await h.Database.PublishAsync(RedisChannel.Literal($"cfn:events:{self.Id}"), $"ack {signalId} {peer.Id} {TestAcks.SignedJson(h.Keys, peer.Id, signalId)}");
        var result = await waiting.WaitAsync(TimeSpan.FromSeconds(20));

        Assert.Equal(AckWaitStatus.Completed, result.Status);
        Assert.Equal(peer.Id, result.Acks[peer.Id].CoordinatorId);
        Assert.False(await h.Database.KeyExistsAsync(Keys.Ack(peer.Id, signalId)));
    }

    [Fact]
    public async Task WaitForAcks_ForgedAckInTheWakeUp_RejectedCountedAndTheStoredAckDecides()
    {
        await using var h = Harness.Create(server, o => o.AckFallbackPollInterval = TimeSpan.FromMinutes(10));
        var self = await h.StartAsync();
        var peer = await h.StartAsync();
        var signalId = TestIds.New("signal");
        var waiting = self.Waiter.WaitForAcksAsync([peer.Id], signalId, TimeSpan.FromSeconds(30));
        await WaitUntilAsync(async () => await ActivityStatusAsync(h, self.Id) == "blocking", "the wait to start");
        var channel = RedisChannel.Literal($"cfn:events:{self.Id}");

        var forged = TestAcks.SignedJson(new SigningKeys("another-secret-0123456789abcdef0123456789"), peer.Id, signalId);
        await h.Database.PublishAsync(channel, $"ack {signalId} {peer.Id} {forged}");
        await WaitUntilAsync(() => Task.FromResult(h.Metrics.AckVerificationFailures.WithLabels(self.Id, "bad_signature").Value >= 1),
            "the forged ACK to be counted");
        // Shows the forged ACK released nothing (a negative check: no event marks a release that does not happen). Nothing
        // periodic is involved (the fallback poll is 10 minutes): 200 ms is ample time for its wake-up to have been handled.
        await Task.Delay(200);
        Assert.False(waiting.IsCompleted);

        // A genuine ACK stored without its JSON in the wake-up: the waiter reads it.
        await h.Database.StringSetAsync(Keys.Ack(peer.Id, signalId), TestAcks.SignedJson(h.Keys, peer.Id, signalId));
        await h.Database.PublishAsync(channel, $"ack {signalId} {peer.Id}");
        var result = await waiting.WaitAsync(TimeSpan.FromSeconds(20));

        Assert.Equal(AckWaitStatus.Completed, result.Status);
        Assert.Single(h.Messages, m => m.Contains("ACK signature verification failed in waitForAcks", StringComparison.Ordinal));
    }

    [Fact]
    public async Task WaitForAcks_PeerIsACfnCoordinator_FallbackReadsNothingUntilAReconnect()
    {
        // A registered peer publishes every ACK's wake-up, so the fallback does not read its ACK key: an ACK written
        // by hand (a wake-up "lost") stays unseen until the client reports a reconnect, which re-reads everything.
        // The fallback check runs on the process's clock: a fake one, moved one period at a time.
        var time = new FakeTimeProvider();
        await using var h = await Harness.CreateIsolatedAsync(server, o => o.AckFallbackPollInterval = TimeSpan.FromMilliseconds(100), time);
        var self = await h.StartAsync();
        var peer = await h.StartAsync();
        var signalId = TestIds.New("signal");
        var waiting = self.Waiter.WaitForAcksAsync([peer.Id], signalId, TimeSpan.FromSeconds(60));
        await WaitUntilAsync(async () => await ActivityStatusAsync(h, self.Id) == "blocking", "the wait to start");
        long FallbackPasses() => h.Redis.Loops.Snapshot().Where(l => l.Loop == LoopNames.AckFallback).Sum(l => l.Passes);
        async Task FallbackPeriodAsync()
        {
            var before = FallbackPasses();
            time.Advance(h.Options.AckFallbackPollInterval);
            await WaitUntilAsync(() => Task.FromResult(FallbackPasses() > before), "a fallback pass on the clock's tick");
        }

        await FallbackPeriodAsync();
        Assert.True(h.Redis.Wakeups.PublisherLookups > 0, "the fallback check did not look the peer up");

        await h.Database.StringSetAsync(Keys.Ack(peer.Id, signalId), TestAcks.SignedJson(h.Keys, peer.Id, signalId));
        // Shows the ACK stays unseen: ten fallback passes, each one completed, read nothing.
        for (var period = 0; period < 10; period++)
        {
            await FallbackPeriodAsync();
        }

        Assert.False(waiting.IsCompleted);
        Assert.Equal(0, h.Redis.Wakeups.FallbackReads);
        Assert.Equal(1, h.Redis.Wakeups.PublisherLookups); // learnt once, remembered

        Assert.True(await h.KillSubscriptionAsync() > 0);
        var result = await waiting.WaitAsync(TimeSpan.FromSeconds(20));

        Assert.Equal(AckWaitStatus.Completed, result.Status);
        Assert.Contains(h.Messages, m => m.Contains("connection restored", StringComparison.Ordinal));
    }

    [Fact]
    public async Task WaitForAcks_PeerNotRegistered_PolledEveryPeriodUntilItAcks()
    {
        // A peer missing from blocking:coordinators may be a TS coordinator, whose ACK is a plain SETEX: polled.
        await using var h = await Harness.CreateIsolatedAsync(server, o => o.AckFallbackPollInterval = TimeSpan.FromMilliseconds(100));
        var self = await h.StartAsync();
        var peerId = TestIds.New("ts-peer");
        var signalId = TestIds.New("signal");
        var waiting = self.Waiter.WaitForAcksAsync([peerId], signalId, TimeSpan.FromSeconds(60));
        await WaitUntilAsync(() => Task.FromResult(h.Redis.Wakeups.FallbackReads >= 3), "three fallback reads");
        Assert.False(waiting.IsCompleted);
        Assert.Equal(1, h.Redis.Wakeups.PublisherLookups);

        await h.Database.StringSetAsync(Keys.Ack(peerId, signalId), TestAcks.SignedJson(h.Keys, peerId, signalId));
        var result = await waiting.WaitAsync(TimeSpan.FromSeconds(20));

        Assert.Equal(AckWaitStatus.Completed, result.Status);
    }

    [Fact]
    public async Task WaitForAcks_WhileWaiting_ActivityShowsBlockingAndWaitingFor()
    {
        await using var h = Harness.Create(server);
        var self = await h.StartAsync();
        var peerA = await h.StartAsync();
        var peerB = await h.StartAsync();
        var signalId = TestIds.New("signal");

        var waiting = self.Waiter.WaitForAcksAsync([peerA.Id, peerB.Id], signalId, TimeSpan.FromSeconds(60));
        await WaitUntilAsync(async () => await ActivityStatusAsync(h, self.Id) == "blocking", "K7 status blocking");
        using (var doc = await ActivityAsync(h, self.Id))
        {
            var root = doc.RootElement;
            Assert.Equal($"{peerA.Id},{peerB.Id}", root.GetProperty("waitingFor").GetString());
            Assert.Equal(signalId, root.GetProperty("waitingForSignal").GetString());
            Assert.Equal(60_000, root.GetProperty("timeoutMs").GetInt64());
            Assert.Equal(JsonValueKind.Number, root.GetProperty("lastActivity").ValueKind);
        }

        await peerA.Acks.AcknowledgeAsync(signalId, self.Id, SignalTypes.Completion, null, 1);
        await WaitUntilAsync(async () => await WaitingForAsync(h, self.Id) == peerB.Id, "waitingFor to shrink to the missing peer");

        await peerB.Acks.AcknowledgeAsync(signalId, self.Id, SignalTypes.Completion, null, 1);
        var result = await waiting.WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(AckWaitStatus.Completed, result.Status);
        using var after = await ActivityAsync(h, self.Id);
        Assert.NotEqual("blocking", after.RootElement.GetProperty("status").GetString());
        Assert.False(after.RootElement.TryGetProperty("waitingFor", out _), "waitingFor must be absent after the wait");
        Assert.False(after.RootElement.TryGetProperty("waitingForSignal", out _), "waitingForSignal must be absent after the wait");
    }

    [Fact]
    public async Task WaitForAcks_WhileWaiting_BlockingGaugeIsOneWithPhaseNoneThenRemoved()
    {
        await using var h = Harness.Create(server);
        var self = await h.StartAsync();
        var peer = await h.StartAsync();
        var signalId = TestIds.New("signal");

        var waiting = self.Waiter.WaitForAcksAsync([peer.Id], signalId, TimeSpan.FromSeconds(60));
        await WaitUntilAsync(() => Task.FromResult(IsBlockingGaugePresent(h, self)), "the blocking gauge");
        var labels = Assert.Single(h.Metrics.BlockingActive.GetAllLabelValues());
        Assert.Equal([self.Id, self.SwarmId, "none"], labels);
        var during = await ExportAsync(h);
        Assert.Contains(
            $"blocking_coordinators_active{{coordinator_id=\"{self.Id}\",swarm_id=\"{self.SwarmId}\",phase=\"none\"}} 1",
            during, StringComparison.Ordinal);
        Assert.Contains($"blocking_current_duration_seconds{{coordinator_id=\"{self.Id}\"", during, StringComparison.Ordinal);

        await peer.Acks.AcknowledgeAsync(signalId, self.Id, SignalTypes.Completion, null, 1);
        var result = await waiting.WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(AckWaitStatus.Completed, result.Status);
        Assert.Empty(h.Metrics.BlockingActive.GetAllLabelValues());
        var after = await ExportAsync(h);
        Assert.DoesNotContain($"blocking_coordinators_active{{coordinator_id=\"{self.Id}\"", after, StringComparison.Ordinal);
        Assert.DoesNotContain($"blocking_current_duration_seconds{{coordinator_id=\"{self.Id}\"", after, StringComparison.Ordinal);
        Assert.Equal(1, h.Metrics.BlockingDuration.WithLabels(self.SwarmId, self.Id, "completed").Count);
    }

    [Fact]
    public async Task WaitForAcks_PhaseSet_BlockingGaugeCarriesPhaseLabel()
    {
        await using var h = Harness.Create(server);
        var self = await h.StartAsync();
        await self.SetIterationAsync(2, "loop-2-validation");
        var peer = await h.StartAsync();
        var signalId = TestIds.New("signal");

        var waiting = self.Waiter.WaitForAcksAsync([peer.Id], signalId, TimeSpan.FromSeconds(60));
        await WaitUntilAsync(() => Task.FromResult(IsBlockingGaugePresent(h, self)), "the blocking gauge");
        Assert.Equal([self.Id, self.SwarmId, "loop-2-validation"], Assert.Single(h.Metrics.BlockingActive.GetAllLabelValues()));

        await peer.Acks.AcknowledgeAsync(signalId, self.Id, SignalTypes.Completion, null, 1);
        Assert.Equal(AckWaitStatus.Completed, (await waiting.WaitAsync(TimeSpan.FromSeconds(30))).Status);
        Assert.Empty(h.Metrics.BlockingActive.GetAllLabelValues());
    }

    [Fact]
    public async Task WaitForAcks_SecretRotation_AcceptsNewAndOldSecretRejectsUnrelated()
    {
        const string newSecret = "rotated-secret-fedcba9876543210fedcba9876543210";
        await using var h = Harness.Create(server);
        var self = await h.StartAsync(keys: new SigningKeys(Harness.Secret, newSecret));
        var onNew = await h.StartAsync(keys: new SigningKeys(newSecret));
        var onOld = await h.StartAsync(keys: new SigningKeys(Harness.Secret));
        var stranger = await h.StartAsync(keys: new SigningKeys("unrelated-secret-00000000000000000000000000"));
        var signalId = TestIds.New("signal");
        await onNew.Acks.AcknowledgeAsync(signalId, self.Id, SignalTypes.Completion, null, 1);
        await onOld.Acks.AcknowledgeAsync(signalId, self.Id, SignalTypes.Completion, null, 1);
        await stranger.Acks.AcknowledgeAsync(signalId, self.Id, SignalTypes.Completion, null, 1);

        var accepted = await self.Waiter.WaitForAcksAsync([onNew.Id, onOld.Id], signalId, TimeSpan.FromSeconds(10));
        var rejected = await self.Waiter.WaitForAcksAsync([stranger.Id], signalId, TimeSpan.FromSeconds(1));

        Assert.Equal(AckWaitStatus.Completed, accepted.Status);
        Assert.Equal(2, accepted.Acks.Count);
        Assert.Equal(AckWaitStatus.Timeout, rejected.Status);
        Assert.Equal([stranger.Id], rejected.Missing);
        Assert.Equal(1, h.Metrics.AckVerificationFailures.WithLabels(self.Id, "bad_signature").Value);
    }

    [Fact]
    public async Task WaitForAcks_ForgedSignatureAck_RejectedAsBadSignature()
    {
        await using var h = Harness.Create(server);
        var self = await h.StartAsync();
        var peerId = TestIds.New("peer");
        var signalId = TestIds.New("signal");
        var forger = new SigningKeys("forger-secret-0000000000000000000000000000");
        await h.Database.StringSetAsync($"blocking:ack:{peerId}:{signalId}", TestAcks.SignedJson(forger, peerId, signalId));

        var result = await self.Waiter.WaitForAcksAsync([peerId], signalId, TimeSpan.FromSeconds(1));

        Assert.Equal(AckWaitStatus.Timeout, result.Status);
        Assert.Equal(1, h.Metrics.AckVerificationFailures.WithLabels(self.Id, "bad_signature").Value);
    }

    [Fact]
    public async Task WaitForAcks_TwoConcurrentWaitsOnOneCoordinator_EachEndsIndependently()
    {
        await using var h = Harness.Create(server);
        var self = await h.StartAsync();
        var peer = await h.StartAsync();
        var signal1 = TestIds.New("signal");
        var signal2 = TestIds.New("signal");

        var wait1 = self.Waiter.WaitForAcksAsync([peer.Id], signal1, TimeSpan.FromSeconds(60));
        var wait2 = self.Waiter.WaitForAcksAsync([peer.Id], signal2, TimeSpan.FromSeconds(60));
        await peer.Acks.AcknowledgeAsync(signal1, self.Id, SignalTypes.Completion, null, 1);
        var result1 = await wait1.WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(AckWaitStatus.Completed, result1.Status);
        Assert.False(wait2.IsCompleted);
        Assert.True(IsBlockingGaugePresent(h, self), "the gauge must stay while another wait runs");
        Assert.Equal("blocking", await ActivityStatusAsync(h, self.Id));

        await peer.Acks.AcknowledgeAsync(signal2, self.Id, SignalTypes.Completion, null, 1);
        Assert.Equal(AckWaitStatus.Completed, (await wait2.WaitAsync(TimeSpan.FromSeconds(30))).Status);
        Assert.False(IsBlockingGaugePresent(h, self));
    }

    private static bool IsBlockingGaugePresent(Harness h, Coordinator c) =>
        h.Metrics.BlockingActive.GetAllLabelValues().Any(l => l[0] == c.Id);


    private static async Task<JsonDocument> ActivityAsync(Harness h, string coordinatorId)
    {
        var raw = (string?)await h.Database.StringGetAsync($"coordinator:activity:{coordinatorId}");
        Assert.NotNull(raw);
        return JsonDocument.Parse(raw);
    }

    private static async Task<string?> ActivityStatusAsync(Harness h, string coordinatorId)
    {
        var raw = (string?)await h.Database.StringGetAsync($"coordinator:activity:{coordinatorId}");
        if (raw is null)
        {
            return null;
        }

        using var doc = JsonDocument.Parse(raw);
        return doc.RootElement.TryGetProperty("status", out var s) ? s.GetString() : null;
    }

    private static async Task<string?> WaitingForAsync(Harness h, string coordinatorId)
    {
        var raw = (string?)await h.Database.StringGetAsync($"coordinator:activity:{coordinatorId}");
        if (raw is null)
        {
            return null;
        }

        using var doc = JsonDocument.Parse(raw);
        return doc.RootElement.TryGetProperty("waitingFor", out var w) ? w.GetString() : null;
    }

    private static async Task<string> ExportAsync(Harness h)
    {
        using var stream = new MemoryStream();
        await h.Registry.CollectAndExportAsTextAsync(stream);
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    /// <summary>Polls a condition (for intermediate states no awaitable result exposes); fails after a generous limit.</summary>
    private static Task WaitUntilAsync(Func<Task<bool>> condition, string what) =>
        EventuallyAsync(condition, $"timed out waiting for {what}", TimeSpan.FromSeconds(20));
}
