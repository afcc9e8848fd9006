namespace Cfn.Coordination.Loop;

/// <summary>A read-only snapshot of a coordinator's work loop (for <c>/api/coordinator/state</c>).</summary>
/// <param name="CoordinatorId">The coordinator.</param>
/// <param name="SwarmId">Its swarm (whose queue it takes work from).</param>
/// <param name="Phase">
/// <c>starting</c>, <c>waiting-for-validators</c>, <c>waiting-for-work</c>, <c>claiming</c>, <c>external-call</c>,
/// <c>validation</c>, <c>completing</c>, <c>releasing</c> or <c>stopped</c>.
/// </param>
/// <param name="CurrentWorkId">The item in hand, if any.</param>
/// <param name="Iteration">The iteration of the item in hand (or of the last one).</param>
/// <param name="ItemsCompleted">Items completed (K10 <c>completed</c>) by this loop, whatever their outcome.</param>
/// <param name="ItemsFailed">Of which failed: a fail verdict, or not every verdict arrived in time.</param>
/// <param name="ItemsReleased">Items given back to the queue (cancellation).</param>
/// <param name="ValidatorTimeouts">Validators whose verdict did not arrive in time, summed over items.</param>
/// <param name="LastError">The last error or timeout, as text.</param>
/// <param name="LastErrorAt">When it happened (local clock, ms), if any.</param>
/// <param name="ItemsAdopted">
/// Items this loop adopted (D16): transferred to it from a dead coordinator, or left unfinished by an earlier instance
/// under its ID, and resumed.
/// </param>
/// <param name="AdoptedWorkIds">The most recently adopted items (at most 20), newest last.</param>
public sealed record CoordinatorLoopState(
    string CoordinatorId,
    string SwarmId,
    string Phase,
    string? CurrentWorkId,
    int Iteration,
    long ItemsCompleted,
    long ItemsFailed,
    long ItemsReleased,
    long ValidatorTimeouts,
    string? LastError,
    long? LastErrorAt,
    long ItemsAdopted = 0,
    IReadOnlyList<string>? AdoptedWorkIds = null);
