namespace Cfn.Coordination.Recovery;

/// <summary>What a per-coordinator cleanup did (SPEC §2.12): counts are Redis's own DEL replies.</summary>
/// <param name="CoordinatorId">The coordinator.</param>
/// <param name="KeysDeleted">Keys actually deleted.</param>
/// <param name="Categories">Deleted keys per category (<see cref="KeyOwnership.Categories"/>, every one present).</param>
/// <param name="Refused">True when the heartbeat was fresh and the cleanup was not forced: nothing was deleted.</param>
/// <param name="HeartbeatAgeMs">Age of the heartbeat when refused.</param>
public sealed record CleanupResult(
    string CoordinatorId,
    long KeysDeleted,
    IReadOnlyDictionary<string, long> Categories,
    bool Refused = false,
    long? HeartbeatAgeMs = null);
