using Cfn.Coordination.Acks;

namespace Cfn.Coordination.Signals;

/// <summary>K5 <c>blocking:retry:{signalId}:{attempt}</c>: written before each attempt (TTL 600 s), for monitoring.</summary>
internal sealed record RetryAttemptRecord
{
    /// <summary>1-based attempt number (1 is the first send).</summary>
    public required int Attempt { get; init; }

    /// <summary>When the attempt started, ms.</summary>
    public required long Timestamp { get; init; }

    /// <summary>The retrying (sending) coordinator.</summary>
    public required string CoordinatorId { get; init; }

    /// <summary>The signal (its message ID).</summary>
    public required string SignalId { get; init; }
}

/// <summary>
/// K6 <c>blocking:retry:failed:{signalId}</c>: a signal whose retries were exhausted (TTL 3600 s), indexed under its
/// sender (<c>blocking:retry:failed-by:{senderId}</c>) so <c>POST /api/signals/retry-failed</c> finds it without SCAN.
/// Besides the playbook's fields it keeps the signed signal itself, so a later re-send is the same message.
/// </summary>
internal sealed record RetryFailedRecord
{
    /// <summary>The signal (its message ID).</summary>
    public required string SignalId { get; init; }

    /// <summary>The sender.</summary>
    public required string CoordinatorId { get; init; }

    /// <summary>The receiver that never ACKed.</summary>
    public required string ReceiverId { get; init; }

    /// <summary>The signal's type.</summary>
    public required string SignalType { get; init; }

    /// <summary>The signal's iteration.</summary>
    public required int Iteration { get; init; }

    /// <summary>Attempts made so far.</summary>
    public required int Attempts { get; init; }

    /// <summary>When the last attempt gave up, ms.</summary>
    public required long Timestamp { get; init; }

    /// <summary>Why the last attempt failed.</summary>
    public required string LastError { get; init; }

    /// <summary>The inbox entry of the last delivery, if known.</summary>
    public string? EntryId { get; init; }

    /// <summary>The signed signal, re-sent as is.</summary>
    public required Signal Signal { get; init; }
}

/// <summary>How a sender-side retry ended.</summary>
internal static class SignalRetryStatus
{
    /// <summary>The receiver ACKed.</summary>
    public const string Acknowledged = "acknowledged";

    /// <summary>Every attempt timed out (K6 written).</summary>
    public const string Exhausted = "exhausted";

    /// <summary>An operator force-unblocked the coordinator during a wait; no further attempt (K6 written).</summary>
    public const string Forced = "forced";

    /// <summary>
    /// The receiver was declared dead and no replacement is coming (or every replacement followed was dead too): nobody
    /// will ACK, so no further attempt and no K6 record.
    /// </summary>
    public const string ReceiverDead = "receiver_dead";
}

/// <summary>The outcome of <see cref="SignalRetrier.SendWithRetryAsync"/>.</summary>
/// <param name="Success">True when the receiver ACKed.</param>
/// <param name="SignalId">The message ID, the same on every attempt (a redirect to a dead receiver's replacement changes its receiver segment).</param>
/// <param name="ReceiverId">The receiver (the replacement, when the signal was redirected to one).</param>
/// <param name="SignalType">The signal's type.</param>
/// <param name="Iteration">The signal's iteration.</param>
/// <param name="Attempts">Attempts made (the first send included).</param>
/// <param name="MaxRetries">Re-sends allowed after the first send.</param>
/// <param name="Status">One of <see cref="SignalRetryStatus"/>.</param>
/// <param name="LastError">Why the last failed attempt failed; null on success at the first attempt.</param>
/// <param name="Ack">The receiver's verified ACK on success.</param>
public sealed record SignalRetryResult(
    bool Success,
    string SignalId,
    string ReceiverId,
    string SignalType,
    int Iteration,
    int Attempts,
    int MaxRetries,
    string Status,
    string? LastError,
    SignalAck? Ack);

/// <summary>The outcome of <see cref="SignalRetrier.RetryFailedAsync"/>.</summary>
/// <param name="Retried">K6 records re-sent.</param>
/// <param name="Succeeded">Those ACKed (their K6 record is deleted).</param>
/// <param name="Failed">Those still not ACKed (their K6 record is kept, with one more attempt).</param>
public sealed record RetryFailedSummary(int Retried, int Succeeded, int Failed);
