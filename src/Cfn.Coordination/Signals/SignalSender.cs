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
/// <para>
/// The same script refuses, before writing anything, a send to a receiver whose inbox already holds
/// <c>SIGNAL_INBOX_MAX_LENGTH</c> pending signals, and a send to a receiver that was declared dead and escalated (its K8
/// record's fencing token is still its current epoch): the signal is then re-addressed to the replacement the record
/// names and sent again (at most <see cref="MaxRedirects"/> times); the result's <see cref="SignalDeliveryResult.ReceiverId"/>
/// and <see cref="SignalDeliveryResult.MessageId"/> say where it went. A receiver whose escalation failed gets nothing.
/// </para>
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
    /// Answers the request <paramref name="requestMessageId"/> with a <c>completion</c> signal to
    /// <paramref name="receiverId"/>. The reply is bound to its request: every answer to the same request has the same
    /// message ID, so a repeated reply (a redelivered request answered again) is a duplicate and delivers nothing new.
    /// </summary>
    /// <exception cref="InvalidIdException">An ID is invalid; nothing was written.</exception>
    /// <exception cref="ArgumentException">The payload is too large; nothing was written.</exception>
    /// <exception cref="SignalDeliveryException">As for <see cref="SendAsync"/>.</exception>
    /// <exception cref="CoordinatorSupersededException">This instance was superseded; nothing was written.</exception>
    public Task<SignalDeliveryResult> ReplyAsync(string receiverId, string requestMessageId, int iteration, JsonElement payload)
    {
        Ids.RequireSignalId(requestMessageId, "requestMessageId");
        return SendAsync(receiverId, SignalTypes.Completion, iteration, payload, ReplyKey(requestMessageId));
    }

    /// <summary>The idempotency key of every reply to <paramref name="requestMessageId"/>: the same for each answer to it, different for any other request.</summary>
    internal static string ReplyKey(string requestMessageId) =>
        "v" + Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(requestMessageId)))[..40];

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
    /// <exception cref="SignalDeliveryException">
    /// Redis failed, the receiver's inbox is full, or the receiver was declared dead with no replacement coming
    /// (<see cref="SignalDeliveryException.Reason"/> says which); nothing was written by the refused attempt.
    /// </exception>
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
        while (true)
        {
            RedisResult[] reply;
            try
            {
                reply = (RedisResult[])(await Redis.Database.ScriptEvaluateAsync(
                    RedisScripts.SendSignal,
                    [.. SendKeys(send), ActivityKey(send.SenderId), Keys.Deadlines],
                    [.. SendArguments(send), .. activity.TrailingArguments(send.SenderId)]).ConfigureAwait(false))!;
            }
            catch (Exception e) when (RedisErrors.IsTransient(e))
            {
                throw Failed(send, e);
            }

            if (await RedirectAsync(send, reply).ConfigureAwait(false) is { } redirected)
            {
                send = redirected;
                continue;
            }

            var result = Complete(send, reply);
            if (!result.IsDuplicate)
            {
                _coordinator.Activity.Written((long)reply[2], activity);
            }

            return result;
        }
    }

    /// <summary>
    /// Validates and signs a send without writing anything (the first half of <see cref="SendAsync"/>, shared with
    /// <see cref="Acks.AckWaiter.SendAndWaitAsync"/>).
    /// </summary>
    internal PreparedSend Prepare(string receiverId, string type, int iteration, JsonElement? payload, string? idempotencyKey, long? receiverEpoch)
    {
        var signal = SignalBuilder.Build(_coordinator, receiverId, type, iteration, payload, idempotencyKey, receiverEpoch, typeField: "type");
        return new PreparedSend(signal, Json.Serialize(signal), 0);
    }

    /// <summary>KEYS[1..6] of <c>lib_send.lua</c>'s scripts: the signal's keys, the sender's fence, the receiver's escalation record and epoch.</summary>
    internal static RedisKey[] SendKeys(PreparedSend send) => SendKeys(send.Signal, send.SenderId);

    /// <summary>The sender's K7 key: this coordinator's is built once.</summary>
    private RedisKey ActivityKey(string senderId) =>
        senderId == _coordinator.Id ? _coordinator.Activity.OwnKeys.Activity : Keys.Activity(senderId);

    /// <summary>KEYS[1..6] of <c>lib_send.lua</c>'s scripts for <paramref name="signal"/>, fenced by <paramref name="fencedId"/>'s epoch.</summary>
    internal static RedisKey[] SendKeys(Signal signal, string fencedId) =>
        [Keys.Idempotency(signal.MessageId), Keys.Inbox(signal.ReceiverId), Keys.Signal(signal.ReceiverId), Keys.Epoch(fencedId),
            Keys.Escalation(signal.ReceiverId), Keys.Epoch(signal.ReceiverId)];

    /// <summary>ARGV[1..8] of <c>lib_send.lua</c>'s scripts.</summary>
    internal RedisValue[] SendArguments(PreparedSend send) => SendArguments(Redis, send.Json, send.Signal, _coordinator.Epoch);

    /// <summary>ARGV[1..8] of <c>lib_send.lua</c>'s scripts for <paramref name="signal"/> stored as <paramref name="json"/>, fenced by <paramref name="epoch"/>.</summary>
    internal static RedisValue[] SendArguments(RedisContext redis, string json, Signal signal, long epoch) =>
        [json, redis.Options.SignalTtlSeconds, redis.Options.IdempotencyTtlSeconds,
            Keys.Events(signal.ReceiverId).ToString(), signal.MessageId, Keys.InboxGroup, epoch, redis.Options.SignalInboxMaxLength];

    /// <summary>Most replacements one send follows (a replacement declared dead in turn is followed again).</summary>
    internal const int MaxRedirects = 3;

    /// <summary>
    /// Reads a send script's refusals of the receiver's side. Returns the send re-addressed to the receiver's replacement
    /// when the script said the receiver was escalated (<c>-3</c>), null when it was not refused that way; throws
    /// <see cref="SignalDeliveryException"/> when the inbox is full (<c>-2</c>), the receiver is dead with no
    /// replacement (<c>-4</c>), or the redirects do not end.
    /// </summary>
    internal async Task<PreparedSend?> RedirectAsync(PreparedSend send, RedisResult[] reply)
    {
        if (RedisScripts.IsFenced(reply, out _))
        {
            return null; // Complete says superseded
        }

        switch ((long)reply[0])
        {
            case RefusedInboxFull:
                throw InboxFull(send.Signal, (long)reply[1]);
            case RefusedReceiverDead:
                throw ReceiverDead(send.Signal, (string?)reply[1]);
            case Redirected:
                if (send.Hops >= MaxRedirects)
                {
                    throw TooManyRedirects(send.Signal, (string?)reply[1]);
                }

                var next = await ReaddressAsync(send.Signal, (string?)reply[1]).ConfigureAwait(false)
                    ?? throw ReceiverDead(send.Signal, (string?)reply[1]);
                return new PreparedSend(next, Json.Serialize(next), send.Hops + 1);
            default:
                return null;
        }
    }

    /// <summary>lib_send.lua: the receiver's inbox holds SIGNAL_INBOX_MAX_LENGTH signals.</summary>
    internal const long RefusedInboxFull = -2;

    /// <summary>lib_send.lua: the receiver was escalated; the reply names its replacement.</summary>
    internal const long Redirected = -3;

    /// <summary>lib_send.lua: the receiver is dead and no replacement is coming.</summary>
    internal const long RefusedReceiverDead = -4;

    /// <summary>
    /// <paramref name="signal"/> addressed to <paramref name="replacementId"/> instead (SPEC decision 5): its receiver,
    /// the receiver segment of its message ID (the same ID a hand-over gives it, so the two copies are one message),
    /// a receiver epoch of the replacement when the signal carried one, and both signatures. Logs the redirect. Null when
    /// the record names no usable replacement (nobody will read the signal).
    /// </summary>
    internal async Task<Signal?> ReaddressAsync(Signal signal, string? replacementId)
    {
        if (!Ids.IsValidName(replacementId) || string.Equals(replacementId, signal.ReceiverId, StringComparison.Ordinal))
        {
            return null;
        }

        var segments = signal.MessageId.Split(':');
        segments[1] = replacementId!;
        long? epoch = null;
        if (signal.ReceiverEpoch is not null)
        {
            // Meant for the receiver's current instance: for the replacement, that is its current (or first) instance.
            epoch = (long?)await Redis.Database.StringGetAsync(Keys.Epoch(replacementId!)).ConfigureAwait(false) ?? 1;
        }

        var next = SignalSignatures.Sign(Signing, signal with
        {
            ReceiverId = replacementId!,
            MessageId = string.Join(':', segments),
            ReceiverEpoch = epoch,
        });
        _logger.LogInformation("Signal redirected to replacement from={From} to={To} messageId={MessageId} previousMessageId={PreviousMessageId}",
            signal.ReceiverId, replacementId, next.MessageId, signal.MessageId);
        return next;
    }

    /// <summary>Counted and logged: the receiver's inbox is full.</summary>
    internal SignalDeliveryException InboxFull(Signal signal, long pending, bool count = true)
    {
        var max = Redis.Options.SignalInboxMaxLength;
        if (count)
        {
            Telemetry.SignalsFailed.WithLabels(_coordinator.Id, signal.Type, SignalDeliveryException.InboxFull).Inc();
        }

        _logger.LogWarning("Signal refused: receiver inbox full receiver={ReceiverId} pending={Pending} max={Max} messageId={MessageId}",
            signal.ReceiverId, pending, max, signal.MessageId);
        return new SignalDeliveryException(
            string.Create(CultureInfo.InvariantCulture,
                $"Signal delivery failed: the inbox of receiver {signal.ReceiverId} is full ({pending} signals pending; SIGNAL_INBOX_MAX_LENGTH is {max})"),
            SignalDeliveryException.InboxFull, signal.ReceiverId);
    }

    /// <summary>Counted and logged: the receiver was declared dead and no replacement is coming.</summary>
    internal SignalDeliveryException ReceiverDead(Signal signal, string? replacementId, bool count = true)
    {
        if (count)
        {
            Telemetry.SignalsFailed.WithLabels(_coordinator.Id, signal.Type, SignalDeliveryException.ReceiverDead).Inc();
        }

        _logger.LogError("Signal refused: receiver dead with no replacement receiver={ReceiverId} replacement={Replacement} messageId={MessageId}",
            signal.ReceiverId, string.IsNullOrEmpty(replacementId) ? "none" : replacementId, signal.MessageId);
        return new SignalDeliveryException(
            $"Signal delivery failed: receiver {signal.ReceiverId} was declared dead and no replacement is coming (its escalation failed)",
            SignalDeliveryException.ReceiverDead, signal.ReceiverId);
    }

    internal SignalDeliveryException TooManyRedirects(Signal signal, string? replacementId, bool count = true)
    {
        if (count)
        {
            Telemetry.SignalsFailed.WithLabels(_coordinator.Id, signal.Type, SignalDeliveryException.TooManyRedirects).Inc();
        }

        _logger.LogError("Signal refused: too many redirects receiver={ReceiverId} replacement={Replacement} messageId={MessageId} max={Max}",
            signal.ReceiverId, replacementId, signal.MessageId, MaxRedirects);
        return new SignalDeliveryException(
            $"Signal delivery failed: receiver {signal.ReceiverId} was declared dead and so was every replacement followed ({MaxRedirects} redirects at most)",
            SignalDeliveryException.TooManyRedirects, signal.ReceiverId);
    }

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
        if (RedisScripts.IsFenced(reply, out var currentEpoch))
        {
            throw _coordinator.Superseded("signal send", currentEpoch);
        }

        if ((long)reply[0] == 0)
        {
            _logger.LogWarning(
                "Duplicate signal detected, skipping messageId={MessageId} senderId={SenderId} receiverId={ReceiverId} type={Type} iteration={Iteration} key={Key}",
                send.MessageId, send.SenderId, send.ReceiverId, send.Type, send.Iteration, (string)key!);
            return new SignalDeliveryResult(true, send.MessageId, true, send.Timestamp, key!)
            {
                ReceiverId = send.ReceiverId,
                Redirected = send.Hops > 0,
            };
        }

        Telemetry.SignalsSent.WithLabels(send.SenderId, send.Type).Inc();
        _logger.SignalSent(send.MessageId, send.SenderId, send.ReceiverId, send.Type, send.Iteration, (string)key!, Redis.Options.SignalTtlSeconds);
        return new SignalDeliveryResult(true, send.MessageId, false, send.Timestamp, key!)
        {
            ReceiverId = send.ReceiverId,
            Redirected = send.Hops > 0,
        };
    }
}

/// <summary>
/// A validated, signed signal not yet written: what a send script needs, and what its result reports. <paramref name="Hops"/>
/// counts the redirects to replacements followed so far.
/// </summary>
internal sealed record PreparedSend(Signal Signal, string Json, int Hops)
{
    public string SenderId => Signal.SenderId;

    public string ReceiverId => Signal.ReceiverId;

    public string Type => Signal.Type;

    public int Iteration => Signal.Iteration;

    public string MessageId => Signal.MessageId;

    public long Timestamp => Signal.Timestamp;
}
