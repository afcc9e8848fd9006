using Cfn.Coordination.Background;
using Cfn.Coordination.Deadlocks;
using Cfn.Coordination.Detection;
using Cfn.Coordination.Metrics;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Security;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

// An entry point of the library: public at the namespace root (SPEC D22), its machinery stays in Recovery.
namespace Cfn.Coordination;

/// <summary>
/// The timeout handler process's work in one object (SPEC §0.2): the heartbeat monitor with automatic escalation, the
/// stuck-wait and deadlock checks every <see cref="RecoveryOptions.StuckWaitGrace"/>, and the batch cleanup every
/// <see cref="RecoveryOptions.CleanupInterval"/>. Several handlers may run at once: every decision is atomic in Redis.
/// </summary>
public sealed class TimeoutHandler : IAsyncDisposable
{
    private readonly RedisContext _redis;
    private readonly RecoveryOptions _options;
    private readonly ILogger _logger;
    private readonly BackgroundLoop _stuckWaits;
    private readonly BackgroundLoop _batchCleanup;
    private readonly BackgroundLoop? _tsDiscovery;

    /// <summary>Creates the handler and its parts.</summary>
    public TimeoutHandler(
        RedisContext redis,
        SigningKeys keys,
        RecoveryOptions options,
        CoordinationMetrics metrics,
        RecoveryMetrics recoveryMetrics,
        string handlerId,
        Func<bool>? redisCircuitOpen = null)
    {
        ArgumentNullException.ThrowIfNull(redis);
        _redis = redis;
        _options = options;
        HandlerId = handlerId;
        _logger = redis.LoggerFactory.CreateLogger<TimeoutHandler>();
        Cleanup = new CoordinatorCleanup(redis, options, recoveryMetrics);
        Escalation = new EscalationService(redis, keys, options, recoveryMetrics, Cleanup);
        Monitor = new HeartbeatMonitor(redis, options, metrics, recoveryMetrics, Escalation, handlerId,
            redisCircuitOpen ?? (() => redis.RedisBreaker.State == Resilience.CircuitState.Open));
        StuckWaits = new StuckWaitDetector(redis, options, metrics, recoveryMetrics);
        Deadlocks = new DeadlockDetector(redis.Database, redis.LoggerFactory.CreateLogger<DeadlockDetector>(), redis.Time);
        BatchCleanup = new BatchCleanup(redis, options, recoveryMetrics, Cleanup);
        Unblocker = new ForceUnblocker(redis);
        TimeoutCheck = new CoordinatorTimeoutCheck(redis, options);
        _stuckWaits = Every(LoopNames.StuckWaits, options.StuckWaitGrace, CheckWaitsAsync);
        _batchCleanup = Every(LoopNames.BatchCleanup, options.CleanupInterval, async () => await BatchCleanup.RunAsync(dryRun: false).ConfigureAwait(false));
        if (redis.Options.TsCompat && options.EnableHeartbeatMonitoring)
        {
            // TS coordinators that no traffic named are found by a slow scan of K1 (D13), as often as the batch cleanup runs.
            _tsDiscovery = Every(LoopNames.TsDiscovery, options.CleanupInterval, DiscoverTsCoordinatorsAsync, passAtStart: true);
        }
    }

    /// <summary>This handler's name.</summary>
    public string HandlerId { get; }

    /// <summary>Dead-coordinator detection.</summary>
    internal HeartbeatMonitor Monitor { get; }

    /// <summary>Stuck waits.</summary>
    internal StuckWaitDetector StuckWaits { get; }

    /// <summary>Wait-for cycles.</summary>
    internal DeadlockDetector Deadlocks { get; }

    /// <summary>Per-coordinator cleanup.</summary>
    internal CoordinatorCleanup Cleanup { get; }

    /// <summary>The periodic batch cleanup.</summary>
    internal BatchCleanup BatchCleanup { get; }

    /// <summary>Escalation of dead coordinators (and their spawn requests).</summary>
    internal EscalationService Escalation { get; }

    /// <summary>Force-unblock.</summary>
    internal ForceUnblocker Unblocker { get; }

