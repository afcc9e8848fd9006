using Cfn.Coordination.Activity;

namespace Cfn.Coordination.Inspection;

/// <summary>A coordinator's state as this process holds it in memory (what <c>/api/coordinator/state</c> shows); no Redis read.</summary>
/// <param name="CoordinatorId">The coordinator's ID.</param>
/// <param name="SwarmId">Its swarm.</param>
/// <param name="InstanceId">This instance's ID.</param>
/// <param name="Epoch">The epoch this instance started with.</param>
/// <param name="Status"><c>blocking</c>, <c>working</c> or <c>idle</c>.</param>
/// <param name="Phase">Its current phase, if any.</param>
/// <param name="Iteration">Its current iteration.</param>
/// <param name="Superseded">A newer instance took over.</param>
/// <param name="LastActivity">Last recorded activity (Unix ms).</param>
/// <param name="OldestWait">The longest-running wait; null when none runs.</param>
/// <param name="RunningWaits">How many waits run.</param>
/// <param name="Heartbeat">Its heartbeat loop.</param>
/// <param name="Breakers">This process's circuit breakers and their states (<c>closed</c>, <c>open</c>, <c>half_open</c>).</param>
/// <param name="Now">The time of the read (Unix ms, the coordinator's clock).</param>
public sealed record CoordinatorState(
    string CoordinatorId,
    string SwarmId,
    string InstanceId,
    long Epoch,
    string Status,
    string? Phase,
    int Iteration,
    bool Superseded,
    long LastActivity,
    RunningWaitInfo? OldestWait,
    int RunningWaits,
    HeartbeatState Heartbeat,
    IReadOnlyDictionary<string, string> Breakers,
    long Now);

/// <summary>A coordinator's heartbeat loop.</summary>
/// <param name="Key">Its heartbeat key (one per coordinator, or the validator heartbeat key for a validator).</param>
/// <param name="IntervalMs">The heartbeat interval.</param>
/// <param name="LastSentAt">When the last heartbeat was written (Unix ms); 0 before the first.</param>
/// <param name="Sequence">Sequence number of the last heartbeat attempted.</param>
/// <param name="LastError">The last write's error, if it failed.</param>
public sealed record HeartbeatState(string Key, long IntervalMs, long LastSentAt, long Sequence, string? LastError);
