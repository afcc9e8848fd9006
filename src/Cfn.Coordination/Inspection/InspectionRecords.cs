using Cfn.Coordination.Activity;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Resilience;
using Cfn.Coordination.Work;

namespace Cfn.Coordination.Inspection;

/// <summary>
/// What one coordinator holds or is named in, as <c>/api/locks/status</c> shows it: the escalation locks about it, the
/// batch cleanup lock, its work fences and its epoch.
/// </summary>
/// <param name="CoordinatorId">The coordinator read.</param>
/// <param name="Epoch">The epoch this instance started with.</param>
/// <param name="CurrentEpoch">The epoch stored in Redis now; null when none is stored.</param>
/// <param name="Superseded">This instance knows it was superseded, or a newer epoch is stored.</param>
/// <param name="Escalations">The escalation of its own death, and of the coordinator it replaces, when recorded.</param>
/// <param name="CleanupLock">The batch cleanup lock, held or not.</param>
/// <param name="WorkFences">Its work items (at most <see cref="CoordinationInspector.MaxWorkFences"/>).</param>
public sealed record CoordinatorLocks(
    string CoordinatorId,
    long Epoch,
    long? CurrentEpoch,
    bool Superseded,
    IReadOnlyList<EscalationLock> Escalations,
    CleanupLockState CleanupLock,
    IReadOnlyList<WorkFence> WorkFences);

/// <summary>An escalation record naming a coordinator; <see cref="Record"/> is null and <see cref="Error"/> says why when it is unreadable.</summary>
/// <param name="Key">The Redis key of the record.</param>
/// <param name="Role"><c>declared_dead</c> (the coordinator's own death) or <c>replacement</c> (the one it replaces).</param>
/// <param name="Record">The parsed record.</param>
/// <param name="TtlMs">Time left before the record expires; null when it has no expiry.</param>
/// <param name="Error">Why the stored value could not be read.</param>
public sealed record EscalationLock(string Key, string Role, EscalationRecord? Record, long? TtlMs, string? Error);

/// <summary>The batch cleanup lock that one timeout handler at a time holds while it cleans up.</summary>
/// <param name="Key">The Redis key of the lock.</param>
/// <param name="Token">The holder's token; null when nobody holds it.</param>
/// <param name="TtlMs">Time left on the lock; null when it is not held or has no expiry.</param>
public sealed record CleanupLockState(string Key, string? Token, long? TtlMs)
{
    /// <summary>Somebody holds the lock.</summary>
    public bool Held => Token is not null;
}

/// <summary>One work item of a coordinator; <see cref="Item"/> is null and <see cref="Error"/> says why when it is unreadable.</summary>
/// <param name="Key">The Redis key of the work item.</param>
/// <param name="Item">The parsed work item.</param>
/// <param name="TtlMs">Time left before it expires; null when it has no expiry.</param>
/// <param name="Error">Why the stored value could not be read.</param>
public sealed record WorkFence(string Key, WorkItem? Item, long? TtlMs, string? Error);

/// <summary>The warning state the heartbeat monitor keeps for a coordinator whose heartbeat went stale.</summary>
/// <param name="Warnings">Warnings given so far.</param>
/// <param name="LastWarningAt">When the last warning was given (Redis time, Unix ms).</param>
/// <param name="State"><c>healthy</c>, <c>warning</c> or <c>dead</c>.</param>
public sealed record HealthWarnings(int Warnings, long LastWarningAt, string State);

