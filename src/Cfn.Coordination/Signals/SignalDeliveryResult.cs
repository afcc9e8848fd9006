namespace Cfn.Coordination.Signals;

/// <summary>What <see cref="SignalSender.SendAsync"/> returns (the TS result fields, plus the receiver).</summary>
/// <param name="Success">True when the signal is in the receiver's inbox (now or from an earlier attempt).</param>
/// <param name="MessageId">The message ID, which is also the signal ID of its ACK.</param>
/// <param name="IsDuplicate">True when an earlier send with the same message ID was already delivered; nothing was written.</param>
/// <param name="Timestamp">The signal's timestamp in ms.</param>
/// <param name="Key">The K2 key, <c>blocking:signal:{receiverId}</c>.</param>
public sealed record SignalDeliveryResult(bool Success, string MessageId, bool IsDuplicate, long Timestamp, string Key)
{
    /// <summary>
    /// The receiver the signal was delivered to: the one asked for, or the replacement it was redirected to when that one
    /// had been declared dead and escalated. Its ACK of <see cref="MessageId"/> is the one to wait for.
    /// </summary>
    public string ReceiverId { get; init; } = string.Empty;

    /// <summary>True when the signal went to a replacement of the receiver asked for (<see cref="ReceiverId"/> names it).</summary>
    public bool Redirected { get; init; }
}
