using System.Diagnostics;
using System.Text.Json.Nodes;
using Cfn.Coordination;
using Cfn.Coordination.Acks;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Security;
using Cfn.Coordination.Signals;
using StackExchange.Redis;

namespace Cfn.Bench.Rows;

/// <summary>
/// k (issue 16): a cfn waiter with <c>CFN_TS_COMPAT</c> waits for a TS peer's ACK (a peer outside the registry, which
/// writes its ACK with a plain <c>SET … EX 3600</c> and publishes nothing). The bench writes that SET on its own
/// connection at a random 50–300 ms after the wait starts (so the ACK never races the wait's subscription by
/// construction); a sample runs from the SET's reply to the waiter's continuation. Series, each on its own compat
/// connection (a hub asks the server's <c>notify-keyspace-events</c> once and keeps a "yes"):
/// notifications on (<c>K$</c>) with one TS peer reused, then with a new TS peer per wait (the peer is learnt and its
/// ACK keys watched when the wait starts); notifications off (the ACK fallback read, every ACK_POLL_INTERVAL_MS); and,
/// for contrast, a registered cfn peer's ACK (<c>AcknowledgeAsync</c>, which publishes). The server's setting is
/// restored at the end.
/// </summary>
internal sealed class K_TsAckWake : IRow
{
    private const int OffLanes = 10;

    public string Key => "k";

    public async Task<RowResult> RunAsync(BenchContext ctx)
    {
        var waits = ctx.Quick ? 10 : 200;
        var offWaits = ctx.Quick ? 10 : 200;
        // The protocol settings of the environment (ACK_POLL_INTERVAL_MS among them), with compat on.
        var options = CoordinationOptions.FromEnvironment();
        options.TsCompat = true;
        var fallback = options.AckFallbackPollInterval;
        var previous = await NotificationsAsync(ctx);
        await ctx.FlushAsync();
        try
        {
            await SetNotificationsAsync(ctx, "K$");
            var on = await RunNotificationsOnAsync(ctx, options, waits);
            await SetNotificationsAsync(ctx, "");
            var off = await RunNotificationsOffAsync(ctx, options, offWaits);

            var fallbackMs = fallback.TotalMilliseconds;
            var reused = Series(on.Reused, fallbackMs);
            var fresh = Series(on.NewPeer, fallbackMs);
            var offSummary = Series(off.Samples, fallbackMs);
            offSummary["lanes"] = OffLanes;
            offSummary["ts_ack_subscriptions"] = off.Subscriptions; // 0: nothing to watch without notifications
            offSummary["notifications"] = off.Notifications;
            var cfn = Series(on.CfnPeer, fallbackMs);
            var json = new JsonObject
            {
                ["fallback_ms"] = fallbackMs,
                ["measured_from"] = "the reply to the ACK's write (TS: SET … EX 3600; cfn: AcknowledgeAsync)",
                ["measured_to"] = "the waiter's continuation after WaitForAcksAsync completes",
                ["notify_keyspace_events_before"] = previous,
                ["notifications_on_reused_peer"] = reused,
                ["notifications_on_new_peer"] = fresh,
                ["notifications_off"] = offSummary,
                ["cfn_peer"] = cfn,
                ["ts_ack_subscriptions_at_end"] = on.Subscriptions,
            };

            var offText = $"notifications off: p50 {Stats.F(Stats.Get(offSummary, "p50_ms"))} ms, p95 {Stats.F(Stats.Get(offSummary, "p95_ms"))} ms (same run)";
            var setup = $"fallback {fallbackMs:0} ms; SET at a random 50–300 ms after the wait starts";
            return new RowResult(json,
            [
                OnLine(ctx, reused, $"notifications on (K$), 1 TS peer reused; {setup}; {waits} waits", offText),
                OnLine(ctx, fresh, $"notifications on (K$), a new TS peer each wait (learnt when the wait starts); {setup}; {waits} waits", offText),
                new TableLine("k", "TS-ACK wake time", $"notifications off; {setup}; {offWaits} waits, {OffLanes} at a time, each starting at a random point of the fallback period",
                    $"{Stats.Describe(offSummary)}; {off.Notifications} notifications", ctx.Floor.Multiple(offSummary), "—", "—", null),
                new TableLine("k", "cfn-peer ACK wake time (contrast)", $"a registered cfn peer's AcknowledgeAsync, same compat waiter, notifications on; ACK at a random 50–300 ms; {waits} waits",
                    Stats.Describe(cfn), ctx.Floor.Multiple(cfn), "—", "—", null),
            ]);
        }
        finally
        {
            await SetNotificationsAsync(ctx, previous);
            await ctx.FlushAsync();
        }
    }

