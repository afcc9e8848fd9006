using System.Collections.Concurrent;
using System.Text.Json;
using Cfn.Coordination.Acks;
using Cfn.Coordination.Background;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Security;
using Cfn.Coordination.Signals;
using Cfn.Coordination.Tests.Infrastructure;
using StackExchange.Redis;

namespace Cfn.Coordination.Tests.Acks;

/// <summary>
/// D18: a wait on a peer that dies follows the hand-over to its replacement (the replacement's ACK of the handed-over
/// signal counts), learnt from the C1 notice or, when that is lost, from the K8 record read by the fallback check; it
/// ends at once with <c>peer_dead</c> when nothing is coming; forged replacement ACKs never count; and a peer that is
/// merely unregistered (a TS coordinator) is never judged dead. The real heartbeat monitor and escalation do the dying.
/// </summary>
[Collection(RedisCollection.Name)]
public sealed class PeerDeathWaitTests(RedisServer server)
{
    private static readonly TimeSpan Slow = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan Fast = TimeSpan.FromMilliseconds(200);

    [Fact]
    public async Task WaitForAcks_PeerEscalated_CompletesWithReplacementAckOfHandedOverSignal()
    {
        await using var w = await PeerDeathWorld.CreateAsync(server, fallback: Slow); // only the notice can move it
        var waiter = await w.StartAsync("waiter");
        var dead = await w.StartAsync("dead", heartbeat: false);
        var sent = await waiter.Signals.SendAsync(dead.Id, SignalTypes.Completion, 1);
        var wait = waiter.Waiter.WaitForAcksAsync([dead.Id], sent.MessageId, TimeSpan.FromSeconds(60));
        await PeerDeathWorld.WaitingAsync(waiter);

        var death = await w.KillAsync(dead, escalate: true);
        var newId = death.Escalation!.NewCoordinatorId!;
        var handedOverId = PeerDeathWorld.HandedOverId(sent.MessageId, dead.Id, newId);
        // The wait follows before the replacement even runs.
        Assert.True(await EventuallyAsync(
            () => Task.FromResult(RecoveryKit.Lines(w.H, "ACK wait follows hand-over", $"replacement={newId} ", $"handedOverSignalId={handedOverId} ").Count == 1),
            TimeSpan.FromSeconds(10)), string.Join('\n', w.H.Messages.TakeLast(20)));
        Assert.False(wait.IsCompleted);

        var replacement = await w.StartAsync("replacement", id: newId);
        var received = await PeerDeathWorld.ReceiveOneAsync(replacement);
        var result = await wait.WaitAsync(TimeSpan.FromSeconds(10));

        Assert.Equal(handedOverId, received.Signal.MessageId);
        Assert.Equal(sent.MessageId, received.Signal.HandedOverFrom);
        Assert.Equal(AckWaitStatus.Completed, result.Status);
        Assert.Equal(newId, result.Acks[dead.Id].CoordinatorId);
        Assert.Equal(handedOverId, result.Acks[dead.Id].SignalId);
        Assert.Equal(newId, result.HandedOver[dead.Id]);
        Assert.Empty(result.Missing);
        Assert.Empty(result.DeadPeers);
        Assert.True(result.Duration < Slow, $"took {result.Duration}");
        Assert.True(w.Redis.Wakeups.DeathNoticesConfirmed >= 1);
        // The replacement's stored ACK names the original message ID (informational, outside the signature).
        using var stored = JsonDocument.Parse((string)(await w.Database.StringGetAsync(Keys.Ack(newId, handedOverId)))!);
        Assert.Equal(sent.MessageId, stored.RootElement.GetProperty("metadata").GetProperty("handedOverFrom").GetString());
        Assert.Equal(AckRejection.None, AckVerifier.Verify(w.H.Keys, stored.RootElement.GetRawText(), newId, handedOverId, out _));
        Assert.Equal(1, w.H.Metrics.BlockingDuration.WithLabels(w.Swarm, waiter.Id, "completed").Count);
    }

