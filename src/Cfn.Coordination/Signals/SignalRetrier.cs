using System.Globalization;
using System.Text;
using System.Text.Json;
using Cfn.Coordination.Acks;
using Cfn.Coordination.Identity;
using Cfn.Coordination.Metrics;
using Cfn.Coordination.Redis;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Cfn.Coordination.Signals;

/// <summary>
/// Sender-side retry (SPEC §2.7, the playbook's <c>POST /api/signals/retry</c>): send a signal, wait up to
/// <see cref="SignalRetryOptions.AckTimeout"/> for the receiver's ACK, and re-send after 1 s, 2 s, 4 s up to
/// <see cref="SignalRetryOptions.MaxRetries"/> times. Every attempt carries the same message ID.
/// <para>
/// A plain <see cref="SignalSender.SendAsync"/> with the same message ID would be refused as a duplicate by its
/// idempotency record and change nothing, so re-sends run their own script (<c>resend_signal.lua</c>), which looks at
/// what became of the earlier delivery: already ACKed → nothing to do; still in the receiver's inbox → the receiver is
/// woken again (its wake-up may have been lost); gone from the inbox without an ACK (the inbox was cleaned or Redis
/// lost it) → delivered again under the same message ID. The receiver ACKs before it hands a signal out, and its ACK
/// is idempotent by message ID, so a re-delivery never makes it process a signal it already ACKed.
/// </para>
/// <para>
/// Before each attempt K5 <c>blocking:retry:{signalId}:{attempt}</c> is written (TTL 600 s). Logs: <c>Signal retry
/// attempt failed</c> (WARN), <c>Signal retry successful</c> (INFO), and after the last attempt <c>Signal retry
/// exhausted all attempts</c> (ERROR), with K6 <c>blocking:retry:failed:{signalId}</c> (TTL 3600 s) indexed under the
/// sender and <c>signals_failed_total{reason="ack_timeout"}</c> incremented once for the signal (an attempt's ACK wait
/// that times out is not counted on its own, unlike a plain <see cref="AckWaiter"/> wait). The receiver's death is then the
/// heartbeat monitor's business (its escalation hands the inbox to a replacement). Stateless: make one per call if
/// convenient.
/// </para>
/// <para>
/// An attempt refused because the receiver's inbox is full writes nothing and is retried like a missed ACK (the count at
/// the end is then <c>inbox_full</c>). A receiver declared dead and escalated is followed to its replacement (the signal
/// is re-addressed, its message ID names the replacement, and later attempts send that one); one whose escalation failed
/// ends the retry at once with status <see cref="SignalRetryStatus.ReceiverDead"/> (no K6 record).
/// </para>
/// </summary>
public sealed class SignalRetrier
{
    private readonly Coordinator _coordinator;
    private readonly ILogger _logger;

    /// <summary>Creates a retrier for signals sent by <paramref name="coordinator"/>.</summary>
    /// <exception cref="System.ComponentModel.DataAnnotations.ValidationException">The options are invalid.</exception>
    public SignalRetrier(Coordinator coordinator, SignalRetryOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(coordinator);
        Options = options ?? new SignalRetryOptions();
        Options.Validate();
        _coordinator = coordinator;
        _logger = coordinator.Redis.LoggerFactory.CreateLogger<SignalRetrier>();
    }

    /// <summary>The retry settings.</summary>
    public SignalRetryOptions Options { get; }

    private RedisContext Redis => _coordinator.Redis;

    private CoordinationMetrics Telemetry => _coordinator.Metrics;

