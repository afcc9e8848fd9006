using Cfn.Coordination.Acks;
using Cfn.Coordination.Signals;
using Cfn.Coordination.Tests.Infrastructure;

namespace Cfn.Coordination.Tests.Acks;

/// <summary>
/// The first read of a wait (<c>wait_begin.lua</c>) reads every awaited ACK with MGETs of up to 500 keys: ACKs on
/// both sides of a chunk boundary count (the keys are 3 written ones, 600 ACKs, then the force-unblock marker: three
/// chunks, the last ACK closing the second).
/// </summary>
[Collection(RedisCollection.Name)]
public sealed class WaitBeginReadTests(RedisServer server)
{
    [Fact]
    public async Task WaitForAcks_600PeersFirstAndLastAckedBefore_BothCountedFromTheFirstRead()
    {
        await using var h = Harness.Create(server);
        var self = await h.StartAsync();
        var first = await h.StartAsync();
        var last = await h.StartAsync();
        var signalId = TestIds.New("sig");
        var peers = new List<string> { first.Id };
        peers.AddRange(Enumerable.Range(0, 598).Select(i => TestIds.New($"silent{i}")));
        peers.Add(last.Id);
        await first.Acks.AcknowledgeAsync(signalId, self.Id, SignalTypes.Completion, null, 1);
        await last.Acks.AcknowledgeAsync(signalId, self.Id, SignalTypes.Completion, null, 1);

        var result = await self.Waiter.WaitForAcksAsync(peers, signalId, TimeSpan.FromMilliseconds(300));

        Assert.Equal(AckWaitStatus.Timeout, result.Status);
        Assert.Equal(new[] { first.Id, last.Id }.Order(StringComparer.Ordinal), result.Acks.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(598, result.Missing.Count);
    }
}
