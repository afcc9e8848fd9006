using Prometheus;

namespace Cfn.Coordination.Swarms;

/// <summary>The swarm manager's metrics (SPEC §3.2).</summary>
public sealed class SwarmMetrics
{
    /// <summary>Creates the families in <paramref name="registry"/>.</summary>
    public SwarmMetrics(CollectorRegistry registry)
    {
        var f = Prometheus.Metrics.WithCustomRegistry(registry);
        Spawns = f.CreateCounter("coordinator_spawns_total",
            "Coordinators actually started by the swarm manager (first heartbeat seen), by swarm and reason (replacement, scale, initial).",
            "swarm_id", "reason");
    }

    /// <summary><c>coordinator_spawns_total{swarm_id, reason}</c>: counted once per started coordinator.</summary>
    public Counter Spawns { get; }
}
