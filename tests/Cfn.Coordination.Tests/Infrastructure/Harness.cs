using System.Text.RegularExpressions;
using Cfn.Coordination.Metrics;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Security;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using Prometheus;
using StackExchange.Redis;

namespace Cfn.Coordination.Tests.Infrastructure;

/// <summary>
/// One test's world: a <see cref="RedisContext"/> on the real server, its own metric registry (so counts are exact),
/// captured logs, a signing key, and helpers to start coordinators that are stopped at the end.
/// </summary>
public sealed class Harness : IAsyncDisposable
{
    public const string Secret = "test-secret-0123456789abcdef0123456789abcdef";

    private readonly List<Coordinator> _coordinators = [];
    private readonly ConnectionMultiplexer? _ownMultiplexer;

    private Harness(RedisServer server, CoordinationOptions options, ConnectionMultiplexer? own, TimeProvider? time)
    {
        Server = server;
        Options = options;
        _ownMultiplexer = own;
        Logs = new FakeLogCollector();
        LoggerFactory = Microsoft.Extensions.Logging.LoggerFactory.Create(b =>
            b.SetMinimumLevel(LogLevel.Debug).AddProvider(new FakeLoggerProvider(Logs)));
        Registry = Prometheus.Metrics.NewCustomRegistry();
        Metrics = new CoordinationMetrics(Registry, time);
        Keys = new SigningKeys(Secret);
        Redis = new RedisContext(own ?? server.Multiplexer, options, time: time, loggerFactory: LoggerFactory);
    }

    public RedisServer Server { get; }

    public CoordinationOptions Options { get; }

    public FakeLogCollector Logs { get; }

    public ILoggerFactory LoggerFactory { get; }

    public CollectorRegistry Registry { get; }

    public CoordinationMetrics Metrics { get; }

    public SigningKeys Keys { get; set; }

    public RedisContext Redis { get; }

    public IDatabase Database => Redis.Database;

    /// <summary>A harness on the shared connection.</summary>
    public static Harness Create(RedisServer server, Action<CoordinationOptions>? configure = null, TimeProvider? time = null)
    {
        var options = new CoordinationOptions();
        configure?.Invoke(options);
        options.Validate();
        return new Harness(server, options, null, time);
    }

    /// <summary>A harness with its own connection (its own pub/sub and command stream).</summary>
    public static async Task<Harness> CreateIsolatedAsync(RedisServer server, Action<CoordinationOptions>? configure = null, TimeProvider? time = null)
    {
        var options = new CoordinationOptions();
        configure?.Invoke(options);
        options.Validate();
        var name = TestIds.New("harness");
        return new Harness(server, options, await server.ConnectAsync(name), time) { ClientName = name };
    }

    /// <summary>The Redis client name of an isolated harness's own connections (null on the shared one).</summary>
    public string? ClientName { get; private init; }

    /// <summary>
    /// Has the server close this (isolated) harness's pub/sub connection, as a network drop or a Redis failover would;
    /// the client reconnects and re-subscribes by itself. Returns how many connections were closed.
    /// </summary>
    public async Task<int> KillSubscriptionAsync()
    {
        var name = ClientName ?? throw new InvalidOperationException("only an isolated harness has connections of its own");
        var list = (string?)await Server.Server.ExecuteAsync("CLIENT", "LIST", "TYPE", "pubsub") ?? "";
        var killed = 0;
        foreach (var line in list.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            // id=7 addr=127.0.0.1:5000 laddr=… fd=9 name=harness-… age=3 …
            var id = Regex.Match(line, @"\bid=(\d+)"); // RESP3 replies start with "txt:"
            if (line.Contains($" name={name} ", StringComparison.Ordinal))
            {
                Assert.True(id.Success, $"no client id in: {line}");
                await Server.Server.ExecuteAsync("CLIENT", "KILL", "ID", id.Groups[1].Value);
                killed++;
            }
        }

        return killed;
    }

    public async Task<Coordinator> StartAsync(string? id = null, string? swarmId = null, bool heartbeatLoop = false, SigningKeys? keys = null)
    {
        var coordinator = await Coordinator.StartAsync(
            Redis, keys ?? Keys, id ?? TestIds.New("coord"), swarmId ?? "swarm-test", Metrics, heartbeatLoop);
        lock (_coordinators)
        {
            _coordinators.Add(coordinator);
        }

        return coordinator;
    }

    /// <summary>Messages of every captured log line, oldest first.</summary>
    public IReadOnlyList<string> Messages => Logs.GetSnapshot().Select(r => r.Message).ToList();

    public async ValueTask DisposeAsync()
    {
        Coordinator[] all;
        lock (_coordinators)
        {
            all = [.. _coordinators];
        }

        foreach (var coordinator in all)
        {
            await coordinator.DisposeAsync();
        }

        await Redis.DisposeAsync();
        if (_ownMultiplexer is not null)
        {
            await _ownMultiplexer.DisposeAsync();
        }

        LoggerFactory.Dispose();
    }
}
