using System.Runtime.CompilerServices;
using System.Text.Json;
using Cfn.Coordination.Activity;
using Cfn.Coordination.Identity;
using Cfn.Coordination.Metrics;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Security;
using Cfn.Coordination.Signals;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Cfn.Coordination.Acks;

/// <summary>
/// Writes and reads this coordinator's ACKs (SPEC §2.3, §2.6). An ACK is written once with <c>SET NX</c> (a repeated
/// ACK returns the stored one, so idempotency survives restarts and replicas) and wakes the sender's waiters in the
/// same script.
/// </summary>
public sealed class AckService
{
    private readonly Coordinator _coordinator;
    private readonly ILogger _logger;

    internal AckService(Coordinator coordinator, ILogger logger)
    {
        _coordinator = coordinator;
        _logger = logger;
    }

    private RedisContext Redis => _coordinator.Redis;

    private SigningKeys Signing => _coordinator.SigningKeys;

    private CoordinationMetrics Telemetry => _coordinator.Metrics;

    /// <summary>
    /// ACKs <paramref name="signal"/>, which must be addressed to this coordinator. Returns the stored ACK: the one
    /// written now, or the earlier one when the signal was already ACKed.
    /// </summary>
    /// <param name="signal">The received signal.</param>
    /// <param name="enqueuedAtMs">Redis time the signal entered the inbox (its stream ID), for the latency metric.</param>
    public Task<SignalAck> AcknowledgeAsync(Signal signal, long? enqueuedAtMs = null) => AcknowledgeAsync(signal, enqueuedAtMs, null);

    /// <summary>
    /// The inbox's ACK: like <see cref="AcknowledgeAsync(Signal, long?)"/>, but not stored when the sender is gone (<paramref name="senderGone"/> is set).
    /// <paramref name="checkSender"/> false skips that check: a TS sender (D13) may write no heartbeat at all, and its
    /// wait still reads the ACK (kept <c>ACK_TTL_SECONDS</c>).
    /// </summary>
    internal Task<SignalAck> AcknowledgeAsync(Signal signal, long? enqueuedAtMs, StrongBox<bool>? senderGone, bool checkSender = true)
    {
        ArgumentNullException.ThrowIfNull(signal);
        if (!string.Equals(signal.ReceiverId, _coordinator.Id, StringComparison.Ordinal))
        {
            throw new ArgumentException(
                $"signal.receiverId must be this coordinator ({_coordinator.Id}), got {signal.ReceiverId}", nameof(signal));
        }

        var phase = signal.Payload is { ValueKind: JsonValueKind.Object } p && p.TryGetProperty("phase", out var ph) &&
                    ph.ValueKind == JsonValueKind.String
            ? ph.GetString()
            : null;
        return AcknowledgeCoreAsync(signal.MessageId, signal.SenderId, signal.Type, phase, enqueuedAtMs ?? signal.Timestamp, senderGone,
            signal.HandedOverFrom, checkSender);
    }

    /// <summary>
    /// ACKs a signal known only by ID (the TS <c>CoordinationSignal</c> shape): <paramref name="senderId"/> is woken.
    /// </summary>
    public Task<SignalAck> AcknowledgeAsync(string signalId, string senderId, string signalType, string? phase, long sentAtMs) =>
        AcknowledgeCoreAsync(signalId, senderId, signalType, phase, sentAtMs, null, null, checkSender: false);