    /// <summary>
    /// Sends a signal from this coordinator to <paramref name="receiverId"/> and retries until it is ACKed or the
    /// attempts are exhausted. Never throws for a missing ACK: the result says how it ended.
    /// </summary>
    /// <param name="receiverId">The receiving coordinator.</param>
    /// <param name="signalType">One of <see cref="SignalTypes"/>.</param>
    /// <param name="iteration">The sender's iteration.</param>
    /// <param name="payload">Optional payload (at most <see cref="CoordinationOptions.MaxPayloadBytes"/> as JSON).</param>
    /// <param name="maxRetries">Re-sends after the first send; <see cref="SignalRetryOptions.MaxRetries"/> when null.</param>
    /// <param name="idempotencyKey">Optional last segment of the message ID (instead of the send time).</param>
    /// <param name="cancellationToken">Stops waiting and retrying.</param>
    /// <exception cref="InvalidIdException">An ID, the type or the idempotency key is invalid; nothing was written.</exception>
    /// <exception cref="ArgumentException">The iteration, maxRetries or payload is out of range; nothing was written.</exception>
    /// <exception cref="CoordinatorSupersededException">This instance was superseded.</exception>
    public async Task<SignalRetryResult> SendWithRetryAsync(
        string receiverId,
        string signalType,
        int iteration,
        JsonElement? payload = null,
        int? maxRetries = null,
        string? idempotencyKey = null,
        CancellationToken cancellationToken = default)
    {
        // Checked and signed once, like a plain send: every attempt re-sends this signal.
        var signal = SignalBuilder.Build(_coordinator, receiverId, signalType, iteration, payload, idempotencyKey, receiverEpoch: null, typeField: "signalType");
        var retries = maxRetries ?? Options.MaxRetries;
        if (retries is < 0 or > SignalRetryOptions.MaxAllowedRetries)
        {
            throw new ArgumentOutOfRangeException(nameof(maxRetries), retries,
                $"maxRetries must be from 0 to {SignalRetryOptions.MaxAllowedRetries}");
        }

        string? entryId = null;
        string? lastError = null;
        string? refusal = null;
        var status = SignalRetryStatus.Exhausted;
        var attempts = 0;
        for (var attempt = 1; attempt <= retries + 1; attempt++)
        {
            attempts = attempt;
            await WriteAttemptAsync(signal.MessageId, attempt).ConfigureAwait(false);
            if (attempt > 1)
            {
                await Task.Delay(Options.DelayBefore(attempt - 1), Redis.Time, cancellationToken).ConfigureAwait(false);
            }

            var outcome = await AttemptAsync(signal, entryId, attempt, retries + 1, cancellationToken).ConfigureAwait(false);
            // A redirect to the receiver's replacement re-addressed the signal: later attempts send that one.
            entryId = ReferenceEquals(outcome.Signal, signal) ? outcome.EntryId ?? entryId : outcome.EntryId;
            signal = outcome.Signal;
            if (outcome.Ack is not null)
            {
                return new SignalRetryResult(true, signal.MessageId, signal.ReceiverId, signal.Type, signal.Iteration, attempt, retries,
                    SignalRetryStatus.Acknowledged, lastError, outcome.Ack);
            }

            lastError = outcome.Error;
            refusal = outcome.Refusal;
            if (outcome.Forced)
            {
                status = SignalRetryStatus.Forced;
                break;
            }

            if (refusal is SignalDeliveryException.ReceiverDead or SignalDeliveryException.TooManyRedirects)
            {
                status = SignalRetryStatus.ReceiverDead;
                break;
            }
        }

        await RecordFailureAsync(signal, entryId, attempts, lastError!, status, refusal).ConfigureAwait(false);
        return new SignalRetryResult(false, signal.MessageId, signal.ReceiverId, signal.Type, signal.Iteration, attempts, retries,
            status, lastError, null);
    }

