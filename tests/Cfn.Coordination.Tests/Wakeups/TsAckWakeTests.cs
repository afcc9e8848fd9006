using System.Diagnostics;
using Cfn.Coordination.Acks;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Tests.Infrastructure;

namespace Cfn.Coordination.Tests.Wakeups;

/// <summary>
/// A TS peer's ACK is a plain SETEX with no wake-up (D13). With <c>CFN_TS_COMPAT</c> and keyspace notifications on the
/// server, the waiter is woken by the write itself instead of the ACK fallback read (issue 16). The fallback period is
/// set to 20 s here, so a wake-up within a couple of seconds can only come from the notification.
/// </summary>
[Collection(RedisCollection.Name)]
public sealed class TsAckWakeTests(RedisServer server)
{
    private static readonly TimeSpan SlowFallback = TimeSpan.FromSeconds(20);

    private async Task<string> SetNotificationsAsync(string flags)
    {
        var db = server.Multiplexer.GetDatabase();
        var before = (StackExchange.Redis.RedisResult[])(await db.ExecuteAsync("CONFIG", "GET", "notify-keyspace-events"))!;
        await db.ExecuteAsync("CONFIG", "SET", "notify-keyspace-events", flags);
        return (string?)before[1] ?? "";
    }

    [Fact]
    public async Task Compat_NotificationsOn_TsAckWakesTheWaiterAtOnce()
    {
        var previous = await SetNotificationsAsync("K$");
        try
        {
            await using var h = await Harness.CreateIsolatedAsync(server, o =>
            {
                o.TsCompat = true;
                o.AckFallbackPollInterval = SlowFallback;
            });
            var self = await h.StartAsync();
            var tsPeer = TestIds.New("ts-coordinator");
            var signalId = TestIds.New("signal");
            var waiting = self.Waiter.WaitForAcksAsync([tsPeer], signalId, TimeSpan.FromSeconds(60));

            // The peer is learnt (not in the registry) and watched when the wait starts, well before its ACK comes.
            await EventuallyAsync(() => h.Redis.Wakeups.TsAckSubscriptions == 1, TimeSpan.FromSeconds(5));
            Assert.False(waiting.IsCompleted);
            var clock = Stopwatch.StartNew();
            await h.Database.StringSetAsync(Keys.Ack(tsPeer, signalId), TestAcks.SignedJson(h.Keys, tsPeer, signalId), TimeSpan.FromHours(1));
            var result = await waiting.WaitAsync(TimeSpan.FromSeconds(15));
            clock.Stop();

            Assert.Equal(AckWaitStatus.Completed, result.Status);
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"woken after {clock.Elapsed.TotalMilliseconds} ms (fallback period 20 s)");
            Assert.True(h.Redis.Wakeups.TsAckNotifications >= 1);
            Assert.Contains(h.Messages, m => m.Contains("Keyspace notifications are on", StringComparison.Ordinal));
        }
        finally
        {
            await SetNotificationsAsync(previous);
        }
    }

    [Fact]
    public async Task Compat_NotificationsOff_SaidOnce_NoSubscription_AckReadByTheFallback()
    {
        var previous = await SetNotificationsAsync("");
        try
        {
            await using var h = await Harness.CreateIsolatedAsync(server, o =>
            {
                o.TsCompat = true;
                o.AckFallbackPollInterval = TimeSpan.FromMilliseconds(300);
            });
            var self = await h.StartAsync();
            var tsPeer = TestIds.New("ts-coordinator");
            var signalId = TestIds.New("signal");
            var waiting = self.Waiter.WaitForAcksAsync([tsPeer], signalId, TimeSpan.FromSeconds(60));
            await Task.Delay(700);
            await h.Database.StringSetAsync(Keys.Ack(tsPeer, signalId), TestAcks.SignedJson(h.Keys, tsPeer, signalId), TimeSpan.FromHours(1));

            var result = await waiting.WaitAsync(TimeSpan.FromSeconds(15));

            Assert.Equal(AckWaitStatus.Completed, result.Status);
            Assert.Equal(0, h.Redis.Wakeups.TsAckSubscriptions);
            Assert.Equal(0, h.Redis.Wakeups.TsAckNotifications);
            Assert.Single(h.Messages, m => m.Contains("Keyspace notifications are off", StringComparison.Ordinal));
        }
        finally
        {
            await SetNotificationsAsync(previous);
        }
    }

    [Fact]
    public async Task Compat_NotificationsOn_TsSignalWrittenToK2_ReceivedAtOnceNotAtTheNextIdleLook()
    {
        var previous = await SetNotificationsAsync("K$");
        try
        {
            await using var h = await Harness.CreateIsolatedAsync(server, o =>
            {
                o.TsCompat = true;
                o.AckFallbackPollInterval = SlowFallback; // an idle inbox looks at K2 every 20 s
            });
            var receiver = await h.StartAsync();
            Assert.Equal(1, h.Redis.Wakeups.TsSignalSubscriptions);
            using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(15));
            var reading = Task.Run(async () =>
            {
                await foreach (var received in receiver.Inbox.ReadAllAsync(stop.Token))
                {
                    return received;
                }

                return null;
            });
            await Task.Delay(500); // the inbox has read (nothing) and sleeps

            var tsSender = TestIds.New("ts-coordinator");
            var timestamp = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
            var messageId = $"{tsSender}:{receiver.Id}:completion:1:{timestamp}";
            var clock = Stopwatch.StartNew();
            await h.Database.StringSetAsync(Keys.Signal(receiver.Id),
                $$"""{"timestamp":{{timestamp}},"senderId":"{{tsSender}}","receiverId":"{{receiver.Id}}","iteration":1,"type":"completion","messageId":"{{messageId}}"}""",
                TimeSpan.FromDays(1));
            var got = await reading;
            clock.Stop();

            Assert.Equal(messageId, got?.Signal.MessageId);
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"received after {clock.Elapsed.TotalMilliseconds} ms (idle look every 20 s)");
        }
        finally
        {
            await SetNotificationsAsync(previous);
        }
    }

    private static async Task EventuallyAsync(Func<bool> condition, TimeSpan within)
    {
        var until = DateTime.UtcNow + within;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < until, "condition not met in time");
            await Task.Delay(20);
        }
    }
}