/// <summary>A registered coordinator or validator as <c>cfn status</c> lists it.</summary>
/// <param name="CoordinatorId">The coordinator's ID.</param>
/// <param name="SwarmId">Its swarm; <c>unknown</c> when the swarm index has none.</param>
/// <param name="LastHeartbeat">Its registry score: the last heartbeat (Redis time, Unix ms).</param>
/// <param name="HeartbeatAgeMs">Milliseconds since that heartbeat, by the Redis clock.</param>
/// <param name="Stale">The heartbeat is older than the stale threshold.</param>
/// <param name="Health">The monitor's warnings; null when it gave none (or its entry was malformed and skipped).</param>
/// <param name="Activity">Its activity record; null when none is stored or it is malformed.</param>
public sealed record CoordinatorHealth(
    string CoordinatorId,
    string SwarmId,
    long LastHeartbeat,
    long HeartbeatAgeMs,
    bool Stale,
    HealthWarnings? Health,
    ActivityRecord? Activity)
{
    /// <summary>It runs in the validators' swarm (the kind is the swarm's, never the ID's).</summary>
    public bool IsValidator => Redis.Keys.IsValidatorSwarm(SwarmId);

    /// <summary>
    /// A TypeScript coordinator under the <c>CFN_TS_COMPAT</c> watch (D13), not a registry member: its
    /// <see cref="LastHeartbeat"/> is when the monitor last saw its heartbeat change (Redis time), never its own clock.
    /// </summary>
    public bool IsTs { get; init; }

    /// <summary>It is live and its activity record says it is blocking.</summary>
    public bool Blocking => !Stale && Activity?.Status == "blocking";
}

/// <summary>Counts of one swarm's registered members.</summary>
/// <param name="SwarmId">The swarm.</param>
/// <param name="Live">Members with a fresh heartbeat.</param>
/// <param name="Blocking">Live members that are blocking.</param>
/// <param name="Stale">Members whose heartbeat went stale.</param>
public sealed record SwarmSummary(string SwarmId, int Live, int Blocking, int Stale);

/// <summary>An escalation that is not over.</summary>
/// <param name="Record">The escalation record.</param>
/// <param name="State">
/// <c>running</c> under a live lease, <c>stuck</c> (the lease ran out with steps left: the next monitor pass of any timeout
/// handler resumes it) or <c>waiting-for-replacement</c> (its steps are done and the replacement has not started).
/// </param>
/// <param name="LeaseLeftMs">Milliseconds left on the lease; null when it has run out.</param>
public sealed record OpenEscalation(EscalationRecord Record, string State, long? LeaseLeftMs);

/// <summary>Everything <c>cfn status</c> prints, read at one Redis time.</summary>
/// <param name="Now">Redis time of the read (Unix ms).</param>
/// <param name="Swarms">Swarm counts, by swarm ID.</param>
/// <param name="Coordinators">Registered coordinators and validators, in registry order (oldest heartbeat first).</param>
/// <param name="SpawnRequests">Spawn requests in the index.</param>
/// <param name="Escalations">Escalations not over.</param>
/// <param name="Breakers">Circuit-breaker states every running cfn process publishes, by process ID.</param>
public sealed record CoordinationStatus(
    long Now,
    IReadOnlyList<SwarmSummary> Swarms,
    IReadOnlyList<CoordinatorHealth> Coordinators,
    IReadOnlyList<SpawnRequest> SpawnRequests,
    IReadOnlyList<OpenEscalation> Escalations,
    IReadOnlyList<BreakerReport> Breakers);

/// <summary>One blocking coordinator and the coordinators it waits for.</summary>
/// <param name="CoordinatorId">The waiting coordinator.</param>
/// <param name="WaitingFor">Whom it waits for (its activity record's <c>waitingFor</c>, split).</param>
public sealed record WaitGraphEdges(string CoordinatorId, IReadOnlyList<string> WaitingFor);

/// <summary>The wait-for graph of the blocking coordinators and its cycles.</summary>
/// <param name="NodeCount">Coordinators in the graph (waiting or waited for).</param>
/// <param name="EdgeCount">Wait-for edges.</param>
/// <param name="Waits">Each blocking coordinator with whom it waits for, ordered by ID.</param>
/// <param name="Cycles">The deadlocks: cycles of coordinators each waiting for the next.</param>
public sealed record WaitGraphReport(int NodeCount, int EdgeCount, IReadOnlyList<WaitGraphEdges> Waits, IReadOnlyList<Deadlocks.Deadlock> Cycles);
