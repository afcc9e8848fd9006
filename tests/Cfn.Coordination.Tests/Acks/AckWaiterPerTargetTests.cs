using Cfn.Coordination.Acks;
using Cfn.Coordination.Signals;
using Cfn.Coordination.Tests.Infrastructure;

namespace Cfn.Coordination.Tests.Acks;

[Collection(RedisCollection.Name)]
public sealed class AckWaiterPerTargetTests(RedisServer server)
{
    [Fact]
    public async Task WaitForAcks_EachReceiverAcksItsOwnSignal_OneWaitCompletesByWakeUps()
    {
        // The fallback poll is far beyond the test: only wake-ups on each receiver's own signal ID can end it in time.
        await using var h = Harness.Create(server, o => o.AckFallbackPollInterval = TimeSpan.FromMinutes(10));
        var sender = await h.StartAsync();
        var r1 = await h.StartAsync();
        var r2 = await h.StartAsync();
        var s1 = await sender.Signals.SendAsync(r1.Id, SignalTypes.Validation, 1);
        var s2 = await sender.Signals.SendAsync(r2.Id, SignalTypes.Validation, 1);

        var waiting = sender.Waiter.WaitForAcksAsync(
            new Dictionary<string, string> { [r1.Id] = s1.MessageId, [r2.Id] = s2.MessageId }, TimeSpan.FromSeconds(30));
        await EventuallyAsync(() => sender.Status == "blocking", "the sender never started waiting");
        await r1.Acks.AcknowledgeAsync(s1.MessageId, sender.Id, SignalTypes.Validation, null, s1.Timestamp);
        // Shows one ACK of two does not end the wait (a negative check: nothing marks "not ended"). Nothing periodic is involved (the fallback poll is 10 minutes): 200 ms
        // is ample time for its wake-up to have been handled.
        await Task.Delay(200);
        Assert.False(waiting.IsCompleted);
        await r2.Acks.AcknowledgeAsync(s2.MessageId, sender.Id, SignalTypes.Validation, null, s2.Timestamp);
        var result = await waiting.WaitAsync(TimeSpan.FromSeconds(10));

        Assert.Equal(AckWaitStatus.Completed, result.Status);
        Assert.Equal(s1.MessageId, result.SignalId);
        Assert.Equal(s1.MessageId, result.Acks[r1.Id].SignalId);
        Assert.Equal(s2.MessageId, result.Acks[r2.Id].SignalId);
        var line = Assert.Single(RecoveryKit.Lines(h, "Waiting for ACKs", s1.MessageId));
        Assert.Contains($"coordinators={r1.Id},{r2.Id}", line.Message, StringComparison.Ordinal);
        Assert.Contains(s2.MessageId, line.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task WaitForAcks_AckOfAnotherReceiversSignal_DoesNotCount()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var r1 = await h.StartAsync();
        var r2 = await h.StartAsync();
        var s1 = await sender.Signals.SendAsync(r1.Id, SignalTypes.Validation, 1);
        var s2 = await sender.Signals.SendAsync(r2.Id, SignalTypes.Validation, 1);
        await r1.Acks.AcknowledgeAsync(s1.MessageId, sender.Id, SignalTypes.Validation, null, s1.Timestamp);
        await r2.Acks.AcknowledgeAsync(s1.MessageId, sender.Id, SignalTypes.Validation, null, s1.Timestamp); // the wrong signal

        var result = await sender.Waiter.WaitForAcksAsync(
            new Dictionary<string, string> { [r1.Id] = s1.MessageId, [r2.Id] = s2.MessageId }, TimeSpan.FromMilliseconds(500));

        Assert.Equal(AckWaitStatus.Timeout, result.Status);
        Assert.Equal([r2.Id], result.Missing);
        Assert.Empty(sender.Mailbox.Waits);
    }
}
