namespace Cfn.Coordination;

/// <summary>
/// This coordinator instance was superseded: a newer instance of its ID started, or it was declared dead and its work
/// handed to a replacement. Nothing it writes lands any more; stop working.
/// </summary>
public sealed class CoordinatorSupersededException(string coordinatorId, long epoch, string? currentEpoch)
    : Exception($"Coordinator {coordinatorId} (epoch {epoch}) was superseded (current epoch {currentEpoch ?? "unknown"}); nothing it writes lands any more")
{
    /// <summary>The coordinator ID.</summary>
    public string CoordinatorId { get; } = coordinatorId;

    /// <summary>The superseded instance's epoch.</summary>
    public long Epoch { get; } = epoch;
}
