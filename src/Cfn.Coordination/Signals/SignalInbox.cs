using System.Globalization;
using System.Runtime.CompilerServices;
using Cfn.Coordination.Acks;
using Cfn.Coordination.Metrics;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Security;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Cfn.Coordination.Signals;

/// <summary>
/// This coordinator's durable inbox (D4, SPEC §2.2): a Redis stream read through a consumer group named after the
/// receiver, so delivery is at-least-once and a crashed receiver's unconsumed signals come back when a receiver with
/// the same ID starts again. Each signal is verified, ACKed, then handed out; it is consumed when the caller asks for
/// the next one (or calls <see cref="CompleteAsync"/>), and only then leaves the inbox and the K2 view.
/// </summary>
public sealed class SignalInbox
{
    private const int BatchSize = 32;

    /// <summary>How far a sender's clock may be behind before its signal's timestamp counts against it.</summary>
    private const long AllowedClockSkewMs = 5 * 60 * 1000;

    private readonly Coordinator _coordinator;
    private readonly ILogger _logger;
    private string? _reportedForeign; // the last TS signal reported left in K2: each is said once

    internal SignalInbox(Coordinator coordinator, ILogger logger)
    {
        _coordinator = coordinator;
        _logger = logger;
    }

    private RedisContext Redis => _coordinator.Redis;

    private SigningKeys Signing => _coordinator.SigningKeys;

    private CoordinationMetrics Telemetry => _coordinator.Metrics;

    /// <summary>
    /// The signals addressed to this coordinator, as they arrive: first those delivered earlier but never consumed,
    /// then new ones. Ends when <paramref name="cancellationToken"/> fires.
    /// </summary>
    public IAsyncEnumerable<ReceivedSignal> ReadAllAsync(CancellationToken cancellationToken = default) =>
        ReadAsync(consumeOnNext: true, cancellationToken);

    /// <summary>
    /// Like <see cref="ReadAllAsync"/> (each signal verified and ACKed as it is handed out), but with
    /// <paramref name="consumeOnNext"/> false nothing handed out is consumed by asking for the next one: the caller
    /// holds several at once and consumes each with <see cref="CompleteAsync"/> when it is done with it, in any order.
    /// Until then each stays pending in the consumer group, so a crash hands it out again (or over to a replacement).
    /// </summary>
    internal async IAsyncEnumerable<ReceivedSignal> ReadAsync(bool consumeOnNext, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        // A superseded instance stops receiving: its successor (or replacement) owns the inbox now.
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _coordinator.SupersededToken);
        cancellationToken = linked.Token;
        var inbox = Keys.Inbox(_coordinator.Id);
        var readingPending = true;
        // Own pending entries are read after the last one handed out: one the caller still holds is not handed out again.
        var pendingAfter = "0-0";
        string? toConsume = null; // the last entry handed out: consumed with the next read, in the same round trip
        // A TS coordinator writes only K2 and publishes nothing (D13): with CFN_TS_COMPAT every read first takes such a
        // signal into the inbox, and an idle inbox is re-read at the ACK fallback period; without, K2 is looked at on
        // the first read and after each idle period, only to report it.
        var compat = Redis.Options.TsCompat;
        var idlePoll = compat && Redis.Options.AckFallbackPollInterval < Redis.Options.InboxFallbackPollInterval
            ? Redis.Options.AckFallbackPollInterval
            : Redis.Options.InboxFallbackPollInterval;
        var lookAtView = true;
        _logger.LogInformation("Waiting for signal receiver={ReceiverId}", _coordinator.Id);
        while (!cancellationToken.IsCancellationRequested)
        {
            StreamEntry[] entries;
            try
            {
                var from = readingPending ? pendingAfter : ">";
                if (toConsume is not null)
                {
                    entries = await ConsumeAndReadAsync(toConsume, from, compat).ConfigureAwait(false);
                }
                else if (compat || lookAtView)
                {
                    entries = await ReadLookingAtViewAsync(from, compat).ConfigureAwait(false);
                }
                else
                {
                    entries = await Redis.Database.StreamReadGroupAsync(
                        inbox, Keys.InboxGroup, _coordinator.Id, readingPending ? pendingAfter : StreamPosition.NewMessages, BatchSize)
                        .ConfigureAwait(false);
                }

                toConsume = null;
                lookAtView = false;
            }
            catch (RedisServerException e) when (e.Message.StartsWith("NOGROUP", StringComparison.Ordinal))
            {
                entries = []; // nothing was ever sent: the first send creates the stream and its group
            }
            catch (Exception e) when (RedisErrors.IsTransient(e))
            {
                _logger.LogWarning("Redis error while reading inbox receiver={ReceiverId}: {Error}", _coordinator.Id, e.Message);
                await _coordinator.Mailbox.InboxWake.WaitAsync(TimeSpan.FromSeconds(1), cancellationToken).ConfigureAwait(false);
                continue;
            }

            if (entries.Length == 0)
            {
                if (readingPending)
                {
                    readingPending = false;
                    continue;
                }

                lookAtView = !await _coordinator.Mailbox.InboxWake.WaitAsync(idlePoll, cancellationToken).ConfigureAwait(false);
                continue;
            }

            for (var i = 0; i < entries.Length; i++)
            {
                if (readingPending)
                {
                    pendingAfter = (string)entries[i].Id!;
                }

                ReceivedSignal? received;
                try
                {
                    received = await AcceptAsync(entries[i], readingPending).ConfigureAwait(false);
                }
                catch (CoordinatorSupersededException)
                {
                    yield break; // the ACK was refused: this instance no longer owns its inbox
                }

                if (received is null)
                {
                    continue;
                }

                yield return received;
                if (!consumeOnNext)
                {
                    continue; // the caller consumes it when done with it
                }

                // The caller asks for the next signal: this one is consumed now, or with the next read when it was the
                // last one read (a caller that stops asking leaves it pending, to be handed out again).
                if (i < entries.Length - 1)
                {
                    await CompleteAsync(received).ConfigureAwait(false);
                }
                else
                {
                    toConsume = received.EntryId;
                }
            }
        }

