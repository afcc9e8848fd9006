using Cfn.Coordination.Redis;
using Cfn.Coordination.Security;

namespace Cfn.Coordination.Acks;

/// <summary>Why an ACK read from Redis was refused.</summary>
internal enum AckRejection
{
    /// <summary>Accepted.</summary>
    None,

    /// <summary>Not JSON, or a required field is missing.</summary>
    Malformed,

    /// <summary>No signature field.</summary>
    MissingSignature,

    /// <summary>The signature does not match under any configured secret.</summary>
    BadSignature,

    /// <summary>The ACK names another coordinator than the key it was read from (a copied ACK).</summary>
    CoordinatorMismatch,

    /// <summary>The ACK is for another signal than the one awaited (a replayed ACK).</summary>
    SignalMismatch,
}

/// <summary>
/// Verifies ACKs (SPEC §2.4): the signature over the ACK's own fields, then the bindings TS never checked: the ACK's
/// coordinator must be the one whose key was read and its signal the awaited one. Never throws.
/// </summary>
internal static class AckVerifier
{
    /// <summary>Metric label of a rejection.</summary>
    public static string Label(AckRejection rejection) => rejection switch
    {
        AckRejection.Malformed => "malformed",
        AckRejection.MissingSignature => "missing_signature",
        AckRejection.BadSignature => "bad_signature",
        AckRejection.CoordinatorMismatch => "coordinator_mismatch",
        AckRejection.SignalMismatch => "signal_mismatch",
        _ => "none",
    };

    /// <summary>Parses and verifies the raw value of <c>blocking:ack:{expectedCoordinatorId}:{expectedSignalId}</c>.</summary>
    public static AckRejection Verify(
        SigningKeys keys, string? raw, string expectedCoordinatorId, string expectedSignalId, out SignalAck? ack)
    {
        if (!Json.TryDeserialize(raw, out ack, out _) || ack is null ||
            string.IsNullOrEmpty(ack.CoordinatorId) || string.IsNullOrEmpty(ack.SignalId))
        {
            ack = null;
            return AckRejection.Malformed;
        }

        if (string.IsNullOrEmpty(ack.Signature))
        {
            return AckRejection.MissingSignature;
        }

        if (!keys.Verify(SignedMessages.Ack(ack.CoordinatorId, ack.SignalId, ack.Timestamp, ack.Iteration), ack.Signature))
        {
            return AckRejection.BadSignature;
        }

        if (!string.Equals(ack.CoordinatorId, expectedCoordinatorId, StringComparison.Ordinal))
        {
            return AckRejection.CoordinatorMismatch;
        }

        return string.Equals(ack.SignalId, expectedSignalId, StringComparison.Ordinal)
            ? AckRejection.None
            : AckRejection.SignalMismatch;
    }
}
