using Cfn.Coordination.Acks;

namespace Cfn.Coordination.Signals;

/// <summary>A verified signal handed to the application, already ACKed (the ACK precedes processing, SPEC §2.2).</summary>
/// <param name="Signal">The signal.</param>
/// <param name="Ack">The ACK this coordinator stored for it.</param>
/// <param name="EntryId">Its inbox stream entry.</param>
/// <param name="IsRedelivery">True when it was delivered before and not consumed (e.g. the previous instance crashed).</param>
public sealed record ReceivedSignal(Signal Signal, SignalAck Ack, string EntryId, bool IsRedelivery)
{
    /// <summary>
    /// True when its sender was gone at receipt (no heartbeat key, no registry entry: stopped, or dead and cleaned up): the
    /// ACK was not stored, since no one waits for it. A request from a gone sender need not be answered.
    /// </summary>
    public bool SenderGone { get; init; }
}
