namespace Cfn.Coordination.Acks;

/// <summary>
/// Watches the ACK waits of a coordinator (set <see cref="Coordinator.WaitObserver"/>): told when a wait starts and
/// when it ends. Both calls run on the waiter's path, so an observer must return at once (hand real work to the
/// background) and should not throw; an exception is logged and otherwise ignored.
/// </summary>
public interface IWaitObserver
{
    /// <summary>A wait started (right after its <c>Waiting for ACKs</c> line).</summary>
    void OnWaitStarted(AckWaitInfo wait);

    /// <summary>A wait ended with <paramref name="result"/> (right after its <c>ACK wait complete</c> line); not called when the wait threw.</summary>
    void OnWaitEnded(AckWaitInfo wait, AckWaitResult result);
}

/// <summary>One ACK wait as an <see cref="IWaitObserver"/> sees it.</summary>
/// <param name="Coordinator">The waiting coordinator (its iteration and phase are read when the observer is called).</param>
/// <param name="SignalId">The awaited signal ID; for a per-receiver wait, its distinct signal IDs comma-joined (as in the log lines).</param>
/// <param name="CoordinatorIds">The awaited coordinators, de-duplicated, in request order.</param>
/// <param name="Timeout">The wait's timeout.</param>
public sealed record AckWaitInfo(Coordinator Coordinator, string SignalId, IReadOnlyList<string> CoordinatorIds, TimeSpan Timeout);
