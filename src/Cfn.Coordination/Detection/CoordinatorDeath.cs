using Cfn.Coordination.Recovery;

namespace Cfn.Coordination.Detection;

/// <summary>A death confirmed by this monitor (exactly one monitor confirms each).</summary>
/// <param name="CoordinatorId">The dead coordinator.</param>
/// <param name="SwarmId">Its swarm (<c>unknown</c> when no record says).</param>
/// <param name="FenceEpoch">The epoch set at the death; the dead instance's writes are refused from then on.</param>
/// <param name="StaleForMs">How long its heartbeat had been silent.</param>
/// <param name="Warnings">Consecutive warnings that led to the death.</param>
/// <param name="Escalation">The escalation's result, when auto-escalation ran.</param>
internal sealed record CoordinatorDeath(string CoordinatorId, string SwarmId, long FenceEpoch, long StaleForMs, int Warnings,
    EscalationResult? Escalation);

/// <summary>What one monitor pass saw.</summary>
/// <param name="Checked">Coordinators judged (stale candidates plus those in warning state).</param>
/// <param name="Warnings">New warnings given.</param>
/// <param name="Deaths">Deaths this monitor confirmed.</param>
/// <param name="Recovered">Coordinators that left the warning state.</param>
/// <param name="RedisAvailable">False when the pass could not run (Redis unreachable or its breaker open): nothing was judged.</param>
/// <param name="NextDueMs">Redis time at which the next coordinator can become due, or 0 when none is registered.</param>
internal sealed record MonitorPass(int Checked, int Warnings, IReadOnlyList<CoordinatorDeath> Deaths, int Recovered, bool RedisAvailable, long NextDueMs);
