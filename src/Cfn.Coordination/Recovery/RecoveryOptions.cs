using System.Collections;
using System.ComponentModel.DataAnnotations;

namespace Cfn.Coordination.Recovery;

/// <summary>
/// Settings of the timeout handler: dead-coordinator detection, stuck waits, escalation and cleanup (SPEC §2.9–§2.13,
/// §3.6, D8). Each documents the environment variable that sets it.
/// </summary>
public sealed class RecoveryOptions
{
    /// <summary>A heartbeat older than this is stale (<c>HEARTBEAT_STALE_THRESHOLD_MS</c>, 120000).</summary>
    public TimeSpan HeartbeatStaleThreshold { get; set; } = TimeSpan.FromMilliseconds(120_000);

    /// <summary>
    /// Longest sleep of the monitor and the spacing between two warnings of one coordinator
    /// (<c>HEARTBEAT_MONITOR_INTERVAL_MS</c>, 10000). A coordinator is declared dead
    /// <c>(MaxWarnings − 1) × MonitorInterval</c> after its heartbeat became stale.
    /// </summary>
    public TimeSpan MonitorInterval { get; set; } = TimeSpan.FromMilliseconds(10_000);

    /// <summary>Consecutive warnings until dead (<c>HEARTBEAT_MAX_WARNINGS</c>, 3).</summary>
    [Range(1, 100, ErrorMessage = "HEARTBEAT_MAX_WARNINGS must be between {1} and {2}")]
    public int MaxWarnings { get; set; } = 3;

    /// <summary>The dead-detection loop runs (<c>ENABLE_HEARTBEAT_MONITORING</c>, true; the runbook's emergency switch).</summary>
    public bool EnableHeartbeatMonitoring { get; set; } = true;

    /// <summary>A confirmed death escalates on its own (<c>ENABLE_AUTO_ESCALATION</c>, true).</summary>
    public bool EnableAutoEscalation { get; set; } = true;

    /// <summary>How long past its timeout a live coordinator may still be blocking before the handler reports it stuck (<c>ACTIVITY_CHECK_INTERVAL_MS</c>, 30000).</summary>
    public TimeSpan StuckWaitGrace { get; set; } = TimeSpan.FromMilliseconds(30_000);

    /// <summary>Batch cleanup: a heartbeat older than this is stale (<c>CLEANUP_STALE_THRESHOLD_SECONDS</c>, 600).</summary>
    [Range(1, 30 * 86_400, ErrorMessage = "CLEANUP_STALE_THRESHOLD_SECONDS must be between {1} and {2}")]
    public int CleanupStaleThresholdSeconds { get; set; } = 600;

    /// <summary>Batch cleanup period in the timeout handler (<c>CLEANUP_INTERVAL_MS</c>, 300000).</summary>
    public TimeSpan CleanupInterval { get; set; } = TimeSpan.FromMilliseconds(300_000);

    /// <summary>K8 and K9 TTL in seconds (3600).</summary>
    [Range(60, 30 * 86_400, ErrorMessage = "EscalationTtlSeconds must be between {1} and {2}")]
    public int EscalationTtlSeconds { get; set; } = 3600;

    /// <summary>
    /// How long a handler owns an escalation it is running before another handler may resume it (<c>ESCALATION_LEASE_MS</c>,
    /// 30000). Renewed at every step, so it must exceed the longest single step (moving a dead coordinator's work and signals).
    /// </summary>
    public TimeSpan EscalationLease { get; set; } = TimeSpan.FromMilliseconds(30_000);

    /// <summary>
    /// Fault injection only (<c>ESCALATION_STEP_DELAY_MS</c>, 0): a pause after each escalation step, so a chaos test can
    /// kill a handler in the middle of an escalation. Never set it in production.
    /// </summary>
    public TimeSpan EscalationStepDelay { get; set; } = TimeSpan.Zero;

