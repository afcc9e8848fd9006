namespace Cfn.Coordination.Swarms;

/// <summary>
/// A coordinator host's record (<c>swarm-manager:host:{hostId}</c>, JSON, refreshed every
/// <see cref="SwarmManagerOptions.HostReportInterval"/> and on every change, TTL three periods): what it can run and runs.
/// </summary>
internal sealed record HostRecord
{
    /// <summary>The host.</summary>
    public required string HostId { get; init; }

    /// <summary>How many coordinators it may run.</summary>
    public required int Capacity { get; init; }

    /// <summary>Coordinators it runs or is starting.</summary>
    public required IReadOnlyList<HostedCoordinator> Running { get; init; }

    /// <summary>Redis time of this report, ms.</summary>
    public long UpdatedAt { get; init; }
}

/// <summary>One coordinator on a host.</summary>
public sealed record HostedCoordinator
{
    /// <summary>The coordinator.</summary>
    public required string CoordinatorId { get; init; }

    /// <summary>Its swarm.</summary>
    public required string SwarmId { get; init; }

    /// <summary>When the host started (or registered) it, ms.</summary>
    public required long StartedAt { get; init; }

    /// <summary>True when started for a spawn request; false for a coordinator the process started itself (e.g. <c>COORDINATOR_ID</c>).</summary>
    public required bool Spawned { get; init; }

    /// <summary>True while its factory is still running; absent once started.</summary>
    public bool? Starting { get; init; }
}

/// <summary>A command in a host's list (<c>swarm-manager:host:{hostId}:commands</c>): <c>start</c> or <c>stop</c> a coordinator.</summary>
internal sealed record HostCommand
{
    /// <summary><c>start</c>.</summary>
    public const string Start = "start";

    /// <summary><c>stop</c>.</summary>
    public const string Stop = "stop";

    /// <summary><see cref="Start"/> or <see cref="Stop"/>.</summary>
    public required string Type { get; init; }

    /// <summary>The coordinator to start or stop.</summary>
    public required string CoordinatorId { get; init; }

    /// <summary>Its swarm (start).</summary>
    public string? SwarmId { get; init; }

    /// <summary>The spawn request it fulfils (start); its ID is the coordinator's.</summary>
    public string? SpawnRequestId { get; init; }

    /// <summary>Who sent it.</summary>
    public string? IssuedBy { get; init; }
}