    /// <summary>
    /// Re-sends every K6 record this coordinator sent (from its index, at most
    /// <see cref="SignalRetryOptions.MaxFailedRecords"/>), one attempt each, all waiting for their ACKs at once. A record
    /// whose signal is ACKed is deleted; the others are kept with one more attempt counted.
    /// </summary>
    /// <exception cref="CoordinatorSupersededException">This instance was superseded.</exception>
    public async Task<RetryFailedSummary> RetryFailedAsync(CancellationToken cancellationToken = default)
    {
        var database = Redis.Database;
        var index = Keys.RetryFailedIndex(_coordinator.Id);
        var members = await database.SortedSetRangeByRankAsync(index, 0, Options.MaxFailedRecords - 1).ConfigureAwait(false);
        var records = new List<RetryFailedRecord>();
        foreach (var member in members)
        {
            var signalId = (string?)member;
            if (!Ids.IsValidSignalId(signalId))
            {
                await database.SortedSetRemoveAsync(index, member).ConfigureAwait(false);
                continue;
            }

            var raw = (string?)await database.StringGetAsync(Keys.RetryFailed(signalId!)).ConfigureAwait(false);
            if (!Json.TryDeserialize<RetryFailedRecord>(raw, out var record, out var error) ||
                !string.Equals(record!.Signal.SenderId, _coordinator.Id, StringComparison.Ordinal) ||
                !string.Equals(record.Signal.MessageId, signalId, StringComparison.Ordinal) ||
                !SignalSignatures.Verify(_coordinator.SigningKeys, record.Signal))
            {
                // Expired, cleaned up with its receiver, or not a record this coordinator can re-send as is.
                if (raw is not null)
                {
                    _logger.LogWarning("Skipping failed-signal record signalId={SignalId}: {Error}", signalId,
                        error ?? "not a valid signal sent by this coordinator");
                }

                await database.SortedSetRemoveAsync(index, member).ConfigureAwait(false);
                continue;
            }

            records.Add(record);
        }

        var outcomes = await Task.WhenAll(records.Select(r => RetryRecordAsync(r, cancellationToken))).ConfigureAwait(false);
        var succeeded = outcomes.Count(o => o);
        _logger.LogInformation("Failed signals retried coordinator={CoordinatorId} retried={Retried} succeeded={Succeeded} failed={Failed}",
            _coordinator.Id, records.Count, succeeded, records.Count - succeeded);
        return new RetryFailedSummary(records.Count, succeeded, records.Count - succeeded);
    }

    private async Task<bool> RetryRecordAsync(RetryFailedRecord record, CancellationToken cancellationToken)
    {
        var attempt = record.Attempts + 1;
        await WriteAttemptAsync(record.SignalId, attempt).ConfigureAwait(false);
        var outcome = await AttemptAsync(record.Signal, record.EntryId, attempt, attempt, cancellationToken).ConfigureAwait(false);
        var database = Redis.Database;
        var redirected = !ReferenceEquals(outcome.Signal, record.Signal);
        var receiverDead = outcome.Refusal is SignalDeliveryException.ReceiverDead or SignalDeliveryException.TooManyRedirects;
        if (outcome.Ack is not null || redirected || receiverDead)
        {
            // ACKed; or nobody will ever ACK it; or it now lives under the replacement's message ID (recorded below).
            await database.KeyDeleteAsync(Keys.RetryFailed(record.SignalId)).ConfigureAwait(false);
            await database.SortedSetRemoveAsync(Keys.RetryFailedIndex(_coordinator.Id), record.SignalId).ConfigureAwait(false);
        }

        if (outcome.Ack is not null)
        {
            return true;
        }

        if (receiverDead)
        {
            Telemetry.SignalsFailed.WithLabels(_coordinator.Id, record.Signal.Type, SignalDeliveryException.ReceiverDead).Inc();
            return false;
        }

        if (redirected)
        {
            await RecordFailureAsync(outcome.Signal, outcome.EntryId, attempt, outcome.Error ?? record.LastError, SignalRetryStatus.Exhausted,
                outcome.Refusal, count: false).ConfigureAwait(false);
            return false;
        }

        var updated = record with
        {
            Attempts = attempt,
            Timestamp = Redis.Time.GetUtcNow().ToUnixTimeMilliseconds(),
            LastError = outcome.Error ?? record.LastError,
            EntryId = outcome.EntryId ?? record.EntryId,
        };
        await database.StringSetAsync(Keys.RetryFailed(record.SignalId), Json.Serialize(updated),
            TimeSpan.FromSeconds(Options.FailedTtlSeconds)).ConfigureAwait(false);
        return false;
    }