    [Fact]
    public async Task WaitForAcks_ReplacementDiesToo_FollowsTheChainToTheSecondReplacement()
    {
        await using var w = await PeerDeathWorld.CreateAsync(server, fallback: Slow);
        var waiter = await w.StartAsync("waiter");
        var dead = await w.StartAsync("dead", heartbeat: false);
        var sent = await waiter.Signals.SendAsync(dead.Id, SignalTypes.Completion, 1);
        var wait = waiter.Waiter.WaitForAcksAsync([dead.Id], sent.MessageId, TimeSpan.FromSeconds(60));
        await PeerDeathWorld.WaitingAsync(waiter);

        var first = (await w.KillAsync(dead, escalate: true)).Escalation!.NewCoordinatorId!;
        // The first replacement starts and dies before it reads its inbox: its copy of the signal moves on.
        var replacement = await w.StartAsync("replacement", heartbeat: false, id: first);
        var second = (await w.KillAsync(replacement, escalate: true)).Escalation!.NewCoordinatorId!;
        var secondId = PeerDeathWorld.HandedOverId(PeerDeathWorld.HandedOverId(sent.MessageId, dead.Id, first), first, second);
        Assert.True(await EventuallyAsync(
            () => Task.FromResult(RecoveryKit.Lines(w.H, "ACK wait follows hand-over", $"dead={first} ", $"replacement={second} ").Count == 1),
            TimeSpan.FromSeconds(10)), string.Join('\n', w.H.Messages.TakeLast(20)));

        var last = await w.StartAsync("replacement", id: second);
        var received = await PeerDeathWorld.ReceiveOneAsync(last);
        var result = await wait.WaitAsync(TimeSpan.FromSeconds(10));

        Assert.Equal(secondId, received.Signal.MessageId);
        Assert.Equal(sent.MessageId, received.Signal.HandedOverFrom);
        Assert.Equal(AckWaitStatus.Completed, result.Status);
        Assert.Equal(second, result.HandedOver[dead.Id]);
        Assert.Equal(secondId, result.Acks[dead.Id].SignalId);
    }

    [Fact]
    public async Task WaitForAcks_NoticeLostReplacementAckedFirst_ReconnectCheckFollowsK8AndCompletes()
    {
        await using var w = await PeerDeathWorld.CreateAsync(server, fallback: Fast);
        var waiter = await w.StartAsync("waiter");
        var dead = await w.StartAsync("dead", heartbeat: false);
        await w.DropNoticesAsync();
        var sent = await waiter.Signals.SendAsync(dead.Id, SignalTypes.Completion, 1);
        var wait = waiter.Waiter.WaitForAcksAsync([dead.Id], sent.MessageId, TimeSpan.FromSeconds(60));
        await PeerDeathWorld.WaitingAsync(waiter);
        // The fallback check has asked the registry about the peer: it is a live cfn coordinator (its ACKs are pushed).
        Assert.True(await EventuallyAsync(() => Task.FromResult(w.Redis.Wakeups.PublisherLookups >= 1), TimeSpan.FromSeconds(5)));

        var death = await w.KillAsync(dead, escalate: true);
        var newId = death.Escalation!.NewCoordinatorId!;
        var replacement = await w.StartAsync("replacement", id: newId);
        await PeerDeathWorld.ReceiveOneAsync(replacement); // ACKed before the waiter knows anything
        // A negative check: with the notice dropped nothing may tell the wait, and nothing marks "not told".
        await Task.Delay(1000);
        Assert.False(wait.IsCompleted, "the notice was dropped and the peer is remembered as live: nothing should have told the wait yet");
        // About this peer: notices are server-wide pub/sub, and another test's (a validator stopping with requests) may be confirmed.
        Assert.Null(w.Redis.Wakeups.ConfirmedFate(dead.Id));

        Assert.True(await w.KillConnectionsAsync() >= 1);
        var result = await wait.WaitAsync(TimeSpan.FromSeconds(10));

        Assert.Equal(AckWaitStatus.Completed, result.Status);
        Assert.Equal(newId, result.HandedOver[dead.Id]);
        Assert.Equal(PeerDeathWorld.HandedOverId(sent.MessageId, dead.Id, newId), result.Acks[dead.Id].SignalId);
    }

    [Fact]
    public async Task WaitForAcks_StartedAfterALostNotice_FallbackReadsK8AndCompletes()
    {
        await using var w = await PeerDeathWorld.CreateAsync(server, fallback: Fast);
        var waiter = await w.StartAsync("waiter");
        var dead = await w.StartAsync("dead", heartbeat: false);
        await w.DropNoticesAsync();
        var sent = await waiter.Signals.SendAsync(dead.Id, SignalTypes.Completion, 1);
        var death = await w.KillAsync(dead, escalate: true);
        var newId = death.Escalation!.NewCoordinatorId!;
        var replacement = await w.StartAsync("replacement", id: newId);
        await PeerDeathWorld.ReceiveOneAsync(replacement);

        var result = await waiter.Waiter.WaitForAcksAsync([dead.Id], sent.MessageId, TimeSpan.FromSeconds(20));

        Assert.Equal(AckWaitStatus.Completed, result.Status);
        Assert.Equal(newId, result.HandedOver[dead.Id]);
        Assert.True(result.Duration < TimeSpan.FromSeconds(5), $"took {result.Duration} with a {Fast.TotalMilliseconds} ms fallback");
        // About this peer: notices are server-wide pub/sub, and another test's (a validator stopping with requests) may be confirmed.
        Assert.Null(w.Redis.Wakeups.ConfirmedFate(dead.Id));
    }

