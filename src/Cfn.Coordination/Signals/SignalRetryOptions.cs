using System.ComponentModel.DataAnnotations;

namespace Cfn.Coordination.Signals;

/// <summary>
/// Settings of the sender-side retry (SPEC §2.7): wait <see cref="AckTimeout"/> for the receiver's ACK after each
/// attempt, and re-send up to <see cref="MaxRetries"/> times after the back-off delays 1 s, 2 s, 4 s (the last delay
/// repeats). Defaults are the playbook's ("ACK not received within 5s timeout", 3 retries).
/// </summary>
public sealed class SignalRetryOptions
{
    /// <summary>Most re-sends a caller may ask for.</summary>
    public const int MaxAllowedRetries = 10;

    /// <summary>How long each attempt waits for the ACK (5000 ms).</summary>
    public TimeSpan AckTimeout { get; set; } = TimeSpan.FromMilliseconds(5000);

    /// <summary>Re-sends after the first send (3); the total number of attempts is one more.</summary>
    [Range(0, MaxAllowedRetries, ErrorMessage = "maxRetries must be from {1} to {2}")]
    public int MaxRetries { get; set; } = 3;

    /// <summary>Delay before re-send n (1 s, 2 s, 4 s); re-sends past the list use its last entry.</summary>
    public IReadOnlyList<TimeSpan> Backoff { get; set; } = [TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(4)];

    /// <summary>K5 TTL (600 s).</summary>
    [Range(1, 86_400, ErrorMessage = "AttemptTtlSeconds must be from {1} to {2}")]
    public int AttemptTtlSeconds { get; set; } = 600;

    /// <summary>K6 TTL (3600 s); also how long a record stays in its sender's index.</summary>
    [Range(1, 7 * 86_400, ErrorMessage = "FailedTtlSeconds must be from {1} to {2}")]
    public int FailedTtlSeconds { get; set; } = 3600;

    /// <summary>Most K6 records one <see cref="SignalRetrier.RetryFailedAsync"/> call re-sends, and most kept in a sender's index (1000).</summary>
    [Range(1, 100_000, ErrorMessage = "MaxFailedRecords must be from {1} to {2}")]
    public int MaxFailedRecords { get; set; } = 1000;

    /// <summary>Most inbox entries searched for a re-sent message whose inbox entry is not known (1000).</summary>
    [Range(1, 100_000, ErrorMessage = "MaxInboxSearch must be from {1} to {2}")]
    public int MaxInboxSearch { get; set; } = 1000;

    /// <summary>Throws <see cref="ValidationException"/> naming the first bad setting.</summary>
    public void Validate()
    {
        OptionsValidation.Annotations(this);

        if (AckTimeout <= TimeSpan.Zero || AckTimeout > Acks.AckWaiter.MaxTimeout)
        {
            throw new ValidationException("AckTimeout must be more than 0 and at most 7 days");
        }

        if (Backoff is null || Backoff.Count == 0 || Backoff.Any(d => d < TimeSpan.Zero))
        {
            throw new ValidationException("Backoff must hold at least one delay, none negative");
        }
    }

    /// <summary>The delay before re-send <paramref name="retry"/> (1-based).</summary>
    internal TimeSpan DelayBefore(int retry) => Backoff[Math.Min(retry, Backoff.Count) - 1];
}