    /// <summary>
    /// One attempt: deliver (or re-deliver, or re-wake), then wait for the ACK. The outcome carries the signal as it was
    /// last sent (re-addressed when its receiver had been replaced).
    /// </summary>
    private async Task<AttemptOutcome> AttemptAsync(Signal signal, string? entryId, int attempt, int totalAttempts, CancellationToken cancellationToken)
    {
        Delivery delivery;
        try
        {
            delivery = await DeliverAsync(signal, entryId).ConfigureAwait(false);
        }
        catch (Exception e) when (RedisErrors.IsTransient(e))
        {
            var error = "Redis error: " + RedisErrors.FirstClause(e);
            LogAttemptFailed(signal, attempt, totalAttempts, error);
            return new AttemptOutcome(null, error, false, null, signal, null);
        }

        signal = delivery.Signal;
        var newEntry = delivery.EntryId;
        if (delivery.Refused is { } refused)
        {
            // Not written: a full inbox may drain before the next attempt; a dead receiver without replacement will not.
            LogAttemptFailed(signal, attempt, totalAttempts, refused.Message);
            return new AttemptOutcome(null, refused.Message, false, null, signal, refused.Reason);
        }

        var receiver = signal.ReceiverId;
        // Not counted per attempt: the signal has failed only when every attempt is exhausted (RecordFailureAsync).
        var wait = await _coordinator.Waiter.WaitForRetryAttemptAsync(receiver, signal.MessageId, Options.AckTimeout, cancellationToken)
            .ConfigureAwait(false);
        switch (wait.Status)
        {
            case AckWaitStatus.Completed:
                _logger.LogInformation(
                    "Signal retry successful signalId={SignalId} receiverId={ReceiverId} attempt={Attempt} maxAttempts={MaxAttempts}",
                    signal.MessageId, receiver, attempt, totalAttempts);
                return new AttemptOutcome(wait.Acks[receiver], null, false, newEntry, signal, null);
            case AckWaitStatus.Cancelled:
                cancellationToken.ThrowIfCancellationRequested();
                throw _coordinator.Superseded("signal retry", null);
            case AckWaitStatus.Forced:
                const string forced = "Force unblock received while waiting for the ACK";
                LogAttemptFailed(signal, attempt, totalAttempts, forced);
                return new AttemptOutcome(null, forced, true, newEntry, signal, null);
            case AckWaitStatus.PeerDead:
                const string dead = "Receiver is dead and nothing will ACK in its place";
                LogAttemptFailed(signal, attempt, totalAttempts, dead);
                return new AttemptOutcome(null, dead, false, newEntry, signal, null);
            default:
                var error = string.Create(CultureInfo.InvariantCulture,
                    $"ACK not received within {(long)Options.AckTimeout.TotalMilliseconds}ms timeout");
                LogAttemptFailed(signal, attempt, totalAttempts, error);
                return new AttemptOutcome(null, error, false, newEntry, signal, null);
        }
    }

    private void LogAttemptFailed(Signal signal, int attempt, int totalAttempts, string error) =>
        _logger.LogWarning(
            "Signal retry attempt failed signalId={SignalId} receiverId={ReceiverId} attempt={Attempt} maxAttempts={MaxAttempts} error=\"{Error}\"",
            signal.MessageId, signal.ReceiverId, attempt, totalAttempts, error);