    /// <summary>The time after which a coordinator is declared dead.</summary>
    public TimeSpan DeathAfter => HeartbeatStaleThreshold + ((MaxWarnings - 1) * MonitorInterval);

    /// <summary>Validates, naming the first bad setting; <paramref name="coordination"/> checks the heartbeat TTL against detection.</summary>
    public void Validate(CoordinationOptions? coordination = null)
    {
        OptionsValidation.Annotations(this);

        OptionsValidation.Positive(HeartbeatStaleThreshold, "HEARTBEAT_STALE_THRESHOLD_MS");
        OptionsValidation.Positive(MonitorInterval, "HEARTBEAT_MONITOR_INTERVAL_MS");
        OptionsValidation.Positive(StuckWaitGrace, "ACTIVITY_CHECK_INTERVAL_MS");
        OptionsValidation.Positive(CleanupInterval, "CLEANUP_INTERVAL_MS");
        OptionsValidation.Positive(EscalationLease, "ESCALATION_LEASE_MS");
        if (EscalationStepDelay < TimeSpan.Zero)
        {
            throw new ValidationException("ESCALATION_STEP_DELAY_MS must not be negative");
        }

        if (EscalationStepDelay >= EscalationLease)
        {
            throw new ValidationException("ESCALATION_STEP_DELAY_MS must be shorter than ESCALATION_LEASE_MS (a step would outlive its lease)");
        }
        var ttlFloor = HeartbeatStaleThreshold + (MaxWarnings * MonitorInterval);
        if (coordination is not null && TimeSpan.FromSeconds(coordination.HeartbeatTtlSeconds) <= ttlFloor)
        {
            // Otherwise K1 expires before death is confirmed (SPEC K1: TTL > stale threshold + maxWarnings × interval).
            throw new ValidationException(
                $"HEARTBEAT_TTL_SECONDS ({coordination.HeartbeatTtlSeconds}) must exceed HEARTBEAT_STALE_THRESHOLD_MS + HEARTBEAT_MAX_WARNINGS × HEARTBEAT_MONITOR_INTERVAL_MS ({ttlFloor.TotalSeconds} s)");
        }
    }

    /// <summary>Reads the §3.6 timeout-handler variables (process environment when null), then validates.</summary>
    public static RecoveryOptions FromEnvironment(IDictionary? environment = null, CoordinationOptions? coordination = null)
    {
        var env = new EnvironmentSettings(environment);
        var o = new RecoveryOptions();
        o.HeartbeatStaleThreshold = env.Milliseconds("HEARTBEAT_STALE_THRESHOLD_MS") ?? o.HeartbeatStaleThreshold;
        o.MonitorInterval = env.Milliseconds("HEARTBEAT_MONITOR_INTERVAL_MS") ?? o.MonitorInterval;
        o.MaxWarnings = env.PositiveInt("HEARTBEAT_MAX_WARNINGS") ?? o.MaxWarnings;
        o.EnableHeartbeatMonitoring = env.Flag("ENABLE_HEARTBEAT_MONITORING") ?? o.EnableHeartbeatMonitoring;
        o.EnableAutoEscalation = env.Flag("ENABLE_AUTO_ESCALATION") ?? o.EnableAutoEscalation;
        o.StuckWaitGrace = env.Milliseconds("ACTIVITY_CHECK_INTERVAL_MS") ?? o.StuckWaitGrace;
        o.CleanupStaleThresholdSeconds = env.PositiveInt("CLEANUP_STALE_THRESHOLD_SECONDS") ?? o.CleanupStaleThresholdSeconds;
        o.CleanupInterval = env.Milliseconds("CLEANUP_INTERVAL_MS") ?? o.CleanupInterval;
        o.EscalationLease = env.Milliseconds("ESCALATION_LEASE_MS") ?? o.EscalationLease;
        o.EscalationStepDelay = env.Milliseconds("ESCALATION_STEP_DELAY_MS") ?? o.EscalationStepDelay;
        o.Validate(coordination);
        return o;
    }
}
