using System.Text;
using System.Text.Json;
using Cfn.Coordination.Identity;

namespace Cfn.Coordination.Signals;

/// <summary>
/// Builds the signed signal of one send from a caller's arguments, checking each first (SPEC D7: a bad value is refused
/// with an error naming the field and the rule, counted in <c>signals_failed_total{reason="validation"}</c>, and
/// nothing is written). The plain send and the send with retries build their signals here, so they accept and refuse
/// exactly the same input.
/// </summary>
internal static class SignalBuilder
{
    /// <param name="coordinator">The sender.</param>
    /// <param name="receiverId">The receiver's ID.</param>
    /// <param name="type">One of <see cref="SignalTypes.All"/> (case-insensitive).</param>
    /// <param name="iteration">0 or more.</param>
    /// <param name="payload">Optional JSON, at most <c>MaxPayloadBytes</c> of UTF-8.</param>
    /// <param name="idempotencyKey">Optional: makes the message ID, so a repeat of the send is a duplicate.</param>
    /// <param name="receiverEpoch">The receiver instance the signal is for, when the sender knows it.</param>
    /// <param name="typeField">How the caller's API names the type, for the error (<c>type</c> or <c>signalType</c>).</param>
    public static Signal Build(Coordinator coordinator, string receiverId, string type, int iteration, JsonElement? payload,
        string? idempotencyKey, long? receiverEpoch, string typeField)
    {
        var senderId = coordinator.Id;
        var normalized = SignalTypes.Normalize(type);
        try
        {
            Ids.RequireName(receiverId, "receiverId");
            if (normalized is null)
            {
                throw new InvalidIdException(typeField, "must be one of " + string.Join(", ", SignalTypes.All), type);
            }

            if (idempotencyKey is not null)
            {
                Ids.RequireName(idempotencyKey, "idempotencyKey");
            }

            if (iteration < 0)
            {
                throw new ArgumentOutOfRangeException(nameof(iteration), iteration, "iteration must be 0 or more");
            }
        }
        catch (ArgumentException)
        {
            coordinator.Metrics.SignalsFailed.WithLabels(senderId, normalized ?? "unknown", "validation").Inc();
            throw;
        }

        var timestamp = coordinator.NextSignalTimestamp();
        var body = payload is { ValueKind: JsonValueKind.Undefined } ? null : payload;
        var payloadBytes = body is { } p ? Encoding.UTF8.GetByteCount(p.GetRawText()) : 0;
        var limit = coordinator.Redis.Options.MaxPayloadBytes;
        if (payloadBytes > limit)
        {
            // Checked before signing: an oversized payload costs no HMAC.
            coordinator.Metrics.SignalsFailed.WithLabels(senderId, normalized, "validation").Inc();
            throw new ArgumentException($"payload exceeds maximum size of {limit} bytes (got {payloadBytes})", nameof(payload));
        }

        return SignalSignatures.Sign(coordinator.SigningKeys, new Signal
        {
            Timestamp = timestamp,
            SenderId = senderId,
            ReceiverId = receiverId,
            Iteration = iteration,
            Type = normalized,
            Payload = body,
            MessageId = idempotencyKey is null
                ? MessageIds.Create(senderId, receiverId, normalized, iteration, timestamp)
                : MessageIds.Create(senderId, receiverId, normalized, iteration, idempotencyKey),
            ReceiverEpoch = receiverEpoch,
        });
    }
}