    /// <summary>
    /// Runs <c>resend_signal.lua</c>, following a redirect to the receiver's replacement (the signal is re-addressed and
    /// sent again). Returns the signal as sent and the inbox entry it now has (null when it was already ACKed), or the
    /// refusal (inbox full, receiver dead) that kept it out; refusals are counted once, by <see cref="RecordFailureAsync"/>.
    /// </summary>
    private async Task<Delivery> DeliverAsync(Signal signal, string? entryId)
    {
        var senders = _coordinator.Signals;
        for (var hops = 0; ; hops++)
        {
            var receiver = signal.ReceiverId;
            var reply = (RedisResult[])(await Redis.Database.ScriptEvaluateAsync(
                RedisScripts.ResendSignal,
                [.. SignalSender.SendKeys(signal, _coordinator.Id), Keys.Ack(receiver, signal.MessageId)],
                [.. SignalSender.SendArguments(Redis, Json.Serialize(signal), signal, _coordinator.Epoch), entryId ?? string.Empty,
                    Options.MaxInboxSearch])
                .ConfigureAwait(false))!;
            if (RedisScripts.IsFenced(reply, out var currentEpoch))
            {
                throw _coordinator.Superseded("signal retry", currentEpoch);
            }

            var code = (long)reply[0];
            var entry = (string?)reply[1];
            switch (code)
            {
                case SignalSender.RefusedInboxFull:
                    return new Delivery(signal, null, senders.InboxFull(signal, (long)reply[1], count: false));
                case SignalSender.RefusedReceiverDead:
                    return new Delivery(signal, null, senders.ReceiverDead(signal, entry, count: false));
                case SignalSender.Redirected:
                    if (hops >= SignalSender.MaxRedirects)
                    {
                        return new Delivery(signal, null, senders.TooManyRedirects(signal, entry, count: false));
                    }

                    if (await senders.ReaddressAsync(signal, entry).ConfigureAwait(false) is not { } next)
                    {
                        return new Delivery(signal, null, senders.ReceiverDead(signal, entry, count: false));
                    }

                    signal = next;
                    entryId = null; // an entry of the old receiver's inbox means nothing in the replacement's
                    continue;
                case 1 or 2:
                    Telemetry.SignalsSent.WithLabels(_coordinator.Id, signal.Type).Inc();
                    _logger.LogInformation(
                        "Signal sent successfully messageId={MessageId} senderId={SenderId} receiverId={ReceiverId} type={Type} iteration={Iteration} key={Key} ttl={Ttl} redelivery={Redelivery}",
                        signal.MessageId, signal.SenderId, receiver, signal.Type, signal.Iteration, (string)Keys.Signal(receiver)!,
                        Redis.Options.SignalTtlSeconds, code == 2);
                    return new Delivery(signal, entry, null);
                case 3:
                    _logger.LogInformation("Signal still pending in the receiver's inbox, receiver woken again messageId={MessageId} receiverId={ReceiverId}",
                        signal.MessageId, receiver);
                    return new Delivery(signal, entry, null);
                default:
                    return new Delivery(signal, null, null); // already ACKed: the wait returns at once
            }
        }
    }

    private async Task WriteAttemptAsync(string signalId, int attempt)
    {
        var record = new RetryAttemptRecord
        {
            Attempt = attempt,
            Timestamp = Redis.Time.GetUtcNow().ToUnixTimeMilliseconds(),
            CoordinatorId = _coordinator.Id,
            SignalId = signalId,
        };
        try
        {
            await Redis.Database.StringSetAsync(Keys.RetryAttempt(signalId, attempt), Json.Serialize(record),
                TimeSpan.FromSeconds(Options.AttemptTtlSeconds)).ConfigureAwait(false);
        }
        catch (Exception e) when (RedisErrors.IsTransient(e))
        {
            // A monitoring record must not stop the retry itself; the attempt reports the outage.
            _logger.LogWarning("Redis error while recording retry attempt signalId={SignalId} attempt={Attempt}: {Error}",
                signalId, attempt, RedisErrors.FirstClause(e));
        }
    }

