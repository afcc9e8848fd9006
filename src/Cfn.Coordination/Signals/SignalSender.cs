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
    private readonly RedisContext _redis;
    private readonly SigningKeys _keys;
    private readonly CoordinationMetrics _metrics;
    private readonly ILogger _logger;

    internal SignalSender(Coordinator coordinator, RedisContext redis, SigningKeys keys, CoordinationMetrics metrics, ILogger logger)
    {
        _coordinator = coordinator;
        _redis = redis;
        _keys = keys;
        _metrics = metrics;
        _logger = logger;
    }

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
    public async Task<SignalDeliveryResult> SendAsync(
        string receiverId,
        string type,
        int iteration,
        JsonElement? payload = null,
        string? idempotencyKey = null,
        long? receiverEpoch = null)
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
            _metrics.SignalsFailed.WithLabels(senderId, normalizedType ?? "unknown", "validation").Inc();
            throw;
        }

        var timestamp = _redis.Time.GetUtcNow().ToUnixTimeMilliseconds();
        var messageId = string.Create(CultureInfo.InvariantCulture,
            $"{senderId}:{receiverId}:{normalizedType}:{iteration}:{idempotencyKey ?? timestamp.ToString(CultureInfo.InvariantCulture)}");
        var signal = new Signal
        {
            Timestamp = timestamp,
            SenderId = senderId,
            ReceiverId = receiverId,
            Iteration = iteration,
            Type = normalizedType,
            Payload = payload is { ValueKind: JsonValueKind.Undefined } ? null : payload,
            MessageId = messageId,
            Signature = _keys.Sign(SignedMessages.Signal(senderId, receiverId, normalizedType, timestamp)),
            ReceiverEpoch = receiverEpoch,
        };
        var json = Json.Serialize(signal);
        if (json.Length > _redis.Options.MaxPayloadBytes)
        {
            _metrics.SignalsFailed.WithLabels(senderId, normalizedType, "validation").Inc();
            throw new ArgumentException(
                $"payload exceeds maximum size of {_redis.Options.MaxPayloadBytes} bytes (got {json.Length})", nameof(payload));
        }

        var key = Keys.Signal(receiverId);
        RedisResult result;
        try
        {
            result = await _redis.Database.ScriptEvaluateAsync(
                RedisScripts.SendSignal,
                [Keys.Idempotency(messageId), Keys.Inbox(receiverId), key],
                [json, _redis.Options.SignalTtlSeconds, _redis.Options.IdempotencyTtlSeconds,
                    Keys.Events(receiverId).ToString(), messageId, Keys.InboxGroup]).ConfigureAwait(false);
        }
        catch (Exception e) when (e is RedisException or TimeoutException)
        {
            _metrics.SignalsFailed.WithLabels(senderId, normalizedType, "redis_error").Inc();
            _logger.LogError("Redis error: Signal delivery failed messageId={MessageId} receiver={ReceiverId}: {Error}",
                messageId, receiverId, e.Message);
            throw new SignalDeliveryException("Signal delivery failed: " + e.Message, e);
        }

        var reply = (RedisResult[])result!;
        if ((long)reply[0] == 0)
        {
            _logger.LogWarning(
                "Duplicate signal detected, skipping messageId={MessageId} senderId={SenderId} receiverId={ReceiverId} type={Type} iteration={Iteration} key={Key}",
                messageId, senderId, receiverId, normalizedType, iteration, (string)key!);
            return new SignalDeliveryResult(true, messageId, true, timestamp, key!);
        }

        _metrics.SignalsSent.WithLabels(senderId, normalizedType).Inc();
        _logger.LogInformation(
            "Signal sent successfully messageId={MessageId} senderId={SenderId} receiverId={ReceiverId} type={Type} iteration={Iteration} key={Key} ttl={Ttl}",
            messageId, senderId, receiverId, normalizedType, iteration, (string)key!, _redis.Options.SignalTtlSeconds);
        await _coordinator.Activity.RecordAsync().ConfigureAwait(false);
        return new SignalDeliveryResult(true, messageId, false, timestamp, key!);
    }
}
