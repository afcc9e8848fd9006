using System.Globalization;
using System.Text.Json;
using Cfn.Coordination.Identity;
using Cfn.Coordination.Metrics;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Security;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Cfn.Coordination.Signals;

/// <summary>
/// Sends signals (SPEC §2.1, §2.8, D4). One script per send: the idempotency record is taken with <c>SET NX</c>, and
/// only then is the signal appended to the receiver's durable inbox, shown at K2 and announced on the receiver's
/// channel. A retry with the same idempotency key has the same message ID and is reported as a duplicate.
/// </summary>
public sealed class SignalSender
{
    private readonly Coordinator _coordinator;
    private readonly ILogger _logger;

    internal SignalSender(Coordinator coordinator, ILogger logger)
    {
        _coordinator = coordinator;
        _logger = logger;
    }

    private RedisContext Redis => _coordinator.Redis;

    private SigningKeys Signing => _coordinator.SigningKeys;

    private CoordinationMetrics Telemetry => _coordinator.Metrics;

    /// <summary>
    /// Sends a signal from this coordinator to <paramref name="receiverId"/>.
    /// </summary>
    /// <param name="receiverId">The receiving coordinator.</param>
    /// <param name="type">One of <see cref="SignalTypes"/>.</param>
    /// <param name="iteration">The sender's iteration.</param>
    /// <param name="payload">Optional payload (at most <see cref="CoordinationOptions.MaxPayloadBytes"/> as JSON).</param>
    /// <param name="idempotencyKey">
    /// Optional key that replaces the timestamp segment of the message ID, so a retry of the same logical signal is a
    /// duplicate; without one every call is a new message.
    /// </param>
    /// <param name="receiverEpoch">Optional: the signal is void for receiver instances newer than this epoch.</param>
    /// <exception cref="InvalidIdException">An ID, the type or the idempotency key is invalid; nothing was written.</exception>
    /// <exception cref="ArgumentException">The payload is too large; nothing was written.</exception>
    /// <exception cref="SignalDeliveryException">Redis failed.</exception>
    /// <exception cref="CoordinatorSupersededException">This instance was superseded; nothing was written.</exception>
    public async Task<SignalDeliveryResult> SendAsync(
        string receiverId,
        string type,
        int iteration,
        JsonElement? payload = null,
        string? idempotencyKey = null,
        long? receiverEpoch = null)
    {
        var send = Prepare(receiverId, type, iteration, payload, idempotencyKey, receiverEpoch);
        // The sender's progress record goes with the delivery (one round trip).
        var activity = _coordinator.Activity.Prepare();
        RedisResult[] reply;
        try
        {
            reply = (RedisResult[])(await Redis.Database.ScriptEvaluateAsync(
                RedisScripts.SendSignal,
                [.. SendKeys(send), Keys.Activity(send.SenderId), Keys.Deadlines],
                [.. SendArguments(send), .. activity.TrailingArguments(send.SenderId)]).ConfigureAwait(false))!;
        }
        catch (Exception e) when (e is RedisException or TimeoutException)
        {
            throw Failed(send, e);
        }

        var result = Complete(send, reply);
        if (!result.IsDuplicate)
        {
            _coordinator.Activity.Written((long)reply[2]);
        }

        return result;
    }

