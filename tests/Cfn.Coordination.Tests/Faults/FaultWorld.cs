using Cfn.Coordination.Metrics;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Security;
using Cfn.Coordination.Tests.Infrastructure;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using Prometheus;
using StackExchange.Redis;

namespace Cfn.Coordination.Tests.Faults;

/// <summary>
/// One process's view of a <see cref="PrivateRedisServer"/>, as a production process would have it: its own connection
/// (<see cref="RedisContext.ConnectAsync"/>), its own metric registry (so counts are exact), captured logs, and the
/// coordinators and timeout handlers it started, all stopped at disposal even if Redis is gone by then.
/// </summary>
internal sealed class FaultWorld : IAsyncDisposable
{
    private readonly List<Coordinator> _coordinators = [];
    private readonly List<TimeoutHandler> _handlers = [];
    private readonly ILoggerFactory _loggerFactory;

    private FaultWorld(RedisContext redis, ILoggerFactory loggerFactory, FakeLogCollector logs, CollectorRegistry registry)
    {
        Redis = redis;
        _loggerFactory = loggerFactory;
        Logs = logs;
        Registry = registry;
        Metrics = new CoordinationMetrics(registry);
        Recovery = new RecoveryMetrics(registry);
    }

    public RedisContext Redis { get; }

    public IDatabase Database => Redis.Database;

    public FakeLogCollector Logs { get; }

    public CollectorRegistry Registry { get; }

    public CoordinationMetrics Metrics { get; }

    public RecoveryMetrics Recovery { get; }

    public SigningKeys Keys { get; } = new(Harness.Secret);

    /// <summary>
    /// Connects with <c>{endpoint},abortConnect=false{extra}</c>; <paramref name="extra"/> adds StackExchange.Redis
    /// settings (e.g. <c>,connectTimeout=1000</c>, whose half is the base of the client's reconnect back-off).
    /// </summary>
    public static async Task<FaultWorld> ConnectAsync(string endpoint, Action<CoordinationOptions>? configure = null, string extra = "")
    {
        var options = new CoordinationOptions();
        configure?.Invoke(options);
        options.Validate();
        var logs = new FakeLogCollector();
        var loggerFactory = LoggerFactory.Create(b => b.SetMinimumLevel(LogLevel.Debug).AddProvider(new FakeLoggerProvider(logs)));
        var redis = await RedisContext.ConnectAsync(endpoint + ",abortConnect=false" + extra, options, loggerFactory: loggerFactory);
        return new FaultWorld(redis, loggerFactory, logs, Prometheus.Metrics.NewCustomRegistry());
    }

    public async Task<Coordinator> StartAsync(string id, string swarm, bool heartbeatLoop)
    {
        var coordinator = await Coordinator.StartAsync(Redis, Keys, id, swarm, Metrics, heartbeatLoop);
        lock (_coordinators)
        {
            _coordinators.Add(coordinator);
        }

        return coordinator;
    }

    public TimeoutHandler NewHandler(RecoveryOptions options, string handlerId)
    {
        var handler = new TimeoutHandler(Redis, Keys, options, Metrics, Recovery, handlerId);
        _handlers.Add(handler);
        return handler;
    }

    public IReadOnlyList<string> Messages => Logs.GetSnapshot().Select(r => r.Message).ToList();

    public async ValueTask DisposeAsync()
    {
        foreach (var handler in _handlers)
        {
            await handler.DisposeAsync();
        }

        Coordinator[] all;
        lock (_coordinators)
        {
            all = [.. _coordinators];
        }

        foreach (var coordinator in all)
        {
            try
            {
                await coordinator.DisposeAsync();
            }
            catch (Exception e) when (e is RedisException or TimeoutException or ObjectDisposedException)
            {
                // Redis may already be gone; only the resources matter here.
            }
        }

        await Redis.DisposeAsync();
        _loggerFactory.Dispose();
    }
}
