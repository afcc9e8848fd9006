namespace Cfn.Coordination.Work;

/// <summary>How a work-item write ended. Refusals are results, not exceptions.</summary>
public enum WorkWriteOutcome
{
    /// <summary>Written.</summary>
    Ok,

    /// <summary>The caller's epoch is no longer its coordinator's current epoch: this instance was superseded.</summary>
    Fenced,

    /// <summary>The item now belongs to another coordinator or instance, or its fencing token moved on.</summary>
    NotOwner,

    /// <summary>The item changed since the caller read it (same owner); re-read and retry.</summary>
    Conflict,

    /// <summary>No such item (expired, transferred away, or never created).</summary>
    NotFound,

    /// <summary>Create or claim target already exists.</summary>
    AlreadyExists,

    /// <summary>The item is completed and immutable.</summary>
    AlreadyCompleted,

    /// <summary>Claim of an item that its owner has not released.</summary>
    NotReleased,

    /// <summary>
    /// Create of an item another coordinator owns (or owned last: <see cref="WorkWriteResult.Owner"/>): one work ID has
    /// one record at a time, whoever queued it twice.
    /// </summary>
    OwnedElsewhere,
}

/// <summary>The outcome of a work-item write and, when it succeeded, the item as now stored.</summary>
/// <param name="Outcome">What happened.</param>
/// <param name="Item">The stored item after the write (or as found, for some refusals).</param>
public sealed record WorkWriteResult(WorkWriteOutcome Outcome, WorkItem? Item)
{
    /// <summary>For <see cref="WorkWriteOutcome.OwnedElsewhere"/>: the coordinator whose record the work ID has.</summary>
    public string? Owner { get; init; }

    /// <summary>True when written.</summary>
    public bool Succeeded => Outcome == WorkWriteOutcome.Ok;

    /// <summary>The metric label of the outcome.</summary>
    public string Label => Outcome switch
    {
        WorkWriteOutcome.Fenced => "fenced",
        WorkWriteOutcome.NotOwner => "not_owner",
        WorkWriteOutcome.Conflict => "conflict",
        WorkWriteOutcome.NotFound => "not_found",
        WorkWriteOutcome.AlreadyExists => "exists",
        WorkWriteOutcome.AlreadyCompleted => "completed",
        WorkWriteOutcome.NotReleased => "not_released",
        WorkWriteOutcome.OwnedElsewhere => "owned_elsewhere",
        _ => "ok",
    };
}
