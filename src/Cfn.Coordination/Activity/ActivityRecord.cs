namespace Cfn.Coordination.Activity;

/// <summary>
/// K7 <c>coordinator:activity:{id}</c> (SPEC K7). <c>lastActivity</c> moves only on progress; <c>waitingFor</c> is a
/// comma-separated string (the runbook's deadlock check prints it with <c>jq -r</c>) and absent when not blocking.
/// </summary>
public sealed record ActivityRecord
{
    /// <summary>The coordinator.</summary>
    public required string CoordinatorId { get; init; }

    /// <summary>Its swarm.</summary>
    public required string SwarmId { get; init; }

    /// <summary>Redis time (ms) of the last progress event.</summary>
    public required long LastActivity { get; init; }

    /// <summary>Current iteration.</summary>
    public int Iteration { get; init; }

    /// <summary>Current phase, if any.</summary>
    public string? Phase { get; init; }

    /// <summary><c>idle</c>, <c>working</c> or <c>blocking</c>.</summary>
    public required string Status { get; init; }

    /// <summary>Comma-separated IDs of the coordinators whose ACKs it waits for; absent when not blocking.</summary>
    public string? WaitingFor { get; init; }

    /// <summary>The signal whose ACKs it waits for; absent when not blocking.</summary>
    public string? WaitingForSignal { get; init; }

    /// <summary>Redis time (ms) the oldest running wait started; absent when not blocking.</summary>
    public long? BlockingSince { get; init; }

    /// <summary>The running wait's timeout in ms; absent when not blocking.</summary>
    public long? TimeoutMs { get; init; }
}
