using Prometheus;

namespace Cfn.Coordination.Recovery;

/// <summary>
/// Metrics of the timeout handler (SPEC §3.2 "suggested" rows). <c>heartbeat_failures_total</c> and
/// <c>timeout_events_total</c> are shared with the coordinators through <see cref="Metrics.CoordinationMetrics"/>.
/// </summary>
public sealed class RecoveryMetrics
{
    /// <summary>Creates the families in <paramref name="registry"/>.</summary>
    public RecoveryMetrics(CollectorRegistry registry)
    {
        var f = Prometheus.Metrics.WithCustomRegistry(registry);
        DeadCoordinators = f.CreateCounter("dead_coordinators_total", "Coordinators declared dead (one per incident, whichever monitor confirmed it).", "swarm_id");
        Escalations = f.CreateCounter("escalations_total", "Escalations of dead coordinators by result (escalated, already_escalated, failed, disabled).", "result");
        CleanupKeysDeleted = f.CreateCounter("cleanup_keys_deleted_total", "Keys deleted by coordinator cleanups.");
        CleanupRuns = f.CreateCounter("cleanup_runs_total", "Batch cleanup runs by result (success, errors, locked, aborted).", "result");
        MalformedValues = f.CreateCounter("monitor_malformed_values_total",
            "Malformed JSON values the timeout handler found and skipped, by key type (heartbeat, activity, work, signal).", "key_type");
        WorkItemsTransferred = f.CreateCounter("work_items_transferred_total", "Work items handed to a replacement coordinator.");
        SignalsHandedOver = f.CreateCounter("signals_handed_over_total", "Unconsumed signals of dead coordinators handed to their replacement.");
        MonitorPasses = f.CreateCounter("heartbeat_monitor_passes_total", "Heartbeat monitor passes by result (ok, redis_unavailable).", "result");
    }

    /// <summary><c>dead_coordinators_total{swarm_id}</c>.</summary>
    public Counter DeadCoordinators { get; }

    /// <summary><c>escalations_total{result}</c>.</summary>
    public Counter Escalations { get; }

    /// <summary><c>cleanup_keys_deleted_total</c>.</summary>
    public Counter CleanupKeysDeleted { get; }

    /// <summary><c>cleanup_runs_total{result}</c>.</summary>
    public Counter CleanupRuns { get; }

    /// <summary><c>monitor_malformed_values_total{key_type}</c>.</summary>
    public Counter MalformedValues { get; }

    /// <summary><c>work_items_transferred_total</c>.</summary>
    public Counter WorkItemsTransferred { get; }

    /// <summary><c>signals_handed_over_total</c>.</summary>
    public Counter SignalsHandedOver { get; }

    /// <summary><c>heartbeat_monitor_passes_total{result}</c>.</summary>
    public Counter MonitorPasses { get; }
}
