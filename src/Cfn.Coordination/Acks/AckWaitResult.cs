namespace Cfn.Coordination.Acks;

/// <summary>How an ACK wait ended. The lowercase name is the <c>status</c> label of <c>blocking_duration_seconds</c>.</summary>
public enum AckWaitStatus
{
    /// <summary>Every awaited coordinator ACKed.</summary>
    Completed,

    /// <summary>The timeout passed first; the result is partial.</summary>
    Timeout,

    /// <summary>The caller's cancellation token fired.</summary>
    Cancelled,

    /// <summary>An operator force-unblocked the coordinator (SPEC §3.1 #6).</summary>
    Forced,

    /// <summary>An unexpected failure ended the wait.</summary>
    Error,
}

/// <summary>The outcome of <c>AckWaiter.WaitForAcksAsync</c> (either overload): never an exception for timeout, cancellation or force.</summary>
/// <param name="SignalId">The awaited signal.</param>
/// <param name="Status">How the wait ended.</param>
/// <param name="Acks">Verified ACKs by coordinator ID (partial unless <see cref="AckWaitStatus.Completed"/>).</param>
/// <param name="Missing">Awaited coordinators with no valid ACK, in request order.</param>
/// <param name="Duration">How long the wait took.</param>
public sealed record AckWaitResult(
    string SignalId,
    AckWaitStatus Status,
    IReadOnlyDictionary<string, SignalAck> Acks,
    IReadOnlyList<string> Missing,
    TimeSpan Duration)
{
    /// <summary>The metric label of <see cref="Status"/>.</summary>
    public string StatusLabel => Status.ToString().ToLowerInvariant();
}