    private static TableLine OnLine(BenchContext ctx, JsonObject summary, string setup, string offText)
    {
        var misses = summary["over_fallback"]!.GetValue<int>();
        var byNotification = summary["woken_by_notification"]!.GetValue<int>();
        var n = summary["n"]!.GetValue<int>();
        // A wait longer than the fallback period was not woken by its notification: a miss, whatever the percentiles say.
        var met = Stats.Get(summary, "p95_ms") < 50 && misses == 0;
        return new TableLine("k", "TS-ACK wake time", setup,
            $"{Stats.Describe(summary)}; {byNotification} of {n} woken by the notification, {misses} longer than the fallback period",
            ctx.Floor.Multiple(summary), offText, "p95 < 50 ms, none longer than the fallback period", met);
    }

    private static JsonObject Series(List<Sample> samples, double fallbackMs)
    {
        var summary = Stats.Summary(samples.Select(s => s.FromReplyMs));
        summary["from_send"] = Stats.Summary(samples.Select(s => s.FromSendMs)); // the write's round trip included
        summary["write_call"] = Stats.Summary(samples.Select(s => s.FromSendMs - s.FromReplyMs)); // a round trip after the same idle pause
        summary["woken_by_notification"] = samples.Count(s => s.ByNotification);
        summary["over_fallback"] = samples.Count(s => s.FromSendMs > fallbackMs);
        summary["before_write_reply"] = samples.Count(s => s.FromReplyMs < 0); // the wake-up overtook the write's reply
        return summary;
    }

    private static async Task<(List<Sample> Reused, List<Sample> NewPeer, List<Sample> CfnPeer, int Subscriptions)> RunNotificationsOnAsync(
        BenchContext ctx, CoordinationOptions options, int waits)
    {
        await using var redis = await RedisContext.ConnectAsync(ctx.Configuration, options);
        var waiter = await Coordinator.StartAsync(redis, ctx.Keys, ctx.Id("k-waiter", 0), "bench", ctx.Metrics, runHeartbeatLoop: false);
        // The cfn peer is another client, like the TS one: it ACKs on the bench's own connection.
        var cfnPeer = await ctx.StartAsync(ctx.Id("k-cfn", 0));
        var random = new Random(16);
        var hub = redis.Wakeups;
        var tsPeer = ctx.Id("k-ts", 0);
        Func<string, string, Task> tsAck = (peer, signalId) => WriteTsAckAsync(ctx, peer, signalId);
        Func<string, string, Task> cfnAck = (_, signalId) => cfnPeer.Acks.AcknowledgeAsync(signalId, waiter.Id, SignalTypes.Completion, null, 0);
        try
        {
            // Unmeasured: the reused peer learnt and watched, and the code paths compiled, before the series start.
            await OneAsync(waiter, hub, tsPeer, "warm", tsAck, random);
            await OneAsync(waiter, hub, cfnPeer.Id, "warm", cfnAck, random);
            var reused = new List<Sample>();
            for (var i = 0; i < waits; i++)
            {
                reused.Add(await OneAsync(waiter, hub, tsPeer, $"r{i}", tsAck, random));
            }

            var newPeer = new List<Sample>();
            for (var i = 0; i < waits; i++)
            {
                newPeer.Add(await OneAsync(waiter, hub, ctx.Id("k-ts", i + 1), $"n{i}", tsAck, random));
            }

            var cfn = new List<Sample>();
            for (var i = 0; i < waits; i++)
            {
                cfn.Add(await OneAsync(waiter, hub, cfnPeer.Id, $"c{i}", cfnAck, random));
            }

            return (reused, newPeer, cfn, hub.TsAckSubscriptions);
        }
        finally
        {
            await BenchContext.DropAsync([waiter, cfnPeer]);
        }
    }

