using System.Diagnostics;
using Cfn.Coordination.Acks;
using Cfn.Coordination.Signals;
using Cfn.Coordination.Tests.Infrastructure;

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
        await Task.Delay(300);
        Assert.False(waiting.IsCompleted);
        var ackedAt = Stopwatch.StartNew();
        await receiver.Acks.AcknowledgeAsync(sent.MessageId, sender.Id, SignalTypes.Completion, null, sent.Timestamp);
        var result = await waiting;

        Assert.Equal(AckWaitStatus.Completed, result.Status);
        Assert.True(ackedAt.Elapsed < TimeSpan.FromSeconds(5), $"released after {ackedAt.Elapsed}");
        Assert.Equal(0, h.Redis.Wakeups.FallbackReads);
    }
}
