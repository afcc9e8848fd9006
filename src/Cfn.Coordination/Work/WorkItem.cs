using System.Text.Json;
using System.Text.Json.Serialization;

namespace Cfn.Coordination.Work;

/// <summary>Work-item statuses. <see cref="Completed"/> items are never transferred.</summary>
internal static class WorkStatus
{
    /// <summary>Owned and being worked on.</summary>
    public const string InProgress = "in-progress";

    /// <summary>Done; immutable from now on.</summary>
    public const string Completed = "completed";

    /// <summary>Given up by its owner; another coordinator may claim it.</summary>
    public const string Released = "released";

    /// <summary>Moved to a replacement coordinator after its owner died.</summary>
    public const string Transferred = "transferred";
}

/// <summary>
/// K10 <c>coordinator:work:{swarmId}:{coordinatorId}:{workId}</c> (SPEC K10, D6): the pattern-doc fields plus the
/// fence: <see cref="AssignedTo"/> with <see cref="OwnerEpoch"/> (the owner instance) and <see cref="Epoch"/>, bumped
/// on every change of hands.
/// </summary>
public sealed record WorkItem
{
    /// <summary>The item's ID.</summary>
    public required string WorkId { get; init; }

    /// <summary>Its swarm.</summary>
    public required string SwarmId { get; init; }

    /// <summary>The owning coordinator (also the key's coordinator segment).</summary>
    public required string AssignedTo { get; init; }

    /// <summary>The epoch of the owning coordinator instance.</summary>
    public required long OwnerEpoch { get; init; }

    /// <summary>The item's fencing token: 1 at creation, +1 at every claim or transfer.</summary>
    public required long Epoch { get; init; }

    /// <summary>One of <see cref="WorkStatus"/>.</summary>
    public required string Status { get; init; }

    /// <summary>Application data.</summary>
    public JsonElement? Data { get; init; }

    /// <summary>Redis time (ms) of creation.</summary>
    public required long StartedAt { get; init; }

    /// <summary>Redis time (ms) of the last write.</summary>
    public required long UpdatedAt { get; init; }

    /// <summary>Previous owner, after a transfer or claim.</summary>
    public string? TransferredFrom { get; init; }

    /// <summary>Redis time (ms) of the last transfer or claim.</summary>
    public long? TransferredAt { get; init; }

    /// <summary>The exact stored JSON this instance was read from; the compare-and-set compares against it.</summary>
    [JsonIgnore]
    public string? Stored { get; init; }
}
