using System.Text.Json;

namespace Cfn.Coordination.Signals;

/// <summary>
/// A signal as stored in the inbox and in the K2 view (SPEC K2): the TS fields in TS order, plus the FAQ
/// <c>signature</c> and an optional <c>receiverEpoch</c> that makes the signal void for later instances of the receiver.
/// </summary>
public sealed record Signal
{
    /// <summary>Send time in ms (the sender's clock, fixed at the first attempt).</summary>
    public required long Timestamp { get; init; }

    /// <summary>Sending coordinator.</summary>
    public required string SenderId { get; init; }

    /// <summary>Receiving coordinator.</summary>
    public required string ReceiverId { get; init; }

    /// <summary>The sender's iteration.</summary>
    public required int Iteration { get; init; }

    /// <summary>One of <see cref="SignalTypes"/>.</summary>
    public required string Type { get; init; }

    /// <summary>Free-form payload; omitted when absent.</summary>
    public JsonElement? Payload { get; init; }

    /// <summary><c>{sender}:{receiver}:{type}:{iteration}:{timestamp or idempotency key}</c>; also the signal ID its ACK is keyed by.</summary>
    public required string MessageId { get; init; }

    /// <summary>HMAC over <c>{senderId}:{receiverId}:{type}:{timestamp}</c>.</summary>
    public string? Signature { get; init; }

    /// <summary>HMAC over <c>{messageId}:{iteration}:{receiverEpoch}:{handedOverFrom}:{payload}</c> (see <see cref="SignalSignatures"/>).</summary>
    public string? ContentSignature { get; init; }

    /// <summary>Set on a signal handed over from a dead receiver: its message ID before the hand-over.</summary>
    public string? HandedOverFrom { get; init; }

    /// <summary>When set, receivers whose epoch is newer ignore the signal (it was meant for an earlier instance).</summary>
    public long? ReceiverEpoch { get; init; }
}
