namespace Cfn.Coordination.Recovery;

/// <summary>Spawn-request statuses (SPEC K9): <c>pending → spawning → ready | failed</c>, or <c>cancelled</c> before ready.</summary>
internal static class SpawnStatus
{
    /// <summary>Waiting for the swarm manager.</summary>
    public const string Pending = "pending";

    /// <summary>Claimed by a swarm manager, being started.</summary>
    public const string Spawning = "spawning";

    /// <summary>The coordinator runs.</summary>
    public const string Ready = "ready";

    /// <summary>Starting it failed.</summary>
    public const string Failed = "failed";

    /// <summary>Withdrawn (e.g. the swarm was scaled down).</summary>
    public const string Cancelled = "cancelled";

    /// <summary>True when <paramref name="from"/> may move to <paramref name="to"/>.</summary>
    public static bool IsAllowed(string from, string to) => (from, to) switch
    {
        (Pending, Spawning or Cancelled or Failed) => true, // failed: a replacement no host took in time (D16)
        (Spawning, Ready or Failed or Cancelled) => true,
        _ => false,
    };
}

/// <summary>
/// K9 <c>coordinator:spawn:{newCoordinatorId}</c>: the TS fields the runbook reads (<c>newCoordinatorId</c>,
/// <c>swarmId</c>, <c>priority</c>), plus <c>reason</c>, <c>requestedBy</c> and <c>updatedAt</c>. Kept as history.
/// </summary>
public sealed record SpawnRequest
{
    /// <summary>The coordinator to start.</summary>
    public required string NewCoordinatorId { get; init; }

    /// <summary>The dead coordinator it replaces, for <c>replacement</c> requests.</summary>
    public string? ReplacesCoordinatorId { get; init; }

    /// <summary>Its swarm.</summary>
    public required string SwarmId { get; init; }

    /// <summary>Creation time, ms.</summary>
    public required long Timestamp { get; init; }

    /// <summary>One of <see cref="SpawnStatus"/>.</summary>
    public required string Status { get; init; }

    /// <summary><c>high</c> for replacements, <c>normal</c> otherwise.</summary>
    public string Priority { get; init; } = "high";

    /// <summary><c>replacement</c>, <c>scale</c> or <c>initial</c> (the <c>coordinator_spawns_total</c> reason).</summary>
    public required string Reason { get; init; }

    /// <summary>Who asked (e.g. the timeout handler's instance).</summary>
    public string? RequestedBy { get; init; }

    /// <summary>Last status change, ms.</summary>
    public required long UpdatedAt { get; init; }

    /// <summary>Why it failed, when it did.</summary>
    public string? Error { get; init; }

    /// <summary>The coordinator host the swarm manager chose when it claimed the request.</summary>
    public string? HostId { get; init; }
}
