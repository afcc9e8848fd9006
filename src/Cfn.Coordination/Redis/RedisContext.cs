using Cfn.Coordination.Background;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Resilience;
using Cfn.Coordination.Wakeups;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

// An entry point of the library: public at the namespace root (SPEC D22), its machinery stays in Redis.
namespace Cfn.Coordination;

/// <summary>
/// The process's Redis: one shared multiplexer (D2), the database the keys live in, and the pub/sub wake-up hub
/// that every coordinator hosted in the process shares (D3). Create one per process.
/// </summary>
public sealed class RedisContext : IAsyncDisposable
{
    private readonly bool _ownsMultiplexer;
    private readonly ILogger _logger;
    private string? _primary;

    /// <summary>Wraps an existing multiplexer.</summary>
    public RedisContext(
        IConnectionMultiplexer multiplexer,
        CoordinationOptions options,
        int database = -1,
        TimeProvider? time = null,
        ILoggerFactory? loggerFactory = null,
        bool ownsMultiplexer = false,
        CircuitBreakerRegistry? breakers = null,
        LoopHealth? loops = null)
    {
        ArgumentNullException.ThrowIfNull(multiplexer);
        ArgumentNullException.ThrowIfNull(options);
        Multiplexer = multiplexer;
        Database = multiplexer.GetDatabase(database);
        Options = options;
        Time = time ?? TimeProvider.System;
        LoggerFactory = loggerFactory ?? NullLoggerFactory.Instance;
        Loops = loops ?? LoopHealth.Detached(Time);
        _ownsMultiplexer = ownsMultiplexer;
        Breakers = breakers ?? new CircuitBreakerRegistry(Prometheus.Metrics.NewCustomRegistry(), timeProvider: Time, loggerFactory: LoggerFactory);
        // Only Redis's own failures count against the redis breaker (not, say, a WRONGTYPE reply).
        RedisBreaker = Breakers.GetOrCreate(CircuitBreakerRegistry.RedisName, new CircuitBreakerOptions
        {
            Enabled = Breakers.DefaultOptions.Enabled,
            Timeout = null,
            ShouldHandle = e => e is RedisConnectionException or RedisTimeoutException or TimeoutException or ObjectDisposedException,
        });
        // When the client reports the connection back, trials start at once instead of waiting out an 8 s delay.
        multiplexer.ConnectionRestored += OnConnectionRestored;
        Wakeups = new WakeHub(multiplexer, Database, options.AckFallbackPollInterval, Time,
            LoggerFactory.CreateLogger<Wakeups.WakeHub>(), Loops, options.TsCompat);
        _logger = LoggerFactory.CreateLogger<RedisContext>();
        Replication = new RedisReplication(this, _logger);
        _primary = CurrentPrimary();
        multiplexer.ConfigurationChanged += OnConfigurationChanged;
    }

    /// <summary>Connects with a StackExchange.Redis configuration string (e.g. <c>127.0.0.1:6379,abortConnect=false</c>).</summary>
    public static Task<RedisContext> ConnectAsync(
        string configuration,
        CoordinationOptions options,
        TimeProvider? time = null,
        ILoggerFactory? loggerFactory = null,
        CircuitBreakerRegistry? breakers = null,
        LoopHealth? loops = null) =>
        ConnectAsync(ConfigurationOptions.Parse(configuration), options, time, loggerFactory, breakers, loops);

