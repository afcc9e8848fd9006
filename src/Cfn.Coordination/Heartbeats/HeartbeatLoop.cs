using Cfn.Coordination.Background;
using Cfn.Coordination.Metrics;
using Cfn.Coordination.Redis;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Cfn.Coordination.Heartbeats;

/// <summary>
/// Writes this coordinator's heartbeat (SPEC §2.9 writer side, D5, D6) on a non-overlapping periodic timer: K1 with
/// the Redis clock, the registry score, and the K7 TTL, in one script. A validator writes the same record to its own
/// key <c>validator:heartbeat:{id}</c> (<see cref="Coordinator.HeartbeatKey"/>) and the same registry entry, so it is
/// monitored like a coordinator without being counted as one. Failures are classified
/// <c>connection</c>, <c>timeout</c> or <c>error</c>, counted and logged with the word "heartbeat".
/// </summary>
internal sealed class HeartbeatLoop : IAsyncDisposable
{
    private readonly Coordinator _coordinator;
    private readonly RedisContext _redis;
    private readonly CoordinationMetrics _metrics;
    private readonly ILogger _logger;
    private readonly BackgroundLoop _loop;
    private long _sequence;

    internal HeartbeatLoop(Coordinator coordinator, RedisContext redis, CoordinationMetrics metrics, ILogger logger)
    {
        _coordinator = coordinator;
        _redis = redis;
        _metrics = metrics;
        _logger = logger;
        _loop = new BackgroundLoop(redis.Loops, LoopNames.Heartbeat, coordinator.Id, redis.Options.HeartbeatInterval, _ => BeatAsync(), logger, redis.Time)
        {
            // A superseded instance stops beating on purpose: its successor owns the ID.
            EndWhen = () => _coordinator.IsSuperseded,
        };
    }

    /// <summary>Sequence number of the last heartbeat attempted.</summary>
    public long Sequence => Interlocked.Read(ref _sequence);

    /// <summary>Redis time (ms) of the last successful heartbeat, or 0.</summary>
    public long LastSentAt { get; private set; }

    /// <summary>The last failure's message, or null after a success.</summary>
    public string? LastError { get; private set; }

    /// <summary>Status written into K1 (<c>stopping</c> during a graceful stop).</summary>
    internal string? StatusOverride { get; set; }

    /// <summary>Starts the periodic loop (the first beat is sent at once by <see cref="Coordinator.StartAsync"/>).</summary>
    internal void Start() => _loop.Start();

    /// <summary>Sends one heartbeat now. Returns false (after counting and logging) when it failed.</summary>
    public async Task<bool> BeatAsync()
    {
        var sequence = Interlocked.Increment(ref _sequence);
        var options = _redis.Options;
        var record = new HeartbeatRecord
        {
            CoordinatorId = _coordinator.Id,
            SwarmId = _coordinator.SwarmId,
            Timestamp = Json.NowMarker,
            LastHeartbeat = Json.NowMarker,
            Sequence = sequence,
            InstanceId = _coordinator.InstanceId,
            Epoch = _coordinator.Epoch,
            Iteration = _coordinator.Iteration,
            Status = StatusOverride ?? _coordinator.Status,
            Phase = _coordinator.Phase,
        };
        var (json, stampFields) = Json.SerializeForStamp(record);
        if (!_redis.RedisBreaker.TryAcquire(out var lease))
        {
            // Redis is known to be down: do not pile on; this still is a heartbeat that did not happen.
            LastError = "redis circuit open";
            _metrics.CountHeartbeatFailure(_coordinator.Id, "connection");
            _logger.LogWarning("Heartbeat write failed (reason=connection) coordinator={CoordinatorId} seq={Sequence}: Request rejected - circuit is OPEN",
                _coordinator.Id, sequence);
            return false;
        }

        using var trial = lease;
        try
        {
            var reply = await _redis.Database.ScriptEvaluateAsync(
                RedisScripts.Heartbeat,
                [_coordinator.HeartbeatKey, Keys.Registry, Keys.Activity(_coordinator.Id), Keys.Epoch(_coordinator.Id), Keys.Swarms],
                [json, options.HeartbeatTtlSeconds, _coordinator.Id, options.ActivityTtlSeconds, _coordinator.Epoch, stampFields, _coordinator.SwarmId])
                .ConfigureAwait(false);
            if (RedisScripts.IsFenced(reply, out var currentEpoch))
            {
                _coordinator.MarkSuperseded("heartbeat", currentEpoch);
                return false;
            }

            var now = (long)reply;

            trial.RecordSuccess();
            LastSentAt = now;
            LastError = null;
            _metrics.HeartbeatTimestamp.WithLabels(_coordinator.Id, _coordinator.SwarmId).Set(now);
            if (options.HeartbeatDebug)
            {
                _logger.LogInformation("Heartbeat sent coordinator={CoordinatorId} seq={Sequence} timestamp={Timestamp} ttl={Ttl}",
                    _coordinator.Id, sequence, now, options.HeartbeatTtlSeconds);
            }

            return true;
        }
        catch (Exception e) when (RedisErrors.IsTransient(e) || e is ObjectDisposedException)
        {
            trial.RecordFailure(e);
            var reason = Classify(e);
            LastError = e.Message;
            _metrics.CountHeartbeatFailure(_coordinator.Id, reason);
            _logger.LogWarning("Heartbeat write failed (reason={Reason}) coordinator={CoordinatorId} seq={Sequence}: {Error}",
                reason, _coordinator.Id, sequence, e.Message);
            return false;
        }
    }

    /// <summary>Maps an exception to the <c>reason</c> label: <c>connection</c>, <c>timeout</c> or <c>error</c>.</summary>
    public static string Classify(Exception exception) => exception switch
    {
        RedisTimeoutException or TimeoutException => "timeout",
        RedisConnectionException or ObjectDisposedException => "connection",
        _ => "error",
    };

    /// <summary>Stops the loop; no further heartbeats are written.</summary>
    public ValueTask DisposeAsync() => _loop.DisposeAsync();
}
