namespace Cfn.Coordination.Activity;

/// <summary>One running ACK wait of a coordinator, as <see cref="ActivityRecorder.GetRunningWaits"/> sees it.</summary>
/// <param name="SignalId">The awaited signal.</param>
/// <param name="WaitingFor">Every coordinator the wait started waiting for.</param>
/// <param name="Received">Those that have ACKed.</param>
/// <param name="Missing">Those still missing.</param>
/// <param name="StartedAt">Start, ms (the Redis time of the record that announced it, or the local time until then).</param>
/// <param name="TimeoutMs">The wait's timeout.</param>
/// <param name="ElapsedMs">Time since the wait began.</param>
public sealed record RunningWaitInfo(
    string SignalId,
    IReadOnlyList<string> WaitingFor,
    IReadOnlyList<string> Received,
    IReadOnlyList<string> Missing,
    long StartedAt,
    long TimeoutMs,
    long ElapsedMs);