        if (toConsume is not null)
        {
            await ConsumeAsync(toConsume).ConfigureAwait(false); // asked for the next one, then cancelled
        }
    }

    /// <summary>
    /// Puts a signal that reached this coordinator some other way than Redis (<c>POST /api/signals/receive</c>) into its
    /// own durable inbox, through the send path (<c>deliver_signal.lua</c>): a duplicate message ID writes nothing, the
    /// inbox cap applies, K2 shows it and the wake-up is published; <see cref="ReadAllAsync"/> then verifies and ACKs it
    /// like any other. The signal is signed here (it was authenticated by its transport). The fence is this instance's
    /// epoch: a superseded instance accepts nothing for the inbox its successor owns.
    /// </summary>
    /// <exception cref="ArgumentException">The signal is not addressed to this coordinator.</exception>
    /// <exception cref="SignalDeliveryException">Redis failed, or the inbox is full; nothing was written.</exception>
    /// <exception cref="CoordinatorSupersededException">This instance was superseded; nothing was written.</exception>
    public async Task<SignalDeliveryResult> EnqueueAsync(Signal signal)
    {
        ArgumentNullException.ThrowIfNull(signal);
        var self = _coordinator.Id;
        if (!string.Equals(signal.ReceiverId, self, StringComparison.Ordinal))
        {
            throw new ArgumentException($"receiverId must be this coordinator ({self})", nameof(signal));
        }

        var signed = SignalSignatures.Sign(Signing, signal);
        var send = new PreparedSend(signed, Json.Serialize(signed), 0);
        RedisResult[] reply;
        try
        {
            reply = (RedisResult[])(await Redis.Database.ScriptEvaluateAsync(
                RedisScripts.DeliverSignal,
                SignalSender.SendKeys(signed, self),
                SignalSender.SendArguments(Redis, send.Json, signed, _coordinator.Epoch)).ConfigureAwait(false))!;
        }
        catch (Exception e) when (RedisErrors.IsTransient(e))
        {
            throw _coordinator.Signals.Failed(send, e);
        }

        if (RedisScripts.IsFenced(reply, out var currentEpoch))
        {
            throw _coordinator.Superseded("signal receive", currentEpoch);
        }

        var key = (string)Keys.Signal(self)!;
        switch ((long)reply[0])
        {
            case 1:
                _logger.LogInformation(
                    "Signal accepted into inbox messageId={MessageId} senderId={SenderId} receiverId={ReceiverId} type={Type} iteration={Iteration} via=http",
                    signed.MessageId, signed.SenderId, self, signed.Type, signed.Iteration);
                return new SignalDeliveryResult(true, signed.MessageId, false, signed.Timestamp, key) { ReceiverId = self };
            case 0:
                _logger.LogWarning("Duplicate signal detected, skipping messageId={MessageId} senderId={SenderId} receiverId={ReceiverId} via=http",
                    signed.MessageId, signed.SenderId, self);
                return new SignalDeliveryResult(true, signed.MessageId, true, signed.Timestamp, key) { ReceiverId = self };
            case SignalSender.RefusedInboxFull:
                throw _coordinator.Signals.InboxFull(signed, (long)reply[1]);
            default:
                // The escalation refusals: the receiver's own fence passed, yet its record says it was declared dead, so
                // this instance is no longer the current one.
                throw _coordinator.Superseded("signal receive", null);
        }
    }

    /// <summary>Marks a handed-out signal consumed: it leaves the inbox, and K2 shows the next pending one or disappears.</summary>
    public Task CompleteAsync(ReceivedSignal received)
    {
        ArgumentNullException.ThrowIfNull(received);
        return ConsumeAsync(received.EntryId);
    }

    private async Task ConsumeAsync(string entryId) =>
        await Redis.Database.ScriptEvaluateAsync(
            RedisScripts.ConsumeSignal,
            [Keys.Inbox(_coordinator.Id), Keys.Signal(_coordinator.Id)],
            [entryId, Keys.InboxGroup, Redis.Options.SignalTtlSeconds]).ConfigureAwait(false);

    /// <summary>Consumes <paramref name="entryId"/> and reads the next entries (<c>inbox_next.lua</c>).</summary>
    private async Task<StreamEntry[]> ConsumeAndReadAsync(string entryId, string readFrom, bool takeTsSignal)
    {
        var reply = (RedisResult[])(await Redis.Database.ScriptEvaluateAsync(
            RedisScripts.InboxNext,
            [Keys.Inbox(_coordinator.Id), Keys.Signal(_coordinator.Id)],
            [entryId, Keys.InboxGroup, Redis.Options.SignalTtlSeconds, _coordinator.Id, BatchSize, readFrom, takeTsSignal ? "1" : "0"])
            .ConfigureAwait(false))!;
        return ParseEntries(reply);
    }

    /// <summary>
    /// Reads the next entries and looks at K2 in the same step (<c>inbox_read.lua</c>): with CFN_TS_COMPAT a TS signal
    /// found there is taken into the inbox first (and is among the entries read); without, it is reported once and left.
    /// </summary>
    private async Task<StreamEntry[]> ReadLookingAtViewAsync(string readFrom, bool takeTsSignal)
    {
        var reply = (RedisResult[])(await Redis.Database.ScriptEvaluateAsync(
            RedisScripts.InboxRead,
            [Keys.Inbox(_coordinator.Id), Keys.Signal(_coordinator.Id)],
            [Keys.InboxGroup, Redis.Options.SignalTtlSeconds, _coordinator.Id, BatchSize, readFrom, takeTsSignal ? "take" : "report"])
            .ConfigureAwait(false))!;
        var foreign = (string?)reply[0];
        if (!string.IsNullOrEmpty(foreign) && !string.Equals(foreign, _reportedForeign, StringComparison.Ordinal))
        {
            _reportedForeign = foreign;
            ReportLeftInView(foreign);
        }

        return ParseEntries((RedisResult[])reply[1]!);
    }

    /// <summary>CFN_TS_COMPAT is off: a TS signal in K2 is neither read nor deleted; said once per signal.</summary>
    private void ReportLeftInView(string raw)
    {
        Json.TryDeserialize<Signal>(raw, out var signal, out _);
        Telemetry.TsSignals.WithLabels(_coordinator.Id, "left_compat_off").Inc();
        _logger.LogWarning(
            "TS signal left in {Key}: not read and not deleted because CFN_TS_COMPAT=false messageId={MessageId} senderId={SenderId}; set CFN_TS_COMPAT=true to receive signals from TS coordinators",
            (string?)Keys.Signal(_coordinator.Id), signal?.MessageId ?? "(unreadable)", signal?.SenderId ?? "(unreadable)");
    }

    private static StreamEntry[] ParseEntries(RedisResult[] reply)
    {
        var entries = new StreamEntry[reply.Length];
        for (var i = 0; i < reply.Length; i++)
        {
            var entry = (RedisResult[])reply[i]!;
            var fields = entry[1].IsNull ? [] : (RedisResult[])entry[1]!;
            var values = new NameValueEntry[fields.Length / 2];
            for (var f = 0; f < values.Length; f++)
            {
                values[f] = new NameValueEntry((RedisValue)fields[2 * f], (RedisValue)fields[2 * f + 1]);
            }

            entries[i] = new StreamEntry((RedisValue)entry[0], values);
        }

        return entries;
    }

    /// <summary>Verifies an entry and ACKs it; returns null (after consuming it) when it must not reach the application.</summary>
    private async Task<ReceivedSignal?> AcceptAsync(StreamEntry entry, bool redelivery)
    {
        var entryId = (string)entry.Id!;
        var raw = (string?)entry["signal"];
        var self = _coordinator.Id;
        if (!Json.TryDeserialize<Signal>(raw, out var signal, out var error) || signal is null ||
            SignalTypes.Normalize(signal.Type) is null ||
            !Identity.Ids.IsValidSignalId(signal.MessageId) || !Identity.Ids.IsValidName(signal.SenderId))
        {
            await RejectAsync(entryId, "invalid", $"Unknown signal type or malformed signal entry={entryId}: {error ?? signal?.Type}")
                .ConfigureAwait(false);
            return null;
        }

        var fromTs = Redis.Options.TsCompat && string.Equals((string?)entry["origin"], "ts", StringComparison.Ordinal);
        if (!string.Equals(signal.ReceiverId, self, StringComparison.Ordinal) ||
            !(fromTs ? SignalSignatures.VerifyFromTs(Signing, signal) : SignalSignatures.Verify(Signing, signal)))
        {
            Telemetry.AckVerificationFailures.WithLabels(self, "signal_signature").Inc();
            await RejectAsync(entryId, "invalid",
                $"Invalid signal signature messageId={signal.MessageId} senderId={signal.SenderId} receiver={signal.ReceiverId}").ConfigureAwait(false);
            return null;
        }

        // Too old by its inbox entry (Redis clock) or by its signed send time (the sender's clock, with slack for skew):
        // a replayed signal from days ago is not acted on.
        var enqueuedAt = EntryTime(entryId);
        var now = Redis.Time.GetUtcNow().ToUnixTimeMilliseconds();
        var window = Redis.Options.SignalTtlSeconds * 1000L;
        if ((enqueuedAt is { } at && now - at > window) || now - signal.Timestamp > window + AllowedClockSkewMs)
        {
            await RejectAsync(entryId, "too_old", $"Signal timestamp too old messageId={signal.MessageId}").ConfigureAwait(false);
            return null;
        }

        if (signal.ReceiverEpoch is { } epoch && epoch < _coordinator.Epoch)
        {
            await RejectAsync(entryId, "stale_epoch",
                $"Ignoring signal for an earlier instance messageId={signal.MessageId} receiverEpoch={epoch} epoch={_coordinator.Epoch}")
                .ConfigureAwait(false);
            return null;
        }

        if (fromTs)
        {
            NoteTsSignalAccepted(signal);
            // The traffic that names a TS coordinator puts it under the monitor's watch, in this receiver's swarm (a TS
            // heartbeat names none); a failure here must not cost the signal (the slow scan finds it too).
            try
            {
                await Detection.TsCoordinators.DiscoverAsync(Redis.Database, [(signal.SenderId, _coordinator.SwarmId)]).ConfigureAwait(false);
            }
            catch (Exception e) when (RedisErrors.IsTransient(e) || e is RedisServerException)
            {
                _logger.LogWarning("Could not put TS coordinator={SenderId} under watch: {Error}", signal.SenderId, e.Message);
            }
        }

        _logger.SignalReceived(signal.MessageId, signal.SenderId, signal.ReceiverId, signal.Type, signal.Iteration, redelivery);
        var senderGone = new StrongBox<bool>();
        // The ACK script also records this coordinator's progress (K7).
        var ack = await _coordinator.Acks.AcknowledgeAsync(signal, enqueuedAt, senderGone, checkSender: !fromTs).ConfigureAwait(false);

        return new ReceivedSignal(signal, ack, entryId, redelivery) { SenderGone = senderGone.Value };
    }

    /// <summary>
    /// A TS signal passed every check (<see cref="SignalSignatures.VerifyFromTs"/> and the rest): counted, and said when it
    /// came unsigned (<c>ts_signals_total{reason="accepted_unsigned"}</c>), the mode's security cost.
    /// </summary>
    private void NoteTsSignalAccepted(Signal signal)
    {
        if (signal.Signature is not null)
        {
            Telemetry.TsSignals.WithLabels(_coordinator.Id, "accepted_signed").Inc();
            return;
        }

        Telemetry.TsSignals.WithLabels(_coordinator.Id, "accepted_unsigned").Inc();
        _logger.LogWarning("Accepting unsigned TS signal (CFN_TS_COMPAT=true) messageId={MessageId} senderId={SenderId} receiverId={ReceiverId}",
            signal.MessageId, signal.SenderId, signal.ReceiverId);
    }

    private async Task RejectAsync(string entryId, string reason, string message)
    {
        Telemetry.SignalsIgnored.WithLabels(_coordinator.Id, reason).Inc();
        _logger.LogWarning("{Message}", message);
        await ConsumeAsync(entryId).ConfigureAwait(false);
    }

    /// <summary>The Redis time (ms) a stream entry was added: the first part of its ID.</summary>
    private static long? EntryTime(string entryId)
    {
        var dash = entryId.IndexOf('-', StringComparison.Ordinal);
        return long.TryParse(dash < 0 ? entryId : entryId[..dash], NumberStyles.None, CultureInfo.InvariantCulture, out var ms)
            ? ms
            : null;
    }
}
