using Cfn.Coordination.Acks;
using Cfn.Coordination.Signals;
using Cfn.Coordination.Tests.Infrastructure;

namespace Cfn.Coordination.Tests.Wakeups;

/// <summary>
/// No lost signal and no hung wait when the pub/sub connection drops in the middle of traffic: wake-ups published while
/// it is down are gone, and the re-check after the reconnect (every wait and inbox, then two full fallback periods)
/// must still release every wait with its ACK.
/// </summary>
[Collection(RedisCollection.Name)]
public sealed class ReconnectUnderLoadTests(RedisServer server)
{
    [Fact]
    public async Task SendReceiveAckCycles_SubscriptionKilledThreeTimes_EveryWaitCompletes()
    {
        const int pairs = 20;
        await using var h = await Harness.CreateIsolatedAsync(server, o => o.AckFallbackPollInterval = TimeSpan.FromMilliseconds(200));
        var senders = new List<Coordinator>();
        var receivers = new List<Coordinator>();
        for (var i = 0; i < pairs; i++)
        {
            senders.Add(await h.StartAsync());
            receivers.Add(await h.StartAsync());
        }

        using var stopReceiving = new CancellationTokenSource();
        var receiving = receivers.Select(r => Task.Run(async () =>
        {
            try
            {
                await foreach (var _ in r.Inbox.ReadAllAsync(stopReceiving.Token))
                {
                    // verified and ACKed before it is handed out; asking for the next consumes it
                }
            }
            catch (OperationCanceledException)
            {
            }
        })).ToList();

        var stopSending = false;
        var cycles = new long[pairs];
        var results = new List<AckWaitResult>[pairs];
        var sending = Enumerable.Range(0, pairs).Select(i => Task.Run(async () =>
        {
            results[i] = [];
            while (!Volatile.Read(ref stopSending))
            {
                var sent = await senders[i].Signals.SendAsync(receivers[i].Id, SignalTypes.Completion, 0);
                results[i].Add(await senders[i].Waiter.WaitForAcksAsync([receivers[i].Id], sent.MessageId, TimeSpan.FromSeconds(20)));
                Interlocked.Increment(ref cycles[i]);
            }
        })).ToList();

        // Every pair completes a cycle before each kill and after the last, so each reconnect happens under load and
        // every pair is seen working across all of them.
        async Task EveryPairCycledAsync(string when)
        {
            var from = Enumerable.Range(0, pairs).Select(i => Interlocked.Read(ref cycles[i])).ToArray();
            await EventuallyAsync(() => Enumerable.Range(0, pairs).All(i => Interlocked.Read(ref cycles[i]) > from[i]),
                $"a pair completed no cycle {when}", TimeSpan.FromSeconds(30));
        }

        var killed = 0;
        for (var k = 0; k < 3; k++)
        {
            await EveryPairCycledAsync(k == 0 ? "before the first kill" : $"after kill {k}");
            killed += await h.KillSubscriptionAsync();
        }

        await EveryPairCycledAsync("after the last kill");
        Volatile.Write(ref stopSending, true);
        await Task.WhenAll(sending).WaitAsync(TimeSpan.FromSeconds(60));
        await stopReceiving.CancelAsync();
        await Task.WhenAll(receiving).WaitAsync(TimeSpan.FromSeconds(30));

        Assert.True(killed >= 3, $"the pub/sub connection was closed {killed} times");
        var all = results.SelectMany(r => r).ToList();
        Assert.True(all.Count >= pairs * 2, $"only {all.Count} cycles ran");
        Assert.All(all, r => Assert.Equal(AckWaitStatus.Completed, r.Status));
        Assert.Contains(h.Messages, m => m.Contains("connection restored", StringComparison.Ordinal));
        foreach (var receiver in receivers)
        {
            Assert.Equal(0, await h.Database.StreamLengthAsync($"blocking:inbox:{receiver.Id}")); // every signal consumed
        }
    }
}
