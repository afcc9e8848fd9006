using System.Collections;
using System.ComponentModel.DataAnnotations;

namespace Cfn.Coordination.Swarms;

/// <summary>
/// Settings of the swarm manager and of coordinator hosts (SPEC §3.6 extras). Each names the variable that sets it. Bound
/// once per process and shared; a variant is a copy made with <c>with</c>, so a new setting is never dropped by a copy.
/// </summary>
public sealed record SwarmManagerOptions
{
    /// <summary>Coordinators one host may run (<c>COORDINATOR_HOST_CAPACITY</c>, 8).</summary>
    [Range(1, 100_000, ErrorMessage = "COORDINATOR_HOST_CAPACITY must be between {1} and {2}")]
    public int HostCapacity { get; set; } = 8;

    /// <summary>A claimed request whose coordinator has not heartbeated after this is failed (<c>SPAWN_TIMEOUT_MS</c>, 60000).</summary>
    public TimeSpan SpawnTimeout { get; set; } = TimeSpan.FromMilliseconds(60_000);

    /// <summary>Fallback period of the manager's pass; pub/sub wakes it earlier (<c>SWARM_MANAGER_INTERVAL_MS</c>, 1000).</summary>
    public TimeSpan Interval { get; set; } = TimeSpan.FromMilliseconds(1_000);

    /// <summary>
    /// How long a swarm may stay below its target after coordinators left before scale requests replace them
    /// (<c>SWARM_DEFICIT_GRACE_MS</c>, 60000): a restarting pod comes back within it. A raised target is served at once.
    /// </summary>
    public TimeSpan DeficitGrace { get; set; } = TimeSpan.FromMilliseconds(60_000);

    /// <summary>How often a host refreshes its record and re-checks its command list without a wake-up (5 s); the record lives 3 periods.</summary>
    public TimeSpan HostReportInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>K9 TTL in seconds (3600, as the escalation's): requests older than this are history no one reads.</summary>
    [Range(60, 30 * 86_400, ErrorMessage = "SpawnTtlSeconds must be between {1} and {2}")]
    public int SpawnTtlSeconds { get; set; } = 3600;

    /// <summary>Validates, naming the first bad setting.</summary>
    public void Validate()
    {
        OptionsValidation.Annotations(this);

        OptionsValidation.Positive(SpawnTimeout, "SPAWN_TIMEOUT_MS");
        OptionsValidation.Positive(Interval, "SWARM_MANAGER_INTERVAL_MS");
        OptionsValidation.Positive(DeficitGrace, "SWARM_DEFICIT_GRACE_MS");
        OptionsValidation.Positive(HostReportInterval, "HostReportInterval");
    }

    /// <summary>Reads <c>COORDINATOR_HOST_CAPACITY</c>, <c>SPAWN_TIMEOUT_MS</c> and <c>SWARM_MANAGER_INTERVAL_MS</c> (process environment when null), then validates.</summary>
    public static SwarmManagerOptions FromEnvironment(IDictionary? environment = null)
    {
        var env = new EnvironmentSettings(environment);
        var o = new SwarmManagerOptions();
        o.HostCapacity = env.PositiveInt("COORDINATOR_HOST_CAPACITY") ?? o.HostCapacity;
        o.SpawnTimeout = env.Milliseconds("SPAWN_TIMEOUT_MS") ?? o.SpawnTimeout;
        o.Interval = env.Milliseconds("SWARM_MANAGER_INTERVAL_MS") ?? o.Interval;
        o.DeficitGrace = env.Milliseconds("SWARM_DEFICIT_GRACE_MS") ?? o.DeficitGrace;
        o.Validate();
        return o;
    }
}