    /// <summary>
    /// Connects with StackExchange.Redis options as the user gave them (several endpoints, Sentinel's <c>serviceName</c>,
    /// TLS with a trusted CA or a client certificate, an ACL user; SPEC D19). <paramref name="configuration"/> is not
    /// changed (a copy is connected). A multiplexer holds two connections to Redis (commands and pub/sub), with RESP2 or
    /// RESP3 alike (measured with StackExchange.Redis 3.4), so the protocol is left to the user (<c>protocol=resp3</c>).
    /// </summary>
    public static async Task<RedisContext> ConnectAsync(
        ConfigurationOptions configuration,
        CoordinationOptions options,
        TimeProvider? time = null,
        ILoggerFactory? loggerFactory = null,
        CircuitBreakerRegistry? breakers = null,
        LoopHealth? loops = null)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        var config = configuration.Clone();
        // INFO and CONFIG GET (replicas for WAIT, the start-up durability warning) are "admin" to the client library;
        // that guard is client-side only: what the connection may really do is the server's ACL (docs/configuration.md).
        config.AllowAdmin = true;
        // Reconnect within about 2 s of Redis coming back (the client's default backs off to 10 s), so heartbeats
        // resume well inside any sensible stale threshold.
        config.ReconnectRetryPolicy = new ExponentialRetry(250, 2000);
        var multiplexer = await ConnectionMultiplexer.ConnectAsync(config).ConfigureAwait(false);
        return new RedisContext(multiplexer, options, config.DefaultDatabase ?? -1, time, loggerFactory, ownsMultiplexer: true, breakers, loops)
        {
            ViaSentinel = !string.IsNullOrEmpty(config.ServiceName),
        };
    }

    /// <summary>The shared multiplexer.</summary>
    public IConnectionMultiplexer Multiplexer { get; }

    /// <summary>The database all keys live in.</summary>
    public IDatabase Database { get; }

    /// <summary>Protocol settings.</summary>
    public CoordinationOptions Options { get; }

    /// <summary>Local clock (timeouts, signal timestamps); liveness uses the Redis clock instead (D5).</summary>
    public TimeProvider Time { get; }

    /// <summary>Where components get their loggers.</summary>
    public ILoggerFactory LoggerFactory { get; }

    internal WakeHub Wakeups { get; }

    /// <summary>The process's background loops (shared by the contexts of a pool): readiness and <c>background_loop_*</c>.</summary>
    public LoopHealth Loops { get; }

    /// <summary>The process's circuit breakers (<c>circuit_breaker_state</c>).</summary>
    public CircuitBreakerRegistry Breakers { get; }

    /// <summary>The <c>redis</c> breaker: heartbeats and the heartbeat monitor go through it (SPEC §2.14).</summary>
    public CircuitBreaker RedisBreaker { get; }

    /// <summary>Reached through Sentinel (<c>serviceName=</c>): the primary is expected to have replicas (SPEC D19).</summary>
    internal bool ViaSentinel { get; init; }

    /// <summary>Replicas and fencing-write confirmation (SPEC D19).</summary>
    internal RedisReplication Replication { get; }

    /// <summary>
    /// Raised when another server became the primary (a Sentinel failover): writes since the last confirmed one may be
    /// lost, so waits are re-checked and the heartbeat monitor counts staleness afresh (SPEC D19). Arguments: the old
    /// and the new primary's endpoint.
    /// </summary>
    internal event Action<string, string>? PrimaryChanged;

    /// <summary>
    /// Warnings about the server's settings that could drop coordination state: an evicting <c>maxmemory-policy</c>, or a
    /// primary with replicas and no persistence. A process logs each at start (SPEC D19). Empty when all is well.
    /// </summary>
    public Task<IReadOnlyList<string>> CheckDurabilityAsync() => Replication.DurabilityWarningsAsync();

    private void OnConnectionRestored(object? sender, ConnectionFailedEventArgs e)
    {
        RedisBreaker.MoveToHalfOpenNow();
        CheckPrimary();
    }

    private void OnConfigurationChanged(object? sender, EndPointEventArgs e) => CheckPrimary();

    private void CheckPrimary()
    {
        if (CurrentPrimary() is not { } now)
        {
            return;
        }

        var old = Interlocked.Exchange(ref _primary, now);
        if (old is null || old == now)
        {
            return;
        }

        _logger.LogWarning("Redis primary changed from {OldPrimary} to {NewPrimary}: every open wait is re-checked and heartbeat staleness counts afresh",
            old, now);
        Replication.Forget();
        // Failures against the old primary may have opened the redis breaker: heartbeats must reach the new one now,
        // not after the breaker's delay (that delay made a coordinator look dead once in a failover test).
        RedisBreaker.MoveToHalfOpenNow();
        Wakeups.RecheckAll("primary changed");
        PrimaryChanged?.Invoke(old, now);
    }

    private string? CurrentPrimary() =>
        Multiplexer.GetServers().FirstOrDefault(s => s.IsConnected && !s.IsReplica && s.ServerType != ServerType.Sentinel)?.EndPoint is { } endpoint
            ? EndPointCollection.ToString(endpoint)
            : null;

    /// <inheritdoc/>
    public async ValueTask DisposeAsync()
    {
        Multiplexer.ConnectionRestored -= OnConnectionRestored;
        Multiplexer.ConfigurationChanged -= OnConfigurationChanged;
        await Wakeups.DisposeAsync().ConfigureAwait(false);
        if (_ownsMultiplexer)
        {
            await Multiplexer.DisposeAsync().ConfigureAwait(false);
        }
    }
}