    /// <summary>On-demand timeout check of one coordinator (<c>POST /api/timeouts/force-check</c>).</summary>
    internal CoordinatorTimeoutCheck TimeoutCheck { get; }

    /// <summary>The latest deadlock check.</summary>
    public DeadlockSnapshot? LastDeadlocks { get; private set; }

    /// <summary>
    /// Wakes every blocked wait of every coordinator with a force-unblock (the runbook's emergency step); returns the
    /// coordinators that were blocking.
    /// </summary>
    public Task<IReadOnlyList<string>> ForceUnblockAllAsync() => Unblocker.UnblockAllAsync();

    /// <summary>Wakes <paramref name="coordinatorId"/>'s blocked waits; true when it was blocking.</summary>
    public Task<bool> ForceUnblockAsync(string coordinatorId) => Unblocker.UnblockAsync(coordinatorId);

    /// <summary>
    /// Deletes <paramref name="coordinatorId"/>'s keys (its work is handed over first). Unless <paramref name="force"/>,
    /// a coordinator with a fresh heartbeat is left alone, and so is a TS signal left unconsumed in its K2 (D13); forced,
    /// it is cleaned anyway (that signal too) and the fresh heartbeat logged.
    /// </summary>
    public Task<CleanupResult> CleanupAsync(string coordinatorId, bool force = false) =>
        Cleanup.CleanupAsync(coordinatorId, force, keepTsSignal: !force); // an operator's forced cleanup deletes a TS signal too

    /// <summary>The activity-timeout verdict for <paramref name="coordinatorId"/> now (read-only); null when it has neither a heartbeat nor an activity record.</summary>
    public Task<TimeoutCheckResult?> CheckTimeoutAsync(string coordinatorId) => TimeoutCheck.CheckAsync(coordinatorId);

    /// <summary>Starts every loop.</summary>
    public void Start()
    {
        Monitor.Start();
        _stuckWaits.Start();
        _batchCleanup.Start();
        _tsDiscovery?.Start();
        _logger.LogInformation("Timeout handler started handler={HandlerId} heartbeatMonitoring={Monitoring} autoEscalation={Escalation}",
            HandlerId, _options.EnableHeartbeatMonitoring, _options.EnableAutoEscalation);
    }

    /// <summary>One stuck-wait and deadlock check now.</summary>
    public async Task CheckWaitsAsync()
    {
        await StuckWaits.CheckAsync().ConfigureAwait(false);
        var blocking = await _redis.Database.SortedSetRangeByRankAsync(Keys.Deadlines).ConfigureAwait(false);
        LastDeadlocks = await Deadlocks.DetectAsync(blocking.Select(b => (string)b!)).ConfigureAwait(false);
    }

    /// <summary>One slow scan for TS coordinators' heartbeats (CFN_TS_COMPAT); returns how many were new to the watch.</summary>
    internal async Task<int> DiscoverTsCoordinatorsAsync()
    {
        var added = await TsCoordinators.DiscoverByScanAsync(_redis).ConfigureAwait(false);
        if (added > 0)
        {
            _logger.LogInformation("TS coordinators found by the heartbeat scan count={Count}: watched by the heartbeat monitor", added);
        }

        return added;
    }

    private BackgroundLoop Every(string loop, TimeSpan period, Func<Task> work, bool passAtStart = false) =>
        new(_redis.Loops, loop, null, period, async _ =>
        {
            try
            {
                await work().ConfigureAwait(false);
            }
            catch (Exception e) when (RedisErrors.IsTransient(e))
            {
                _logger.LogWarning("Redis error in timeout handler job: {Error}", e.Message);
            }
        }, _logger, _redis.Time)
        {
            PassAtStart = passAtStart,
        };

    /// <inheritdoc/>
    public async ValueTask DisposeAsync()
    {
        await Task.WhenAll(_stuckWaits.DisposeAsync().AsTask(), _batchCleanup.DisposeAsync().AsTask(),
            _tsDiscovery?.DisposeAsync().AsTask() ?? Task.CompletedTask).ConfigureAwait(false);
        await Monitor.DisposeAsync().ConfigureAwait(false);
    }
}
