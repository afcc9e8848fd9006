namespace Cfn.Coordination.Heartbeats;

/// <summary>
/// K1 <c>blocking:heartbeat:{id}</c> (SPEC K1): <c>timestamp</c> for the runbook and the legacy cleanup regexes, and
/// <c>lastHeartbeat</c> for the TS monitor, both the Redis time of the write in ms. A validator writes the same record
/// to <c>validator:heartbeat:{id}</c> instead.
/// </summary>
internal sealed record HeartbeatRecord
{
    /// <summary>The coordinator.</summary>
    public required string CoordinatorId { get; init; }

    /// <summary>Its swarm.</summary>
    public required string SwarmId { get; init; }

    /// <summary>Redis time of the write, ms.</summary>
    public required long Timestamp { get; init; }

    /// <summary>Same as <see cref="Timestamp"/> (TS field name).</summary>
    public required long LastHeartbeat { get; init; }

    /// <summary>Per-instance counter from 1; a gap within one <see cref="InstanceId"/> is a missed heartbeat.</summary>
    public required long Sequence { get; init; }

    /// <summary>New for every process start of this coordinator ID.</summary>
    public required string InstanceId { get; init; }

    /// <summary>The instance's epoch (fencing token).</summary>
    public required long Epoch { get; init; }

    /// <summary>Current iteration.</summary>
    public int Iteration { get; init; }

    /// <summary><c>idle</c>, <c>working</c>, <c>blocking</c> or <c>stopping</c>.</summary>
    public required string Status { get; init; }

    /// <summary>Current phase.</summary>
    public string? Phase { get; init; }

    /// <summary>Free-form extras (e.g. <c>agentCount</c>).</summary>
    public IReadOnlyDictionary<string, object>? Metadata { get; init; }
}
