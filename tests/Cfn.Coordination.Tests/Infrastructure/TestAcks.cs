using Cfn.Coordination.Acks;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Security;
using Cfn.Coordination.Signals;

namespace Cfn.Coordination.Tests.Infrastructure;

/// <summary>ACK values as a peer writes them, for tests that store or publish one by hand (a TS coordinator's plain SET).</summary>
internal static class TestAcks
{
    /// <summary>A correctly shaped ACK of <paramref name="signalId"/> by <paramref name="ackerId"/>, signed under <paramref name="keys"/>.</summary>
    public static string SignedJson(SigningKeys keys, string ackerId, string signalId, bool withMetadata = true)
    {
        var timestamp = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        return Json.Serialize(new SignalAck
        {
            CoordinatorId = ackerId,
            SignalId = signalId,
            Timestamp = timestamp,
            Iteration = 0,
            Signature = keys.Sign(SignedMessages.Ack(ackerId, signalId, timestamp, 0)),
            Metadata = withMetadata ? new AckMetadata { SignalType = SignalTypes.Completion } : null,
        });
    }
}
