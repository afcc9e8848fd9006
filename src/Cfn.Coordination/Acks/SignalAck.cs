namespace Cfn.Coordination.Acks;

/// <summary>An ACK as stored at K3 (SPEC §2.3; wire-compatible with the TS coordinators, D13).</summary>
public sealed record SignalAck
{
    /// <summary>The ACKing coordinator.</summary>
    public required string CoordinatorId { get; init; }

    /// <summary>The acknowledged signal.</summary>
    public required string SignalId { get; init; }

    /// <summary>ACK time in ms.</summary>
    public required long Timestamp { get; init; }

    /// <summary>The ACKer's iteration.</summary>
    public required long Iteration { get; init; }

    /// <summary>Always <c>received</c>.</summary>
    public string Status { get; init; } = "received";

    /// <summary>Lowercase hex HMAC over <c>{coordinatorId}:{signalId}:{timestamp}:{iteration}</c>.</summary>
    public string? Signature { get; init; }

    /// <summary>Unsigned context.</summary>
    public AckMetadata? Metadata { get; init; }
}

/// <summary>The unsigned part of an ACK.</summary>
public sealed record AckMetadata
{
    /// <summary>The acknowledged signal's type.</summary>
    public string? SignalType { get; init; }

    /// <summary>The signal payload's <c>phase</c>, when it had one.</summary>
    public string? Phase { get; init; }

    /// <summary>
    /// For a signal handed over from a dead receiver: its original message ID (the signal's <c>handedOverFrom</c>).
    /// Informational: the signature does not cover it; a waiter binds the ACK through its signal ID (D18).
    /// </summary>
    public string? HandedOverFrom { get; init; }
}
