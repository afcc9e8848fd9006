namespace Cfn.Coordination.Resilience;

/// <summary>
/// Permission to make one call through a <see cref="CircuitBreaker"/>, for callers that cannot pass a delegate to
/// <see cref="CircuitBreaker.ExecuteAsync{T}"/>. Report the outcome exactly once with <see cref="RecordSuccess"/> or
/// <see cref="RecordFailure"/>, and always dispose the lease: disposing without an outcome (the caller gave up, or the
/// exception is not one the breaker counts) frees a half-open trial slot without counting anything.
/// </summary>
/// <example>
/// <code>
/// if (!breaker.TryAcquire(out var lease)) { /* rejected: the circuit is open */ }
/// using (lease)
/// {
///     try { await CallAsync(); lease.RecordSuccess(); }
///     catch (Exception e) { lease.RecordFailure(e); throw; }
/// }
/// </code>
/// </example>
/// <remarks>
/// An outcome reported after the breaker changed state (for example a trial call that ends after another trial
/// re-opened the circuit) belongs to a period that is over, and does not count.
/// </remarks>
public sealed class CircuitBreakerLease : IDisposable
{
    private readonly CircuitBreaker _breaker;
    private int _completed;

    internal CircuitBreakerLease(CircuitBreaker breaker, long generation, bool isTrial)
    {
        _breaker = breaker;
        Generation = generation;
        IsTrial = isTrial;
    }

    /// <summary>True when this call took a half-open trial slot.</summary>
    public bool IsTrial { get; }

    /// <summary>True once an outcome was reported or the lease was disposed.</summary>
    public bool IsCompleted => Volatile.Read(ref _completed) != 0;

    internal long Generation { get; }

    /// <summary>Records that the call succeeded. Later reports on this lease are ignored.</summary>
    public void RecordSuccess()
    {
        if (TryComplete())
        {
            _breaker.Complete(this, CircuitBreaker.Outcome.Success);
        }
    }

    /// <summary>
    /// Records that the call failed. When <paramref name="exception"/> is given and the breaker's
    /// <see cref="CircuitBreakerOptions.ShouldHandle"/> does not handle it, nothing is counted (the slot is freed).
    /// Later reports on this lease are ignored.
    /// </summary>
    public void RecordFailure(Exception? exception = null)
    {
        if (TryComplete())
        {
            _breaker.Complete(this, _breaker.Handles(exception) ? CircuitBreaker.Outcome.Failure : CircuitBreaker.Outcome.Neutral);
        }
    }

    /// <summary>Records a timeout: always a failure, whatever <see cref="CircuitBreakerOptions.ShouldHandle"/> says.</summary>
    internal void RecordTimeout()
    {
        if (TryComplete())
        {
            _breaker.Complete(this, CircuitBreaker.Outcome.Timeout);
        }
    }

    /// <summary>Frees the slot without an outcome if none was reported.</summary>
    public void Dispose()
    {
        if (TryComplete())
        {
            _breaker.Complete(this, CircuitBreaker.Outcome.Neutral);
        }
    }

    private bool TryComplete() => Interlocked.Exchange(ref _completed, 1) == 0;
}
