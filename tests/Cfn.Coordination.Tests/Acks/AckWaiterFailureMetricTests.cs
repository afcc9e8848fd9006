using Cfn.Coordination.Acks;
using Cfn.Coordination.Signals;
using Cfn.Coordination.Tests.Infrastructure;

namespace Cfn.Coordination.Tests.Acks;

/// <summary>
/// <c>signals_failed_total{coordinator_id, signal_type, reason="ack_timeout"}</c> (SPEC §3.2, runbook #91) counted where an
/// ACK wait times out: once per awaited receiver that did not ACK, by the waiting coordinator, with the type of its signal.
/// </summary>
[Collection(RedisCollection.Name)]
public sealed class AckWaiterFailureMetricTests(RedisServer server)
{
    private static double Failed(Harness h, Coordinator sender, string type) =>
        h.Metrics.SignalsFailed.WithLabels(sender.Id, type, "ack_timeout").Value;

    [Fact]
    public async Task SharedSignalId_TwoOfThreeReceiversSilent_CountedOncePerSilentReceiverWithTheType()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var acking = await h.StartAsync();
        var silent1 = await h.StartAsync();
        var silent2 = await h.StartAsync();
        var signalId = $"{sender.Id}:{acking.Id}:completion:3:{DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()}";
        await acking.Acks.AcknowledgeAsync(signalId, sender.Id, SignalTypes.Completion, null, 1);

        var result = await sender.Waiter.WaitForAcksAsync([acking.Id, silent1.Id, silent2.Id], signalId, TimeSpan.FromMilliseconds(300));

        Assert.Equal(AckWaitStatus.Timeout, result.Status);
        Assert.Equal(2, Failed(h, sender, SignalTypes.Completion));
        Assert.Equal(0, Failed(h, sender, SignalTypes.Unknown));
        // Only the waiting (sending) coordinator is labelled.
        Assert.Equal(0, h.Metrics.SignalsFailed.WithLabels(silent1.Id, SignalTypes.Completion, "ack_timeout").Value);
    }

    [Fact]
    public async Task PerTargetOverload_EachSilentReceiverCountedWithItsOwnSignalsType()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var r1 = await h.StartAsync();
        var r2 = await h.StartAsync();
        var r3 = await h.StartAsync();
        var s1 = await sender.Signals.SendAsync(r1.Id, SignalTypes.Validation, 1);
        var s2 = await sender.Signals.SendAsync(r2.Id, SignalTypes.Validation, 1);
        var s3 = await sender.Signals.SendAsync(r3.Id, "retry", 1); // the accepted alias, labelled by its wire value
        await r1.Acks.AcknowledgeAsync(s1.MessageId, sender.Id, SignalTypes.Validation, null, s1.Timestamp);

        var result = await sender.Waiter.WaitForAcksAsync(
            new Dictionary<string, string> { [r1.Id] = s1.MessageId, [r2.Id] = s2.MessageId, [r3.Id] = s3.MessageId },
            TimeSpan.FromMilliseconds(300));

        Assert.Equal(AckWaitStatus.Timeout, result.Status);
        Assert.Equal(1, Failed(h, sender, SignalTypes.Validation));
        Assert.Equal(1, Failed(h, sender, SignalTypes.RetryRequest));
        Assert.Equal(0, Failed(h, sender, SignalTypes.Unknown));
    }

    [Fact]
    public async Task SignalIdThatIsNotAMessageId_CountedAsUnknown()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var ghost = TestIds.New("ghost");

        await sender.Waiter.WaitForAcksAsync([ghost], TestIds.New("signal"), TimeSpan.FromMilliseconds(200));
        await sender.Waiter.WaitForAcksAsync([ghost], $"{sender.Id}:{ghost}:shout:1:2", TimeSpan.FromMilliseconds(200));

        Assert.Equal(2, Failed(h, sender, SignalTypes.Unknown));
        Assert.DoesNotContain("shout", await Probe.ExportAsync(h.Registry), StringComparison.Ordinal);
    }

    [Fact]
    public async Task CompletedAndCancelledWaits_CountNothing()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var receiver = await h.StartAsync();
        var sent = await sender.Signals.SendAsync(receiver.Id, SignalTypes.Completion, 1);
        await receiver.Acks.AcknowledgeAsync(sent.MessageId, sender.Id, SignalTypes.Completion, null, sent.Timestamp);

        var completed = await sender.Waiter.WaitForAcksAsync([receiver.Id], sent.MessageId, TimeSpan.FromSeconds(10));
        using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));
        var other = await sender.Signals.SendAsync(receiver.Id, SignalTypes.Completion, 2);
        var cancelled = await sender.Waiter.WaitForAcksAsync([receiver.Id], other.MessageId, TimeSpan.FromSeconds(30), cancel.Token);

        Assert.Equal(AckWaitStatus.Completed, completed.Status);
        Assert.Equal(AckWaitStatus.Cancelled, cancelled.Status);
        Assert.Equal(0, Failed(h, sender, SignalTypes.Completion));
    }

    [Theory]
    [InlineData("a:b:completion:1:1700000000000", "completion")]
    [InlineData("a:b:validation:0:key-1", "validation")]
    [InlineData("a:b:retry:2:3", "retry_request")]
    [InlineData("a:b:shout:1:2", "unknown")]
    [InlineData("a:b:completion:x:2", "unknown")]
    [InlineData("a:b:completion:1", "unknown")]
    [InlineData("a:b:completion:1:2:3", "unknown")]
    [InlineData("signal-123", "unknown")]
    [InlineData(null, "unknown")]
    public void OfMessageId_TypeSegmentOrUnknown(string? signalId, string expected) =>
        Assert.Equal(expected, SignalTypes.OfMessageId(signalId));
}