    /// <summary>After the last attempt: ERROR log, K6 plus its index entry, and the failure metric.</summary>
    private async Task RecordFailureAsync(
        Signal signal, string? entryId, int attempts, string lastError, string status, string? refusal, bool count = true)
    {
        // One count per signal: the last attempt's refusal when the receiver's side refused it, else what ended the retry.
        var reason = status == SignalRetryStatus.Forced ? "forced" : refusal ?? "ack_timeout";
        if (count)
        {
            Telemetry.SignalsFailed.WithLabels(_coordinator.Id, signal.Type, reason).Inc();
        }

        if (status == SignalRetryStatus.ReceiverDead)
        {
            // Nobody will ever ACK it: no K6 record for retry-failed to re-send.
            _logger.LogError("Signal retry stopped: receiver dead with no replacement signalId={SignalId} receiverId={ReceiverId} attempts={Attempts} lastError=\"{LastError}\"",
                signal.MessageId, signal.ReceiverId, attempts, lastError);
            return;
        }

        if (status == SignalRetryStatus.Forced)
        {
            _logger.LogWarning("Signal retry stopped by force unblock signalId={SignalId} receiverId={ReceiverId} attempts={Attempts}",
                signal.MessageId, signal.ReceiverId, attempts);
        }
        else
        {
            _logger.LogError(
                "Signal retry exhausted all attempts signalId={SignalId} receiverId={ReceiverId} attempts={Attempts} lastError=\"{LastError}\"; the receiver is left to dead-coordinator detection",
                signal.MessageId, signal.ReceiverId, attempts, lastError);
        }

        var now = Redis.Time.GetUtcNow().ToUnixTimeMilliseconds();
        var record = new RetryFailedRecord
        {
            SignalId = signal.MessageId,
            CoordinatorId = _coordinator.Id,
            ReceiverId = signal.ReceiverId,
            SignalType = signal.Type,
            Iteration = signal.Iteration,
            Attempts = attempts,
            Timestamp = now,
            LastError = lastError,
            EntryId = entryId,
            Signal = signal,
        };
        var index = Keys.RetryFailedIndex(_coordinator.Id);
        var ttl = TimeSpan.FromSeconds(Options.FailedTtlSeconds);
        var transaction = Redis.Database.CreateTransaction();
        var writes = new List<Task>
        {
            transaction.StringSetAsync(Keys.RetryFailed(signal.MessageId), Json.Serialize(record), ttl),
            transaction.SortedSetAddAsync(index, signal.MessageId, now),
            // Bounded: entries whose K6 has expired go, and so do the oldest beyond the cap.
            transaction.SortedSetRemoveRangeByScoreAsync(index, double.NegativeInfinity, now - (long)ttl.TotalMilliseconds),
            transaction.SortedSetRemoveRangeByRankAsync(index, 0, -Options.MaxFailedRecords - 1),
            transaction.KeyExpireAsync(index, ttl),
        };
        try
        {
            await transaction.ExecuteAsync().ConfigureAwait(false);
            await Task.WhenAll(writes).ConfigureAwait(false);
        }
        catch (Exception e) when (RedisErrors.IsTransient(e))
        {
            _logger.LogError("Redis error while recording failed signal signalId={SignalId}: {Error}", signal.MessageId, RedisErrors.FirstClause(e));
        }
    }

    /// <summary>How one attempt ended; <paramref name="Refusal"/> is a <see cref="SignalDeliveryException.Reason"/> when nothing was written.</summary>
    private sealed record AttemptOutcome(SignalAck? Ack, string? Error, bool Forced, string? EntryId, Signal Signal, string? Refusal);

    /// <summary>What <c>resend_signal.lua</c> did with the signal (as finally addressed).</summary>
    private sealed record Delivery(Signal Signal, string? EntryId, SignalDeliveryException? Refused);
}