    private static async Task<(List<Sample> Samples, int Subscriptions, long Notifications)> RunNotificationsOffAsync(
        BenchContext ctx, CoordinationOptions options, int waits)
    {
        // A new connection: its hub asks the server afresh and learns that notifications are off.
        await using var redis = await RedisContext.ConnectAsync(ctx.Configuration, options);
        var waiter = await Coordinator.StartAsync(redis, ctx.Keys, ctx.Id("k-waiter", 1), "bench", ctx.Metrics, runHeartbeatLoop: false);
        var hub = redis.Wakeups;
        var period = (int)options.AckFallbackPollInterval.TotalMilliseconds;
        var samples = new List<Sample>();
        try
        {
            // Each lane waits on its own TS peer; lanes overlap so the series takes waits/lanes periods, not waits.
            await Task.WhenAll(Enumerable.Range(0, OffLanes).Select(async lane =>
            {
                var random = new Random(1600 + lane);
                var peer = ctx.Id("k-ts-off", lane);
                for (var i = lane; i < waits; i += OffLanes)
                {
                    // The fallback runs on its own schedule, and the previous wait's end (a fallback read) would fix it
                    // against the next SET: a random start makes the SET land anywhere in the period, as an ACK would.
                    await Task.Delay(random.Next(0, period));
                    var sample = await OneAsync(waiter, hub, peer, $"o{i}", (p, s) => WriteTsAckAsync(ctx, p, s), random);
                    lock (samples)
                    {
                        samples.Add(sample);
                    }
                }
            }));
            return (samples, hub.TsAckSubscriptions, hub.TsAckNotifications);
        }
        finally
        {
            await BenchContext.DropAsync([waiter]);
        }
    }

    /// <summary>
    /// One wait: started, the ACK written after a random 50–300 ms, then the wait's end. Whether a notification woke it
    /// is read from the hub's counter, so it means something only when waits run one at a time.
    /// </summary>
    private static async Task<Sample> OneAsync(Coordinator waiter, Cfn.Coordination.Wakeups.WakeHub hub, string peer, string tag,
        Func<string, string, Task> ack, Random random)
    {
        var signalId = $"{waiter.Id}:{peer}:completion:{tag}:k";
        var waiting = A_AckRelease.WaitAndStampAsync(waiter, peer, signalId);
        await Task.Delay(random.Next(50, 301));
        var notifications = hub.TsAckNotifications;
        var sent = Stopwatch.GetTimestamp();
        await ack(peer, signalId);
        var replied = Stopwatch.GetTimestamp();
        var (result, released) = await waiting;
        A_AckRelease.Require(result);
        return new Sample(Stats.Ms(replied, released), Stats.Ms(sent, released), hub.TsAckNotifications > notifications);
    }

    /// <summary>A TS coordinator's ACK: a correctly signed value written with a plain SET and a one-hour expiry, no publish.</summary>
    private static Task<RedisResult> WriteTsAckAsync(BenchContext ctx, string peer, string signalId)
    {
        var timestamp = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var value = Json.Serialize(new SignalAck
        {
            CoordinatorId = peer,
            SignalId = signalId,
            Timestamp = timestamp,
            Iteration = 0,
            Signature = ctx.Keys.Sign(SignedMessages.Ack(peer, signalId, timestamp, 0)),
            Metadata = new AckMetadata { SignalType = SignalTypes.Completion },
        });
        return ctx.Database.ExecuteAsync("SET", Keys.Ack(peer, signalId), value, "EX", 3600);
    }

    private static async Task<string> NotificationsAsync(BenchContext ctx)
    {
        var reply = (RedisResult[])(await ctx.Database.ExecuteAsync("CONFIG", "GET", "notify-keyspace-events"))!;
        return reply.Length == 2 ? (string?)reply[1] ?? "" : "";
    }

    private static Task<RedisResult> SetNotificationsAsync(BenchContext ctx, string flags) =>
        ctx.Database.ExecuteAsync("CONFIG", "SET", "notify-keyspace-events", flags);

    private readonly record struct Sample(double FromReplyMs, double FromSendMs, bool ByNotification);
}
