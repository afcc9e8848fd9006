using System.Collections.Concurrent;
using Prometheus;

namespace Cfn.Coordination.Metrics;

/// <summary>
/// The protocol's Prometheus metrics, with SPEC §3.2's names, types, labels and buckets (D9). One instance per
/// registry; the process uses <see cref="Default"/>, tests make their own so that counts can be read exactly.
/// Every <c>coordinator_id</c> label set is bounded by the coordinators alive in the process: gauges of finished
/// waits are removed.
/// </summary>
public sealed class CoordinationMetrics
{
    /// <summary><c>blocking_duration_seconds</c> buckets: the top finite bucket is above every alert threshold, so each alert's quantile can cross it.</summary>
    public static readonly double[] BlockingDurationBuckets = [1, 5, 10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200];

    /// <summary><c>signal_delivery_latency_seconds</c> buckets.</summary>
    public static readonly double[] SignalLatencyBuckets = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60];

    private static readonly Lazy<CoordinationMetrics> DefaultInstance = new(() => new CoordinationMetrics(Prometheus.Metrics.DefaultRegistry));

    private readonly ConcurrentDictionary<(string Coordinator, string Swarm, string Phase), BlockingState> _blocking = new();

    // blocking_coordinators_total{swarm_id, phase, status="waiting"} is never removed: its child is looked up once.
    private readonly ConcurrentDictionary<(string Swarm, string Phase), Gauge.Child> _waitingTotals = new();
    private readonly TimeProvider _time;

    /// <summary>Creates the metric families in <paramref name="registry"/>.</summary>
    public CoordinationMetrics(CollectorRegistry registry, TimeProvider? time = null)
    {
        Registry = registry;
        _time = time ?? TimeProvider.System;
        var f = Prometheus.Metrics.WithCustomRegistry(registry);

        BlockingActive = f.CreateGauge("blocking_coordinators_active",
            "1 while the coordinator is blocked waiting for ACKs; the series is removed when the wait ends.",
            "coordinator_id", "swarm_id", "phase");
        BlockingTotal = f.CreateGauge("blocking_coordinators_total",
            "Number of coordinators currently blocking, per swarm, phase and status (compatibility with the TS alerts).",
            "swarm_id", "phase", "status");
        BlockingCurrentDuration = f.CreateGauge("blocking_current_duration_seconds",
            "Seconds since the coordinator's oldest running wait started; removed when it is not blocking.",
            "coordinator_id", "swarm_id", "phase");
        BlockingDuration = f.CreateHistogram("blocking_duration_seconds",
            "Duration of finished ACK waits.",
            new HistogramConfiguration { LabelNames = ["swarm_id", "coordinator_id", "status"], Buckets = BlockingDurationBuckets });
        SignalLatency = f.CreateHistogram("signal_delivery_latency_seconds",
            "Time from a signal entering the receiver's inbox to its ACK, both on the Redis clock.",
            new HistogramConfiguration { LabelNames = ["coordinator_id", "signal_type"], Buckets = SignalLatencyBuckets });
        HeartbeatFailures = f.CreateCounter("heartbeat_failures_total",
            "Heartbeat problems: write failures (connection, timeout, error) and stale heartbeats (stale). failure_type repeats reason for the legacy dashboard.",
            "coordinator_id", "reason", "failure_type");
        TimeoutEvents = f.CreateCounter("timeout_events_total",
            "Timeouts: heartbeat (dead coordinator), blocking (wait past its timeout), external (outbound call). timeout_type repeats reason.",
            "coordinator_id", "reason", "timeout_type");
        SignalsSent = f.CreateCounter("signals_sent_total", "Signals delivered to a receiver's inbox.", "coordinator_id", "signal_type");
        SignalsFailed = f.CreateCounter("signals_failed_total",
            "Signals that could not be delivered (redis_error, ack_timeout, validation, circuit_open).",
            "coordinator_id", "signal_type", "reason");
        HeartbeatTimestamp = f.CreateGauge("blocking_heartbeat_timestamp",
            "Redis time in milliseconds of the coordinator's last successful heartbeat.", "coordinator_id", "swarm_id");
        AckVerificationFailures = f.CreateCounter("ack_verification_failures_total",
            "ACKs or signals refused: malformed, bad signature, or bound to another coordinator or signal.",
            "coordinator_id", "reason");
        WorkWritesRefused = f.CreateCounter("work_item_writes_refused_total",
            "Work-item writes refused by the fence (fenced, not_owner, conflict, not_found, exists, completed, not_released).",
            "coordinator_id", "reason");
        SignalsIgnored = f.CreateCounter("signals_ignored_total",
            "Signals consumed without being handed to the application (stale_epoch, too_old, invalid).",
            "coordinator_id", "reason");
        TsSignals = f.CreateCounter("ts_signals_total",
            "Signals a TS coordinator wrote only to K2 (CFN_TS_COMPAT): accepted_unsigned, accepted_signed, left_compat_off.",
            "coordinator_id", "reason");

        registry.AddBeforeCollectCallback(UpdateCurrentDurations);
    }

    /// <summary>The process-wide instance on prometheus-net's default registry.</summary>
    public static CoordinationMetrics Default => DefaultInstance.Value;

    /// <summary>The registry the families live in.</summary>
    public CollectorRegistry Registry { get; }

    /// <summary><c>blocking_coordinators_active{coordinator_id, swarm_id, phase}</c>.</summary>
    public Gauge BlockingActive { get; }

    /// <summary><c>blocking_coordinators_total{swarm_id, phase, status}</c>.</summary>
    public Gauge BlockingTotal { get; }

    /// <summary><c>blocking_current_duration_seconds{coordinator_id, swarm_id, phase}</c>.</summary>
    public Gauge BlockingCurrentDuration { get; }

    /// <summary><c>blocking_duration_seconds{swarm_id, coordinator_id, status}</c>.</summary>
    public Histogram BlockingDuration { get; }

    /// <summary><c>signal_delivery_latency_seconds{coordinator_id, signal_type}</c>.</summary>
    public Histogram SignalLatency { get; }

    /// <summary><c>heartbeat_failures_total{coordinator_id, reason, failure_type}</c>.</summary>
    public Counter HeartbeatFailures { get; }

    /// <summary><c>timeout_events_total{coordinator_id, reason, timeout_type}</c>.</summary>
    public Counter TimeoutEvents { get; }

    /// <summary><c>signals_sent_total{coordinator_id, signal_type}</c>.</summary>
    public Counter SignalsSent { get; }

    /// <summary><c>signals_failed_total{coordinator_id, signal_type, reason}</c>.</summary>
    public Counter SignalsFailed { get; }

    /// <summary><c>blocking_heartbeat_timestamp{coordinator_id, swarm_id}</c> in ms.</summary>
    public Gauge HeartbeatTimestamp { get; }

    /// <summary><c>ack_verification_failures_total{coordinator_id, reason}</c>.</summary>
    public Counter AckVerificationFailures { get; }

    /// <summary><c>work_item_writes_refused_total{coordinator_id, reason}</c>.</summary>
    public Counter WorkWritesRefused { get; }

    /// <summary><c>signals_ignored_total{coordinator_id, reason}</c>.</summary>
    public Counter SignalsIgnored { get; }

    /// <summary><c>ts_signals_total{coordinator_id, reason}</c>.</summary>
    public Counter TsSignals { get; }

    /// <summary>Counts a heartbeat failure under both label names.</summary>
    public void CountHeartbeatFailure(string coordinatorId, string reason) =>
        HeartbeatFailures.WithLabels(coordinatorId, reason, reason).Inc();

    /// <summary>Counts a timeout event under both label names.</summary>
    public void CountTimeout(string coordinatorId, string reason) =>
        TimeoutEvents.WithLabels(coordinatorId, reason, reason).Inc();

    /// <summary>
    /// Creates a starting coordinator's own failure series at 0 (heartbeat connection/timeout/error, blocking and external
    /// timeouts): Prometheus's <c>rate()</c> cannot see the first increment of a series that appears at 1, so without
    /// this the first failures of every coordinator would be invisible to the HeartbeatFailures and TimeoutEvents alerts.
    /// </summary>
    public void Initialize(string coordinatorId)
    {
        foreach (var reason in (string[])["connection", "timeout", "error"])
        {
            HeartbeatFailures.WithLabels(coordinatorId, reason, reason);
        }

        foreach (var reason in (string[])["blocking", "external"])
        {
            TimeoutEvents.WithLabels(coordinatorId, reason, reason);
        }
    }

    /// <summary>Marks the start of one wait; the coordinator's gauges appear with its first running wait.</summary>
    public void WaitStarted(string coordinatorId, string swarmId, string phase, long startTimestamp)
    {
        var key = (coordinatorId, swarmId, phase);
        while (true)
        {
            var state = _blocking.GetOrAdd(key, static k => new BlockingState([k.Coordinator, k.Swarm, k.Phase]));
            lock (state)
            {
                // A state removed by a concurrent WaitEnded is dead; take a fresh one.
                if (state.Removed)
                {
                    continue;
                }

                state.Starts.Add(startTimestamp);
                if (state.Starts.Count == 1)
                {
                    BlockingActive.WithLabels(state.Labels).Set(1);
                    WaitingTotal(swarmId, phase).Inc();
                    BlockingCurrentDuration.WithLabels(state.Labels).Set(0);
                }

                return;
            }
        }
    }

    /// <summary>Marks the end of one wait; with the coordinator's last wait its series are removed.</summary>
    public void WaitEnded(string coordinatorId, string swarmId, string phase, long startTimestamp)
    {
        var key = (coordinatorId, swarmId, phase);
        if (!_blocking.TryGetValue(key, out var state))
        {
            return;
        }

        lock (state)
        {
            state.Starts.Remove(startTimestamp);
            if (state.Starts.Count == 0)
            {
                BlockingActive.RemoveLabelled(state.Labels);
                BlockingCurrentDuration.RemoveLabelled(state.Labels);
                WaitingTotal(swarmId, phase).Dec();
                state.Removed = true;
                _blocking.TryRemove(KeyValuePair.Create(key, state));
            }
        }
    }

    private void UpdateCurrentDurations()
    {
        foreach (var (key, state) in _blocking)
        {
            lock (state)
            {
                if (state.Starts.Count > 0)
                {
                    var seconds = _time.GetElapsedTime(state.Starts.Min()).TotalSeconds;
                    BlockingCurrentDuration.WithLabels(key.Coordinator, key.Swarm, key.Phase).Set(seconds);
                }
            }
        }
    }

    private Gauge.Child WaitingTotal(string swarmId, string phase) =>
        _waitingTotals.GetOrAdd((swarmId, phase), static (k, total) => total.WithLabels(k.Swarm, k.Phase, "waiting"), BlockingTotal);

    /// <summary>The running waits of one coordinator, swarm and phase, and the label values of their series.</summary>
    private sealed class BlockingState(string[] labels)
    {
        public string[] Labels { get; } = labels;

        public List<long> Starts { get; } = [];

        public bool Removed { get; set; }
    }
}
