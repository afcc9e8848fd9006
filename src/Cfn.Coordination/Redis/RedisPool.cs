using Cfn.Coordination.Redis;
using Cfn.Coordination.Resilience;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

// An entry point of the library: public at the namespace root (SPEC D22), its machinery stays in Redis.
namespace Cfn.Coordination;

/// <summary>
/// <c>REDIS_POOL_SIZE</c> (D2, SPEC §3.6, runbook #39/#42): N multiplexers, each wrapped in its own
/// <see cref="RedisContext"/> (they share the options, logger factory, clock and circuit-breaker registry, so there is
/// one <c>redis</c> breaker per process). <see cref="Rent"/> hands contexts out round-robin; a coordinator keeps the
/// context it was given, so its commands stay in order on one connection. The process opens about
/// <c>pods × REDIS_POOL_SIZE</c> interactive connections plus one subscription connection per multiplexer.
/// </summary>
public sealed class RedisPool : IAsyncDisposable
{
    private readonly RedisContext[] _contexts;
    private readonly string _endpoint;
    private long _next = -1;
    private long _reconnects;
    private long _connectionFailures;

    /// <summary>Wraps already-created contexts (the first is <see cref="Primary"/>); the pool disposes them.</summary>
    public RedisPool(IReadOnlyList<RedisContext> contexts)
    {
        ArgumentNullException.ThrowIfNull(contexts);
        if (contexts.Count == 0)
        {
            throw new ArgumentException("a pool needs at least one context", nameof(contexts));
        }

        _contexts = [.. contexts];
        _endpoint = string.Join(',', _contexts[0].Multiplexer.GetEndPoints().Select(e => e.ToString()));
        foreach (var context in _contexts)
        {
            context.Multiplexer.ConnectionRestored += OnRestored;
            context.Multiplexer.ConnectionFailed += OnFailed;
        }
    }

    /// <summary>
    /// Connects <paramref name="size"/> multiplexers in parallel with one configuration string. If any fails, the
    /// others are closed and the error is rethrown.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="size"/> is below 1 or above 64 (<c>REDIS_POOL_SIZE</c>).</exception>
    public static Task<RedisPool> ConnectAsync(
        string configuration,
        int size,
        CoordinationOptions options,
        TimeProvider? time = null,
        ILoggerFactory? loggerFactory = null,
        CircuitBreakerRegistry? breakers = null,
        Background.LoopHealth? loops = null) =>
        ConnectAsync(ConfigurationOptions.Parse(configuration), size, options, time, loggerFactory, breakers, loops);

    /// <summary>
    /// Connects <paramref name="size"/> multiplexers in parallel with the user's StackExchange.Redis options (see
    /// <see cref="RedisContext.ConnectAsync(ConfigurationOptions, CoordinationOptions, TimeProvider?, ILoggerFactory?, CircuitBreakerRegistry?, Background.LoopHealth?)"/>).
    /// If any fails, the others are closed and the error is rethrown.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="size"/> is below 1 or above 64 (<c>REDIS_POOL_SIZE</c>).</exception>
    public static async Task<RedisPool> ConnectAsync(
        ConfigurationOptions configuration,
        int size,
        CoordinationOptions options,
        TimeProvider? time = null,
        ILoggerFactory? loggerFactory = null,
        CircuitBreakerRegistry? breakers = null,
        Background.LoopHealth? loops = null)
    {
        if (size is < 1 or > 64)
        {
            throw new ArgumentOutOfRangeException(nameof(size), size, "REDIS_POOL_SIZE must be from 1 to 64");
        }

        time ??= TimeProvider.System;
        loggerFactory ??= NullLoggerFactory.Instance;
        // One registry for all, or each context would make its own and the process would have N "redis" breakers.
        breakers ??= new CircuitBreakerRegistry(Prometheus.Metrics.NewCustomRegistry(), timeProvider: time, loggerFactory: loggerFactory);
        loops ??= Background.LoopHealth.Detached(time);
        var connecting = Enumerable.Range(0, size)
            .Select(_ => RedisContext.ConnectAsync(configuration, options, time, loggerFactory, breakers, loops))
            .ToList();
        try
        {
            await Task.WhenAll(connecting).ConfigureAwait(false);
        }
        catch
        {
            foreach (var task in connecting.Where(t => t.IsCompletedSuccessfully))
            {
                await task.Result.DisposeAsync().ConfigureAwait(false);
            }

            throw;
        }

        return new RedisPool([.. connecting.Select(t => t.Result)]);
    }

    /// <summary>Number of multiplexers.</summary>
    public int Size => _contexts.Length;