    private async Task<SignalAck> AcknowledgeCoreAsync(
        string signalId, string senderId, string signalType, string? phase, long sentAtMs, StrongBox<bool>? senderGone, string? handedOverFrom,
        bool checkSender)
    {
        Ids.RequireSignalId(signalId, "signalId");
        Ids.RequireName(senderId, "senderId");
        signalType = SignalTypes.Normalize(signalType)
            ?? throw new InvalidIdException("signalType", "must be one of " + string.Join(", ", SignalTypes.All), signalType);
        var self = _coordinator.Id;
        var started = Redis.Time.GetTimestamp();
        _logger.SendingImmediateAck(signalId, signalType, senderId, self);

        var ack = NewAck(signalId, signalType, phase, Ids.IsValidSignalId(handedOverFrom) ? handedOverFrom : null);
        var key = Keys.Ack(self, signalId);
        var own = _coordinator.Activity.OwnKeys;
        RedisValue[] arguments =
            [Json.SerializeToUtf8(ack), Redis.Options.AckTtlSeconds, Keys.Events(senderId).ToString(), $"ack {signalId} {self}", _coordinator.Epoch,
                senderGone is null || !checkSender ? "" : senderId];
        // A signal taken from the inbox is a progress event: this coordinator's K7 goes with the ACK (one round trip).
        var activity = senderGone is null ? (ActivityWrite?)null : _coordinator.Activity.Prepare();
        var reply = (RedisResult[])(await Redis.Database.ScriptEvaluateAsync(
            RedisScripts.Ack,
            activity is null ? [key, own.Epoch] : [key, own.Epoch, Keys.Heartbeat(senderId), Keys.Registry, own.Activity, Keys.Deadlines],
            activity is { } write ? [.. arguments, .. write.TrailingArguments(self), Redis.Options.AckRetentionSeconds] : arguments)
            .ConfigureAwait(false))!;
        if (RedisScripts.IsFenced(reply, out var currentEpoch))
        {
            throw _coordinator.Superseded("ACK", currentEpoch);
        }

        if (activity is not null)
        {
            _coordinator.Activity.Written((long)reply[2], activity.Value);
        }

        if ((long)reply[0] == 2)
        {
            senderGone!.Value = true;
            _logger.LogInformation("Sender gone, ACK not stored signalId={SignalId} senderId={SenderId} coordinatorId={CoordinatorId}",
                signalId, senderId, self);
            return ack;
        }

        var written = (long)reply[0] == 1;
        var redisNow = (long)reply[2];
        var ttlSeconds = reply.Length > 3 ? (int)reply[3] : Redis.Options.AckTtlSeconds;

        if (!written)
        {
            var stored = (string?)reply[1];
            if (AckVerifier.Verify(Signing, stored, self, signalId, out var existing) == AckRejection.None)
            {
                _logger.LogWarning("Signal already processed, returning cached ACK signalId={SignalId} coordinatorId={CoordinatorId}",
                    signalId, self);
                return existing!;
            }

            // Someone planted an invalid value under our ACK key: replace it with a genuine ACK.
            _logger.LogError(
                "ACK signature verification failed coordinatorId={CoordinatorId} signalId={SignalId} key={Key}: replacing the invalid stored ACK",
                self, signalId, (string)key!);
            await Redis.Database.StringSetAsync(key, Json.Serialize(ack), TimeSpan.FromSeconds(Redis.Options.AckTtlSeconds))
                .ConfigureAwait(false);
            await Redis.Database.PublishAsync(Keys.Events(senderId), $"ack {signalId} {self}").ConfigureAwait(false);
        }

        var latencyMs = Math.Max(0, redisNow - sentAtMs);
        Telemetry.SignalLatency.WithLabels(self, signalType).Observe(latencyMs / 1000.0);
        _logger.AckSent(signalId, self, ack.Iteration, (string)key!, ttlSeconds,
            (long)Redis.Time.GetElapsedTime(started).TotalMilliseconds, latencyMs);
        return ack;
    }

    /// <summary>
    /// This coordinator's verified ACK of <paramref name="signalId"/>, or null when there is none or it is invalid
    /// (logged at ERROR, never thrown: SPEC §2.6; the TS code threw and then swallowed its own exception).
    /// </summary>
    public async Task<SignalAck?> GetAckAsync(string signalId)
    {
        var key = Keys.Ack(_coordinator.Id, signalId);
        var raw = (string?)await Redis.Database.StringGetAsync(key).ConfigureAwait(false);
        if (raw is null)
        {
            return null;
        }

        var rejection = AckVerifier.Verify(Signing, raw, _coordinator.Id, signalId, out var ack);
        if (rejection == AckRejection.None)
        {
            return ack;
        }

        Telemetry.AckVerificationFailures.WithLabels(_coordinator.Id, AckVerifier.Label(rejection)).Inc();
        _logger.LogError("ACK signature verification failed - possible spoofing attack coordinatorId={CoordinatorId} signalId={SignalId} key={Key} reason={Reason}",
            _coordinator.Id, signalId, (string)key!, AckVerifier.Label(rejection));
        return null;
    }

    /// <summary>
    /// True when <paramref name="coordinatorId"/> has ACKed <paramref name="signalId"/>; with <paramref name="verify"/>
    /// the ACK must also pass <see cref="AckVerifier"/>. Message-ID-format signal IDs are accepted.
    /// </summary>
    public async Task<bool> IsAcknowledgedAsync(string coordinatorId, string signalId, bool verify = false)
    {
        var key = Keys.Ack(coordinatorId, signalId);
        if (!verify)
        {
            return await Redis.Database.KeyExistsAsync(key).ConfigureAwait(false);
        }

        var raw = (string?)await Redis.Database.StringGetAsync(key).ConfigureAwait(false);
        return raw is not null && AckVerifier.Verify(Signing, raw, coordinatorId, signalId, out _) == AckRejection.None;
    }

    private SignalAck NewAck(string signalId, string signalType, string? phase, string? handedOverFrom)
    {
        var timestamp = Redis.Time.GetUtcNow().ToUnixTimeMilliseconds();
        var iteration = _coordinator.Iteration;
        return new SignalAck
        {
            CoordinatorId = _coordinator.Id,
            SignalId = signalId,
            Timestamp = timestamp,
            Iteration = iteration,
            Signature = Signing.Sign(SignedMessages.Ack(_coordinator.Id, signalId, timestamp, iteration)),
            Metadata = new AckMetadata { SignalType = signalType, Phase = phase, HandedOverFrom = handedOverFrom },
        };
    }
}
