namespace Cfn.Tests.Deploy;

/// <summary>One metric family as SPEC §3.2 (and D9) asks for it: name, type, label names in order, histogram buckets.</summary>
/// <param name="Owner">The role whose <c>/metrics</c> carries it: coordinator, timeout-handler, swarm-manager or every.</param>
/// <param name="Values">Allowed values per label (labels not listed are free, e.g. IDs); checked on every series.</param>
internal sealed record MetricSpec(
    string Name,
    string Type,
    string[] Labels,
    string Owner,
    double[]? Buckets = null,
    IReadOnlyDictionary<string, string[]>? Values = null);

/// <summary>
/// The families of SPEC §3.2 with the exact names, types, labels and buckets D9 settles, written out here from the SPEC
/// (not read from the code) so that the code is tested against the contract.
/// </summary>
internal static class MetricCatalog
{
    public static readonly double[] BlockingDurationBuckets = [1, 5, 10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200];

    public static readonly double[] SignalLatencyBuckets = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60];

    public static readonly MetricSpec[] Spec =
    [
        new("blocking_coordinators_active", "gauge", ["coordinator_id", "swarm_id", "phase"], "coordinator"),
        new("blocking_coordinators_total", "gauge", ["swarm_id", "phase", "status"], "coordinator"),
        new("blocking_current_duration_seconds", "gauge", ["coordinator_id", "swarm_id", "phase"], "coordinator"),
        new("blocking_duration_seconds", "histogram", ["swarm_id", "coordinator_id", "status"], "coordinator", BlockingDurationBuckets,
            new Dictionary<string, string[]> { ["status"] = ["completed", "timeout", "error", "forced", "cancelled", "peer_dead"] }),
        new("signal_delivery_latency_seconds", "histogram", ["coordinator_id", "signal_type"], "coordinator", SignalLatencyBuckets),
        new("heartbeat_failures_total", "counter", ["coordinator_id", "reason", "failure_type"], "coordinator",
            Values: new Dictionary<string, string[]> { ["reason"] = ["connection", "timeout", "stale", "error"] }),
        new("timeout_events_total", "counter", ["coordinator_id", "reason", "timeout_type"], "coordinator",
            Values: new Dictionary<string, string[]> { ["reason"] = ["heartbeat", "blocking", "external"] }),
        new("signals_sent_total", "counter", ["coordinator_id", "signal_type"], "coordinator"),
        new("signals_failed_total", "counter", ["coordinator_id", "signal_type", "reason"], "coordinator",
            // "forced": a sender-side retry ended by force-unblock (SignalRetrier), a bounded C# addition like the duration's "forced".
            Values: new Dictionary<string, string[]> { ["reason"] = ["redis_error", "ack_timeout", "validation", "circuit_open", "forced"] }),
        new("coordinator_spawns_total", "counter", ["swarm_id", "reason"], "swarm-manager",
            Values: new Dictionary<string, string[]> { ["reason"] = ["replacement", "scale", "initial"] }),
        new("blocking_heartbeat_timestamp", "gauge", ["coordinator_id", "swarm_id"], "coordinator"),
        new("circuit_breaker_state", "gauge", ["name", "state"], "every",
            Values: new Dictionary<string, string[]> { ["state"] = ["closed", "open", "half_open"] }),
        new("ack_verification_failures_total", "counter", ["coordinator_id", "reason"], "coordinator"),
        new("dead_coordinators_total", "counter", ["swarm_id"], "timeout-handler"),
        new("escalations_total", "counter", ["result"], "timeout-handler"),
        new("cleanup_keys_deleted_total", "counter", [], "timeout-handler"),
        new("cleanup_runs_total", "counter", ["result"], "timeout-handler"),
        // Issue 11: every background loop counts its failed passes and skipped records; the loop label set is bounded (live_view: issue 15; ts_discovery: issue 16).
        new("background_loop_errors_total", "counter", ["loop", "scope"], "every",
            Values: new Dictionary<string, string[]>
            {
                ["loop"] = ["heartbeat_monitor", "stuck_waits", "batch_cleanup", "swarm_manager", "coordinator_host", "heartbeat", "ack_fallback",
                    "breaker_states", "work_generator", "validator_registration", "work_loop", "inbox_pump", "validator_worker", "agent_sessions",
                    "live_view", "ts_discovery"],
                ["scope"] = ["pass", "item"],
            }),
    ];

    /// <summary>Process and runtime families of prometheus-net's default collectors (TS <c>collectDefaultMetrics</c>).</summary>
    public static readonly (string Name, string Type)[] Process =
    [
        ("process_cpu_seconds_total", "counter"),
        ("process_start_time_seconds", "gauge"),
        ("process_working_set_bytes", "gauge"),
        ("process_open_handles", "gauge"),
        ("process_num_threads", "gauge"),
        ("dotnet_total_memory_bytes", "gauge"),
        ("dotnet_collection_count_total", "counter"),
    ];

    /// <summary>Series Prometheus records from the rules file (SPEC §3.3), and the alerts' own series.</summary>
    public static readonly string[] Recorded = ["blocking_duration_seconds", "blocking:duration:p95", "blocking:duration:p99", "signal:latency:p95", "signal:latency:p99", "ALERTS", "ALERTS_FOR_STATE"];

    public static MetricSpec Get(string name) => Spec.Single(s => s.Name == name);
}
