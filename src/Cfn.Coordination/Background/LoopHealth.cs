using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Prometheus;
using StackExchange.Redis;

namespace Cfn.Coordination.Background;

/// <summary>
/// The process's background loops, by name: their interval, the time of their last completed pass and whether they
/// stopped without being asked to. One per process (the <see cref="RedisContext"/>s of a process share it);
/// <c>/health/ready</c> fails while <see cref="Unhealthy"/> names any loop. Also owns the loops' metrics:
/// <c>background_loop_errors_total{loop,scope}</c>, <c>background_loop_last_pass_timestamp_seconds{loop}</c> and
/// <c>background_loops_unhealthy{loop}</c>; the <c>loop</c> label is always one of <see cref="LoopNames"/>.
/// </summary>
public sealed class LoopHealth
{
    /// <summary>A periodic loop is stale once this many of its intervals passed without a completed pass.</summary>
    public const int StaleIntervals = 3;

    private readonly ConcurrentDictionary<LoopHandle, byte> _loops = new();
    private readonly TimeProvider _time;

    /// <summary>Creates the registry and its metric families in <paramref name="registry"/>.</summary>
    public LoopHealth(CollectorRegistry registry, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(registry);
        _time = time ?? TimeProvider.System;
        var f = Prometheus.Metrics.WithCustomRegistry(registry);
        Errors = f.CreateCounter("background_loop_errors_total",
            "Unexpected errors in background loops: scope=pass (a pass threw; the loop goes on with the next one) or scope=item (one record was skipped).",
            "loop", "scope");
        LastPass = f.CreateGauge("background_loop_last_pass_timestamp_seconds",
            "Unix time of the latest completed pass of any instance of the loop.", "loop");
        UnhealthyLoops = f.CreateGauge("background_loops_unhealthy",
            "Instances of the loop that stopped or are stale (no completed pass for 3 intervals): the /health/ready rule.", "loop");
        registry.AddBeforeCollectCallback(UpdateUnhealthyGauge);
    }

    /// <summary><c>background_loop_errors_total{loop,scope}</c>.</summary>
    public Counter Errors { get; }

    /// <summary><c>background_loop_last_pass_timestamp_seconds{loop}</c>.</summary>
    public Gauge LastPass { get; }

    /// <summary><c>background_loops_unhealthy{loop}</c>, computed at each scrape.</summary>
    public Gauge UnhealthyLoops { get; }

    internal TimeProvider Time => _time;

    /// <summary>A registry of its own (tests, and components built without a process around them).</summary>
    public static LoopHealth Detached(TimeProvider? time = null) => new(Prometheus.Metrics.NewCustomRegistry(), time);

    /// <summary>
    /// Registers one running loop. <paramref name="loop"/> must be one of <see cref="LoopNames"/> (the metric label);
    /// <paramref name="instance"/> tells instances apart (a coordinator ID) and appears only in readiness, never in a label.
    /// <paramref name="interval"/>: the longest a healthy loop goes between completed passes; null for a loop that sleeps
    /// on wake-ups (only its stopping is checked). Dispose the handle when the loop is stopped on purpose.
    /// </summary>
    public LoopHandle Register(string loop, string? instance, TimeSpan? interval)
    {
        if (!LoopNames.All.Contains(loop))
        {
            throw new ArgumentException($"loop must be one of {string.Join(", ", LoopNames.All)}", nameof(loop));
        }

        var handle = new LoopHandle(this, loop, instance, interval, _time.GetUtcNow());
        Errors.WithLabels(loop, LoopHandle.PassScope);
        Errors.WithLabels(loop, LoopHandle.ItemScope);
        _loops.TryAdd(handle, 0);
        return handle;
    }

    /// <summary>Every registered loop with its state now.</summary>
    public IReadOnlyList<LoopStatus> Snapshot()
    {
        var now = _time.GetUtcNow();
        return [.. _loops.Keys.Select(h => h.StatusAt(now)).OrderBy(s => s.Name, StringComparer.Ordinal)];
    }

    /// <summary>The loops that stopped, or (periodic ones) completed no pass for <see cref="StaleIntervals"/> intervals.</summary>
    public IReadOnlyList<LoopStatus> Unhealthy() => [.. Snapshot().Where(s => s.State != LoopStatus.Running)];

    /// <summary>
    /// One record of <paramref name="loop"/> could not be handled and is skipped: logged with its key and the reason
    /// (<c>Background loop skipped a record loop=… key=…: …</c>) and counted as <c>scope="item"</c>.
    /// </summary>
    public void SkipRecord(string loop, ILogger logger, string key, string reason)
    {
        ArgumentNullException.ThrowIfNull(logger);
        Errors.WithLabels(loop, LoopHandle.ItemScope).Inc();
        logger.LogWarning("Background loop skipped a record loop={Loop} key={Key}: {Reason}", loop, key, reason);
    }

    /// <summary>Handling one record threw: the record is skipped (see <see cref="SkipRecord"/>).</summary>
    public void RecordFailed(string loop, ILogger logger, string key, Exception error)
    {
        ArgumentNullException.ThrowIfNull(error);
        SkipRecord(loop, logger, key, $"{error.GetType().Name}: {error.Message}");
    }

    /// <summary>
    /// Whether <paramref name="error"/>, thrown while handling one record, is that record's problem (bad data, a bug,
    /// an error reply such as WRONGTYPE) rather than Redis being unreachable or the loop stopping, which end the pass.
    /// </summary>
    public static bool IsRecordFault(Exception error) =>
        error is not (RedisConnectionException or RedisTimeoutException or TimeoutException or OperationCanceledException or ObjectDisposedException);

    internal void Remove(LoopHandle handle) => _loops.TryRemove(handle, out _);

    private void UpdateUnhealthyGauge()
    {
        var failing = Unhealthy().GroupBy(s => s.Loop).ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);
        foreach (var loop in _loops.Keys.Select(h => h.Loop).Concat(failing.Keys).Distinct(StringComparer.Ordinal))
        {
            UnhealthyLoops.WithLabels(loop).Set(failing.GetValueOrDefault(loop));
        }
    }
}

/// <summary>The state of one loop as readiness reports it.</summary>
/// <param name="Loop">The loop's name (the metric label).</param>
/// <param name="Instance">The instance (a coordinator ID) when the loop runs once per coordinator.</param>
/// <param name="State"><c>running</c>, <c>stale</c> or <c>stopped</c>.</param>
/// <param name="IntervalSeconds">Its interval; null for a loop that sleeps on wake-ups (never stale).</param>
/// <param name="LastPassSecondsAgo">Seconds since its last completed pass (or since it started, before the first).</param>
/// <param name="LastError">The last unexpected error of a pass, or why it stopped.</param>
/// <param name="Passes">Passes completed so far.</param>
public sealed record LoopStatus(string Loop, string? Instance, string State, double? IntervalSeconds, double LastPassSecondsAgo, string? LastError, long Passes)
{
    /// <summary>State of a loop that is alive.</summary>
    public const string Running = "running";

    /// <summary>State of a periodic loop without a completed pass for <see cref="LoopHealth.StaleIntervals"/> intervals.</summary>
    public const string Stale = "stale";

    /// <summary>State of a loop that ended without being asked to.</summary>
    public const string Stopped = "stopped";

    /// <summary><c>loop</c>, or <c>loop/instance</c>.</summary>
    public string Name => Instance is null ? Loop : $"{Loop}/{Instance}";
}