    [Fact]
    public async Task WaitForAcks_PeerDiesWithAutoEscalationOff_EndsAtOncePeerDeadNamingIt()
    {
        await using var w = await PeerDeathWorld.CreateAsync(server, fallback: Slow);
        var notices = new ConcurrentQueue<string>();
        var channel = Keys.SwarmDead(w.Swarm);
        Action<RedisChannel, RedisValue> capture = (_, m) => notices.Enqueue((string)m!);
        await server.Multiplexer.GetSubscriber().SubscribeAsync(channel, capture);
        try
        {
            var waiter = await w.StartAsync("waiter");
            var dead = await w.StartAsync("dead", heartbeat: false);
            var live = await w.StartAsync("live");
            var toDead = await waiter.Signals.SendAsync(dead.Id, SignalTypes.Completion, 1);
            var toLive = await waiter.Signals.SendAsync(live.Id, SignalTypes.Completion, 1);
            var wait = waiter.Waiter.WaitForAcksAsync(
                [KeyValuePair.Create(dead.Id, toDead.MessageId), KeyValuePair.Create(live.Id, toLive.MessageId)], TimeSpan.FromSeconds(60));
            await PeerDeathWorld.WaitingAsync(waiter);
            await PeerDeathWorld.ReceiveOneAsync(live);

            await w.KillAsync(dead, escalate: false);
            var result = await wait.WaitAsync(TimeSpan.FromSeconds(10));

            Assert.Equal(AckWaitStatus.PeerDead, result.Status);
            Assert.Equal("peer_dead", result.StatusLabel);
            Assert.Equal([dead.Id], result.DeadPeers);
            Assert.Equal([dead.Id], result.Missing);
            Assert.Equal([live.Id], result.Acks.Keys);
            Assert.Empty(result.HandedOver);
            Assert.True(result.Duration < Slow, $"took {result.Duration}");
            Assert.Equal(1, w.H.Metrics.BlockingDuration.WithLabels(w.Swarm, waiter.Id, "peer_dead").Count);
            var line = Assert.Single(RecoveryKit.Lines(w.H, "ACK wait peer dead", $"deadPeers={dead.Id} "));
            Assert.Contains("no_replacement", line.Message, StringComparison.Ordinal);
            Assert.Contains("received=1 total=2", line.Message, StringComparison.Ordinal);
            Assert.Single(RecoveryKit.Lines(w.H, "ACK wait complete", "status=peer_dead"));

            // The notice: no replacement named.
            Assert.True(await EventuallyAsync(() => Task.FromResult(!notices.IsEmpty), TimeSpan.FromSeconds(5)));
            using var notice = JsonDocument.Parse(Assert.Single(notices));
            Assert.Equal(dead.Id, notice.RootElement.GetProperty("deadCoordinatorId").GetString());
            Assert.Equal(w.Swarm, notice.RootElement.GetProperty("swarmId").GetString());
            Assert.Equal("no_replacement", notice.RootElement.GetProperty("action").GetString());
            Assert.Equal(JsonValueKind.Number, notice.RootElement.GetProperty("timestamp").ValueKind);
            Assert.False(notice.RootElement.TryGetProperty("newCoordinatorId", out _));
        }
        finally
        {
            await server.Multiplexer.GetSubscriber().UnsubscribeAsync(channel, capture);
        }
    }

