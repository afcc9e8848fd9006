using Cfn.Coordination.Acks;
using Cfn.Coordination.Identity;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Signals;
using Cfn.Coordination.Tests.Infrastructure;

namespace Cfn.Coordination.Tests.Acks;

/// <summary><see cref="AckWaiter.SendAndWaitAsync"/>: a send and its wait in one script, with the outcomes of the two calls.</summary>
[Collection(RedisCollection.Name)]
public sealed class SendAndWaitTests(RedisServer server)
{
    [Fact]
    public async Task SendAndWait_ReceiverReadsAndAcks_DeliveredAndCompletedWithTheLogsOfBoth()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var receiver = await h.StartAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var receiving = Task.Run(async () =>
        {
            await foreach (var received in receiver.Inbox.ReadAllAsync(cts.Token))
            {
                return received;
            }

            return null;
        });

        var result = await sender.Waiter.SendAndWaitAsync(receiver.Id, SignalTypes.Completion, 4, timeout: TimeSpan.FromSeconds(20));

        Assert.False(result.Delivery.IsDuplicate);
        Assert.StartsWith($"{sender.Id}:{receiver.Id}:completion:4:", result.Delivery.MessageId, StringComparison.Ordinal);
        Assert.Equal(AckWaitStatus.Completed, result.Wait.Status);
        Assert.Equal(result.Delivery.MessageId, result.Wait.SignalId);
        Assert.Equal(receiver.Id, result.Wait.Acks[receiver.Id].CoordinatorId);
        Assert.Equal(result.Delivery.MessageId, (await receiving)!.Signal.MessageId);
        Assert.Equal(1, h.Metrics.SignalsSent.WithLabels(sender.Id, SignalTypes.Completion).Value);
        var messages = h.Messages;
        Assert.Single(messages, m => m.Contains("Signal sent successfully", StringComparison.Ordinal) && m.Contains(result.Delivery.MessageId, StringComparison.Ordinal));
        Assert.Single(messages, m => m.Contains("Waiting for ACKs", StringComparison.Ordinal) && m.Contains(result.Delivery.MessageId, StringComparison.Ordinal));
        Assert.Single(messages, m => m.Contains("ACK wait complete", StringComparison.Ordinal) && m.Contains("status=completed", StringComparison.Ordinal));
        await cts.CancelAsync();
    }

    [Fact]
    public async Task SendAndWait_NobodyReads_TimesOutWithTheSignalPendingInTheInbox()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var receiver = await h.StartAsync();

        var result = await sender.Waiter.SendAndWaitAsync(receiver.Id, SignalTypes.Error, 1, timeout: TimeSpan.FromMilliseconds(500));

        Assert.Equal(AckWaitStatus.Timeout, result.Wait.Status);
        Assert.Equal([receiver.Id], result.Wait.Missing);
        Assert.Equal(1, await h.Database.StreamLengthAsync(Keys.Inbox(receiver.Id)));
        var view = await Probe.ReadJsonAsync(h.Database, (string)Keys.Signal(receiver.Id)!);
        Assert.Equal(result.Delivery.MessageId, view.GetProperty("messageId").GetString());
        Assert.True(await EventuallyAsync(async () => await h.Database.SortedSetScoreAsync(Keys.Deadlines, sender.Id) is null,
            TimeSpan.FromSeconds(20)), "the ended wait is still in coordinator:deadlines");
    }

    [Fact]
    public async Task SendAndWait_InvalidReceiverId_RefusedNamingTheFieldAndNothingWritten()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();

        var e = await Assert.ThrowsAsync<InvalidIdException>(() => sender.Waiter.SendAndWaitAsync("bad id!", SignalTypes.Completion, 1));

        Assert.Equal("receiverId", e.Field);
        Assert.False(await h.Database.KeyExistsAsync("blocking:inbox:bad id!"));
        Assert.DoesNotContain(h.Messages, m => m.Contains("Waiting for ACKs", StringComparison.Ordinal));
    }

    [Fact]
    public async Task SendAndWait_SenderSuperseded_ThrowsNothingDeliveredAndTheWaitEndsAsError()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        var receiver = await h.StartAsync();
        await h.Database.StringIncrementAsync(Keys.Epoch(sender.Id)); // a newer instance took over

        await Assert.ThrowsAsync<CoordinatorSupersededException>(() =>
            sender.Waiter.SendAndWaitAsync(receiver.Id, SignalTypes.Completion, 1, timeout: TimeSpan.FromSeconds(10)));

        Assert.False(await h.Database.KeyExistsAsync(Keys.Inbox(receiver.Id)));
        Assert.True(sender.IsSuperseded);
        Assert.Single(h.Messages, m => m.Contains("ACK wait complete", StringComparison.Ordinal) && m.Contains("status=error", StringComparison.Ordinal));
    }
}