    /// <summary>The first context: process-wide work (timeout handler, swarm manager, health checks).</summary>
    public RedisContext Primary => _contexts[0];

    /// <summary>Every context, in pool order.</summary>
    public IReadOnlyList<RedisContext> Contexts => _contexts;

    /// <summary>The next context, round-robin. Keep it for the coordinator's lifetime; it is not given back.</summary>
    public RedisContext Rent()
    {
        var next = Interlocked.Increment(ref _next);
        return _contexts[(int)((ulong)next % (ulong)_contexts.Length)];
    }

    /// <summary>
    /// The counters of <c>GET /api/redis/pool-stats</c> (SPEC §3.1 #5), summed over the multiplexers'
    /// interactive connections (<see cref="IConnectionMultiplexer.GetCounters"/>).
    /// </summary>
    public RedisPoolStats Stats()
    {
        var connected = 0;
        var busy = 0;
        long pending = 0, total = 0, failed = 0;
        foreach (var context in _contexts)
        {
            var multiplexer = context.Multiplexer;
            if (multiplexer.IsConnected)
            {
                connected++;
            }

            var counters = multiplexer.GetCounters().Interactive;
            var outstanding = counters.PendingUnsentItems + counters.SentItemsAwaitingResponse;
            if (outstanding > 0)
            {
                busy++;
            }

            pending += outstanding;
            total += counters.OperationCount;
            failed += counters.FailedAsynchronously;
        }

        var breaker = Primary.RedisBreaker.GetSnapshot();
        return new RedisPoolStats
        {
            PoolSize = _contexts.Length,
            Connections = connected,
            Connected = connected > 0,
            Busy = busy,
            Idle = connected - Math.Min(busy, connected),
            PendingCommands = pending,
            TotalCommands = total,
            FailedCommands = failed,
            Timeouts = breaker.Timeouts,
            Reconnects = Interlocked.Read(ref _reconnects),
            ConnectionFailures = Interlocked.Read(ref _connectionFailures),
            Endpoint = _endpoint,
            CircuitBreaker = breaker.State.ToLabel(),
        };
    }

    private void OnRestored(object? sender, ConnectionFailedEventArgs e)
    {
        if (e.ConnectionType == ConnectionType.Interactive)
        {
            Interlocked.Increment(ref _reconnects);
        }
    }

    private void OnFailed(object? sender, ConnectionFailedEventArgs e)
    {
        if (e.ConnectionType == ConnectionType.Interactive)
        {
            Interlocked.Increment(ref _connectionFailures);
        }
    }

    /// <inheritdoc/>
    public async ValueTask DisposeAsync()
    {
        foreach (var context in _contexts)
        {
            context.Multiplexer.ConnectionRestored -= OnRestored;
            context.Multiplexer.ConnectionFailed -= OnFailed;
        }

        await Task.WhenAll(_contexts.Select(c => c.DisposeAsync().AsTask())).ConfigureAwait(false);
    }
}

/// <summary>The body of <c>GET /api/redis/pool-stats</c> (SPEC §3.1 #5).</summary>
public sealed record RedisPoolStats
{
    /// <summary>Configured size (<c>REDIS_POOL_SIZE</c>).</summary>
    public required int PoolSize { get; init; }

    /// <summary>Multiplexers connected now.</summary>
    public required int Connections { get; init; }

    /// <summary>True when at least one multiplexer is connected.</summary>
    public required bool Connected { get; init; }

    /// <summary>Multiplexers with commands queued or awaiting a reply.</summary>
    public required int Busy { get; init; }

    /// <summary>Connected multiplexers with nothing outstanding.</summary>
    public required int Idle { get; init; }

    /// <summary>Commands queued or awaiting a reply, over the pool.</summary>
    public required long PendingCommands { get; init; }

    /// <summary>Commands sent since start, over the pool.</summary>
    public required long TotalCommands { get; init; }

    /// <summary>Commands that failed asynchronously, over the pool.</summary>
    public required long FailedCommands { get; init; }

    /// <summary>Calls through the <c>redis</c> circuit breaker that timed out (the client has no timeout counter of its own).</summary>
    public required long Timeouts { get; init; }

    /// <summary>Interactive connections restored after a failure, over the pool.</summary>
    public required long Reconnects { get; init; }

    /// <summary>Interactive connection failures, over the pool.</summary>
    public required long ConnectionFailures { get; init; }

    /// <summary>The Redis endpoint(s), e.g. <c>redis.prod.example.com:6379</c>.</summary>
    public required string Endpoint { get; init; }

    /// <summary>State of the <c>redis</c> breaker: <c>closed</c>, <c>open</c> or <c>half_open</c>.</summary>
    public required string CircuitBreaker { get; init; }
}