    [Fact]
    public async Task WaitForAcks_ForgedReplacementAcks_NeverComplete_GenuineOneDoes()
    {
        await using var w = await PeerDeathWorld.CreateAsync(server, fallback: Fast);
        var waiter = await w.StartAsync("waiter");
        var dead = await w.StartAsync("dead", heartbeat: false);
        var other = await w.StartAsync("other");
        var sent = await waiter.Signals.SendAsync(dead.Id, SignalTypes.Completion, 1);
        var wait = waiter.Waiter.WaitForAcksAsync([dead.Id], sent.MessageId, TimeSpan.FromSeconds(60));
        await PeerDeathWorld.WaitingAsync(waiter);
        var death = await w.KillAsync(dead, escalate: true);
        var newId = death.Escalation!.NewCoordinatorId!;
        var handedOverId = PeerDeathWorld.HandedOverId(sent.MessageId, dead.Id, newId);
        Assert.True(await EventuallyAsync(
            () => Task.FromResult(RecoveryKit.Lines(w.H, "ACK wait follows hand-over", $"replacement={newId} ").Count == 1), TimeSpan.FromSeconds(10)));

        var forgeries = new (string Reason, string Json)[]
        {
            ("coordinator_mismatch", TestAcks.SignedJson(w.H.Keys, other.Id, handedOverId, withMetadata: false)), // another coordinator's genuine ACK, copied
            ("signal_mismatch", TestAcks.SignedJson(w.H.Keys, newId, sent.MessageId, withMetadata: false)), // the replacement's ACK of another signal ID
            ("bad_signature", TestAcks.SignedJson(new SigningKeys("another-secret-0123456789abcdef0123456789abcdef"), newId, handedOverId, withMetadata: false)),
        };
        foreach (var (reason, json) in forgeries)
        {
            await w.Database.StringSetAsync(Keys.Ack(newId, handedOverId), json, TimeSpan.FromMinutes(5));
            await w.Database.PublishAsync(Keys.Events(waiter.Id), $"ack {handedOverId} {newId} {json}");
            Assert.True(await EventuallyAsync(
                () => Task.FromResult(w.H.Metrics.AckVerificationFailures.WithLabels(waiter.Id, reason).Value >= 1), TimeSpan.FromSeconds(5)),
                $"{reason} was not refused");
            // Two completed fallback passes: the planted value is read from Redis too, and the wait must stay open.
            var passes = w.Redis.Loops.Snapshot().Where(l => l.Loop == LoopNames.AckFallback).Sum(l => l.Passes);
            await EventuallyAsync(() => w.Redis.Loops.Snapshot().Where(l => l.Loop == LoopNames.AckFallback).Sum(l => l.Passes) >= passes + 2,
                "the fallback check did not run twice");
            Assert.False(wait.IsCompleted, $"a forged ACK ({reason}) completed the wait");
        }

        // The genuine ACK replaces the planted value and completes the wait.
        var replacement = await w.StartAsync("replacement", id: newId);
        await PeerDeathWorld.ReceiveOneAsync(replacement);
        var result = await wait.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(AckWaitStatus.Completed, result.Status);
        Assert.Equal(newId, result.HandedOver[dead.Id]);
    }

    [Fact]
    public async Task WaitForAcks_UnregisteredPeerWithoutK8_JustWaitsUntilTimeout()
    {
        await using var w = await PeerDeathWorld.CreateAsync(server, fallback: Fast);
        var waiter = await w.StartAsync("waiter");
        var tsPeer = TestIds.New("ts-peer"); // a TS coordinator: never in blocking:coordinators, ACKs with a plain SETEX
        var signalId = $"{waiter.Id}:{tsPeer}:completion:1:{DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()}";
        var keysBefore = w.Redis.Wakeups.FallbackKeysRead;

        var result = await waiter.Waiter.WaitForAcksAsync([tsPeer], signalId, TimeSpan.FromSeconds(2));

        Assert.Equal(AckWaitStatus.Timeout, result.Status);
        Assert.Empty(result.DeadPeers);
        Assert.Equal([tsPeer], result.Missing);
        // The fallback looked (its ACK and K8 record every period) and found nothing that declares it dead.
        Assert.True(w.Redis.Wakeups.FallbackKeysRead - keysBefore >= 2 * 5, $"{w.Redis.Wakeups.FallbackKeysRead - keysBefore} keys read");
        Assert.Empty(RecoveryKit.Lines(w.H, "ACK wait peer dead"));
    }

    [Fact]
    public async Task WaitForAcks_NoReplacementNoticeForALivePeer_IgnoredAndWaitCompletesNormally()
    {
        await using var w = await PeerDeathWorld.CreateAsync(server, fallback: Slow);
        var waiter = await w.StartAsync("waiter");
        var live = await w.StartAsync("live");
        var sent = await waiter.Signals.SendAsync(live.Id, SignalTypes.Completion, 1);
        var wait = waiter.Waiter.WaitForAcksAsync([live.Id], sent.MessageId, TimeSpan.FromSeconds(60));
        await PeerDeathWorld.WaitingAsync(waiter);

        // A notice Redis does not bear out (the peer is in the registry, no K8 record): an operator's test, or a mistake.
        await DeathNotices.PublishAsync(w.Database, new DeathNotice(live.Id, w.Swarm, 1, DeathNotice.NoReplacement));
        Assert.True(await EventuallyAsync(
            () => Task.FromResult(RecoveryKit.Lines(w.H, "Dead coordinator notice not borne out by Redis", $"coordinator={live.Id} ").Count == 1),
            TimeSpan.FromSeconds(5)));
        Assert.False(wait.IsCompleted);

        await PeerDeathWorld.ReceiveOneAsync(live);
        var result = await wait.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(AckWaitStatus.Completed, result.Status);
        Assert.Empty(result.HandedOver);
    }
}
