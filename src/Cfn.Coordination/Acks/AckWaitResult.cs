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

    /// <summary>
    /// An awaited coordinator died and nothing will ACK in its place (auto-escalation off, or its replacement failed to
    /// start): the wait ended at once (D18). <see cref="AckWaitResult.DeadPeers"/> names them. Label <c>peer_dead</c>.
    /// </summary>
    PeerDead,
}

/// <summary>The outcome of <c>AckWaiter.WaitForAcksAsync</c> (either overload): never an exception for timeout, cancellation or force.</summary>
/// <param name="SignalId">The awaited signal.</param>
/// <param name="Status">How the wait ended.</param>
/// <param name="Acks">
/// Verified ACKs by awaited coordinator ID (partial unless <see cref="AckWaitStatus.Completed"/>). For a coordinator that
/// died and was replaced, the replacement's ACK of the handed-over signal (see <see cref="AckWaitResult.HandedOver"/>).
/// </param>
/// <param name="Missing">Awaited coordinators with no valid ACK, in request order.</param>
/// <param name="Duration">How long the wait took.</param>
public sealed record AckWaitResult(
    string SignalId,
    AckWaitStatus Status,
    IReadOnlyDictionary<string, SignalAck> Acks,
    IReadOnlyList<string> Missing,
    TimeSpan Duration)
{
    /// <summary>The metric label of <see cref="Status"/>: its lowercase name, <c>peer_dead</c> for <see cref="AckWaitStatus.PeerDead"/>.</summary>
    public string StatusLabel => Status == AckWaitStatus.PeerDead ? "peer_dead" : Status.ToString().ToLowerInvariant();

    /// <summary>
    /// Awaited coordinators that died with nothing coming in their place, in request order (set with
    /// <see cref="AckWaitStatus.PeerDead"/>; empty otherwise).
    /// </summary>
    public IReadOnlyList<string> DeadPeers { get; init; } = [];

    /// <summary>
    /// Awaited coordinators that died and whose ACK came from a replacement: dead coordinator ID → the replacement whose
    /// ACK counted (the last of a chain when the replacement died too). Empty when no hand-over was followed.
    /// </summary>
    public IReadOnlyDictionary<string, string> HandedOver { get; init; } = EmptyHandedOver;

    private static readonly IReadOnlyDictionary<string, string> EmptyHandedOver = new Dictionary<string, string>(StringComparer.Ordinal);
}
