namespace Cfn.Coordination.Recovery;

/// <summary>
/// K8 <c>coordinator:escalation:{deadCoordinatorId}</c> (SPEC K8): the TS fields (the playbook reads <c>swarmId</c>)
/// plus the replacement, the fence and the hand-over counts. Created with <c>SET NX</c>: it is the escalation lock.
/// </summary>
public sealed record EscalationRecord
{
    /// <summary>The dead coordinator.</summary>
    public required string DeadCoordinatorId { get; init; }

    /// <summary>Its swarm.</summary>
    public required string SwarmId { get; init; }

    /// <summary>Escalation time, ms (Redis clock).</summary>
    public required long Timestamp { get; init; }

    /// <summary>Always <c>coordinator_timeout</c>.</summary>
    public string Reason { get; init; } = "coordinator_timeout";

    /// <summary>
    /// One of <see cref="EscalationStatus"/>: <c>escalated → replacement_requested</c> (the escalation service), then
    /// <c>replaced | failed</c> when the swarm manager settles the replacement's spawn request; <c>failed</c> also when the
    /// escalation itself fails.
    /// </summary>
    public required string Status { get; init; }

    /// <summary>Last status change after creation, ms (absent until the record first changes status).</summary>
    public long? UpdatedAt { get; init; }

    /// <summary>The replacement's ID (its spawn request is <c>coordinator:spawn:{newCoordinatorId}</c>).</summary>
    public required string NewCoordinatorId { get; init; }

    /// <summary>The dead coordinator's last heartbeat, ms.</summary>
    public long LastHeartbeat { get; init; }

    /// <summary>The monitor that confirmed the death.</summary>
    public string? DetectedBy { get; init; }

    /// <summary>The epoch that fences the dead instance.</summary>
    public long FencingToken { get; init; }

    /// <summary>Work items moved to the replacement.</summary>
    public long WorkItemsTransferred { get; init; }

    /// <summary>Unconsumed signals moved to the replacement.</summary>
    public long SignalsHandedOver { get; init; }

    /// <summary>
    /// The last step done (D17), one of <see cref="EscalationSteps"/>: <c>locked → work_transferred → signals_handed_over →
    /// spawn_requested → notified → cleaned</c>. A handler that takes over an escalation resumes after it.
    /// </summary>
    public string Step { get; init; } = EscalationSteps.Locked;

    /// <summary>The handler running the escalation now.</summary>
    public string? LeaseOwner { get; init; }

    /// <summary>Until when (Redis ms) <see cref="LeaseOwner"/> owns it; after that another handler may resume it. 0 = released.</summary>
    public long LeaseUntil { get; init; }

    /// <summary>Why it failed, when it did (the escalation's error, or why the replacement's start failed).</summary>
    public string? Error { get; init; }
}
