using System.Globalization;
using System.Text.Json;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Security;

namespace Cfn.Coordination.Signals;

/// <summary>
/// Signs and verifies signals. <c>signature</c> is the FAQ scheme (SPEC K2) over sender, receiver, type and timestamp;
/// it leaves the payload, iteration, message ID and receiver epoch open to tampering, so <c>contentSignature</c>
/// covers those too: <c>{messageId}:{iteration}:{receiverEpoch}:{handedOverFrom}:{payload as stored JSON}</c>. Both must verify.
/// </summary>
internal static class SignalSignatures
{
    /// <summary>Returns <paramref name="signal"/> with both signatures set.</summary>
    public static Signal Sign(SigningKeys keys, Signal signal)
    {
        ArgumentNullException.ThrowIfNull(keys);
        ArgumentNullException.ThrowIfNull(signal);
        return signal with
        {
            Signature = keys.Sign(SignedMessages.Signal(signal.SenderId, signal.ReceiverId, signal.Type, signal.Timestamp)),
            ContentSignature = keys.Sign(ContentMessage(signal)),
        };
    }

    /// <summary>True when both signatures verify under the new or the current secret. Never throws.</summary>
    public static bool Verify(SigningKeys keys, Signal signal)
    {
        ArgumentNullException.ThrowIfNull(keys);
        ArgumentNullException.ThrowIfNull(signal);
        return keys.Verify(SignedMessages.Signal(signal.SenderId, signal.ReceiverId, signal.Type, signal.Timestamp), signal.Signature) &&
               keys.Verify(ContentMessage(signal), signal.ContentSignature);
    }

    /// <summary>
    /// The rule for a signal a TS coordinator wrote to K2 (taken into an inbox with CFN_TS_COMPAT, D13): TS does not sign
    /// signals, so one without <c>signature</c> passes (the mode's security cost), and one that carries the FAQ
    /// <c>signature</c> must verify. There is never a <c>contentSignature</c>. Never throws.
    /// </summary>
    public static bool VerifyFromTs(SigningKeys keys, Signal signal)
    {
        ArgumentNullException.ThrowIfNull(keys);
        ArgumentNullException.ThrowIfNull(signal);
        return signal.Signature is null ||
               keys.Verify(SignedMessages.Signal(signal.SenderId, signal.ReceiverId, signal.Type, signal.Timestamp), signal.Signature);
    }

    /// <summary>
    /// The payload is signed in its serialized form, which re-serializing the stored JSON reproduces exactly, so the
    /// receiver recomputes the same string from what it read.
    /// </summary>
    private static string ContentMessage(Signal signal) =>
        string.Create(CultureInfo.InvariantCulture,
            $"{signal.MessageId}:{signal.Iteration}:{signal.ReceiverEpoch}:{signal.HandedOverFrom}:{(signal.Payload is { } p ? JsonSerializer.Serialize(p, Json.Options) : string.Empty)}");
}