    /// <summary>
    /// Validates and signs a send without writing anything (the first half of <see cref="SendAsync"/>, shared with
    /// <see cref="Acks.AckWaiter.SendAndWaitAsync"/>).
    /// </summary>
    internal PreparedSend Prepare(string receiverId, string type, int iteration, JsonElement? payload, string? idempotencyKey, long? receiverEpoch)
    {
        var senderId = _coordinator.Id;
        var normalizedType = SignalTypes.Normalize(type);
        try
        {
            Ids.RequireName(receiverId, "receiverId");
            if (normalizedType is null)
            {
                throw new InvalidIdException("type", "must be one of " + string.Join(", ", SignalTypes.All), type);
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
            Telemetry.SignalsFailed.WithLabels(senderId, normalizedType ?? "unknown", "validation").Inc();
            throw;
        }

        var timestamp = _coordinator.NextSignalTimestamp();
        var messageId = string.Create(CultureInfo.InvariantCulture,
            $"{senderId}:{receiverId}:{normalizedType}:{iteration}:{idempotencyKey ?? timestamp.ToString(CultureInfo.InvariantCulture)}");
        var signal = SignalSignatures.Sign(Signing, new Signal
        {
            Timestamp = timestamp,
            SenderId = senderId,
            ReceiverId = receiverId,
            Iteration = iteration,
            Type = normalizedType,
            Payload = payload is { ValueKind: JsonValueKind.Undefined } ? null : payload,
            MessageId = messageId,
            ReceiverEpoch = receiverEpoch,
        });
        var payloadBytes = signal.Payload is { } p ? System.Text.Encoding.UTF8.GetByteCount(p.GetRawText()) : 0;
        if (payloadBytes > Redis.Options.MaxPayloadBytes)
        {
            Telemetry.SignalsFailed.WithLabels(senderId, normalizedType, "validation").Inc();
            throw new ArgumentException(
                $"payload exceeds maximum size of {Redis.Options.MaxPayloadBytes} bytes (got {payloadBytes})", nameof(payload));
        }

        return new PreparedSend(senderId, receiverId, normalizedType, iteration, messageId, timestamp, Json.Serialize(signal));
    }

    /// <summary>KEYS[1..4] of <c>lib_send.lua</c>'s scripts.</summary>
    internal static RedisKey[] SendKeys(PreparedSend send) =>
        [Keys.Idempotency(send.MessageId), Keys.Inbox(send.ReceiverId), Keys.Signal(send.ReceiverId), Keys.Epoch(send.SenderId)];

    /// <summary>ARGV[1..7] of <c>lib_send.lua</c>'s scripts.</summary>
    internal RedisValue[] SendArguments(PreparedSend send) =>
        [send.Json, Redis.Options.SignalTtlSeconds, Redis.Options.IdempotencyTtlSeconds,
            Keys.Events(send.ReceiverId).ToString(), send.MessageId, Keys.InboxGroup, _coordinator.Epoch];

    /// <summary>A send that Redis failed: counted, logged, and the exception to throw.</summary>
    internal SignalDeliveryException Failed(PreparedSend send, Exception e)
    {
        Telemetry.SignalsFailed.WithLabels(send.SenderId, send.Type, "redis_error").Inc();
        _logger.LogError("Redis error: Signal delivery failed messageId={MessageId} receiver={ReceiverId}: {Error}",
            send.MessageId, send.ReceiverId, e.Message);
        return new SignalDeliveryException("Signal delivery failed: " + e.Message, e);
    }

    /// <summary>Reads a send script's first two reply elements: superseded (throws), duplicate or delivered.</summary>
    internal SignalDeliveryResult Complete(PreparedSend send, RedisResult[] reply)
    {
        var key = Keys.Signal(send.ReceiverId);
        if ((long)reply[0] < 0)
        {
            throw _coordinator.Superseded("signal send", (string?)reply[1]);
        }

        if ((long)reply[0] == 0)
        {
            _logger.LogWarning(
                "Duplicate signal detected, skipping messageId={MessageId} senderId={SenderId} receiverId={ReceiverId} type={Type} iteration={Iteration} key={Key}",
                send.MessageId, send.SenderId, send.ReceiverId, send.Type, send.Iteration, (string)key!);
            return new SignalDeliveryResult(true, send.MessageId, true, send.Timestamp, key!);
        }

        Telemetry.SignalsSent.WithLabels(send.SenderId, send.Type).Inc();
        _logger.LogInformation(
            "Signal sent successfully messageId={MessageId} senderId={SenderId} receiverId={ReceiverId} type={Type} iteration={Iteration} key={Key} ttl={Ttl}",
            send.MessageId, send.SenderId, send.ReceiverId, send.Type, send.Iteration, (string)key!, Redis.Options.SignalTtlSeconds);
        return new SignalDeliveryResult(true, send.MessageId, false, send.Timestamp, key!);
    }
}

/// <summary>A validated, signed signal not yet written: what a send script needs, and what its result reports.</summary>
internal sealed record PreparedSend(string SenderId, string ReceiverId, string Type, int Iteration, string MessageId, long Timestamp, string Json);
