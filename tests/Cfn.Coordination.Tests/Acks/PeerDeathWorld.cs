using System.Text.RegularExpressions;
using Cfn.Coordination.Detection;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Signals;
using Cfn.Coordination.Tests.Infrastructure;
using StackExchange.Redis;

namespace Cfn.Coordination.Tests.Acks;

/// <summary>
/// One D18 test's world on database <see cref="DedicatedDatabase.PeerDeathTests"/> (flushed before and after): the
/// waiting side on a connection of its own (so the test can drop its notices or its connection without touching other
/// tests), and the recovery side (heartbeat monitor, escalation) on the shared one, like a timeout handler elsewhere.
/// </summary>
internal sealed class PeerDeathWorld : IAsyncDisposable
{
    private const int Db = DedicatedDatabase.PeerDeathTests;

    private readonly RedisServer _server;
    private readonly List<Coordinator> _coordinators = [];

    private PeerDeathWorld(RedisServer server, Harness h, ConnectionMultiplexer own, string clientName)
    {
        _server = server;
        H = h;
        Own = own;
        ClientName = clientName;
        Redis = new RedisContext(own, h.Options, database: Db, loggerFactory: h.LoggerFactory);
        Recovery = new RedisContext(server.Multiplexer, h.Options, database: Db, loggerFactory: h.LoggerFactory);
        RecoveryMetrics = new RecoveryMetrics(h.Registry);
    }

    public Harness H { get; }

    /// <summary>The waiting side's own multiplexer.</summary>
    public ConnectionMultiplexer Own { get; }

    public string ClientName { get; }

    /// <summary>The waiting side (and the replacement, which runs like any coordinator).</summary>
    public RedisContext Redis { get; }

    /// <summary>The timeout handler's side.</summary>
    public RedisContext Recovery { get; }

    public RecoveryMetrics RecoveryMetrics { get; }

    public IDatabase Database => Redis.Database;

    public string Swarm { get; } = TestIds.New("swarm");

    /// <param name="fallback">The waiters' fallback period: long to show that the notice alone did it.</param>
    public static async Task<PeerDeathWorld> CreateAsync(RedisServer server, TimeSpan fallback)
    {
        var h = Harness.Create(server, o =>
        {
            o.AckFallbackPollInterval = fallback;
            o.HeartbeatInterval = TimeSpan.FromMilliseconds(100); // live coordinators stay fresh for the fast monitor
        });
        await server.Server.FlushDatabaseAsync(Db);
        var name = TestIds.New("d18");
        return new PeerDeathWorld(server, h, await server.ConnectAsync(name), name);
    }

    /// <summary>Starts a coordinator of the world's swarm; live ones heartbeat every 100 ms.</summary>
    public async Task<Coordinator> StartAsync(string prefix, bool heartbeat = true, string? id = null)
    {
        var coordinator = await Coordinator.StartAsync(Redis, H.Keys, id ?? TestIds.New(prefix), Swarm, H.Metrics, heartbeat);
        _coordinators.Add(coordinator);
        return coordinator;
    }

    /// <summary>
    /// Crashes <paramref name="peer"/> (no more heartbeats, nothing removed) and runs the real heartbeat monitor, with
    /// the real escalation when <paramref name="escalate"/>, until it is declared dead.
    /// </summary>
    public async Task<CoordinatorDeath> KillAsync(Coordinator peer, bool escalate)
    {
        await peer.AbandonAsync();
        var options = RecoveryKit.FastOptions();
        options.EnableAutoEscalation = escalate;
        var escalation = new EscalationService(Recovery, H.Keys, options, RecoveryMetrics, new CoordinatorCleanup(Recovery, options, RecoveryMetrics));
        await using var monitor = new HeartbeatMonitor(Recovery, options, H.Metrics, RecoveryMetrics, escalate ? escalation : null, TestIds.New("monitor"));
        var (death, _) = await RecoveryKit.RunUntilDeadAsync(H, monitor, peer.Id, TimeSpan.FromSeconds(20));
        Assert.True(death is not null, $"{peer.Id} was not declared dead");
        if (escalate)
        {
            Assert.Equal(EscalationOutcome.Escalated, death.Escalation?.Outcome);
        }

        return death;
    }

    /// <summary>Takes the next signal from <paramref name="receiver"/>'s inbox (it is ACKed before it is handed out).</summary>
    public static async Task<ReceivedSignal> ReceiveOneAsync(Coordinator receiver)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        await foreach (var received in receiver.Inbox.ReadAllAsync(cts.Token))
        {
            return received;
        }

        throw new TimeoutException($"{receiver.Id} received nothing");
    }

    /// <summary>Waits until <paramref name="waiter"/> has a running wait (announced and asleep).</summary>
    public static async Task WaitingAsync(Coordinator waiter) =>
        Assert.True(await EventuallyAsync(() => Task.FromResult(waiter.Status == "blocking"), TimeSpan.FromSeconds(10)),
            $"{waiter.Id} never started waiting");

    /// <summary>The ID a signal gets when handed from <paramref name="deadId"/> to <paramref name="newId"/> (BRIEF decision 2).</summary>
    public static string HandedOverId(string messageId, string deadId, string newId)
    {
        var parts = messageId.Split(':');
        Assert.Equal(deadId, parts[1]);
        parts[1] = newId;
        return string.Join(':', parts);
    }

    /// <summary>Stops the waiting side hearing death notices: they are lost for it from now on.</summary>
    public Task DropNoticesAsync() => Own.GetSubscriber().UnsubscribeAsync(Keys.SwarmDeadPattern);

    /// <summary>Has the server close every connection of the waiting side (a network drop); the client reconnects.</summary>
    public async Task<int> KillConnectionsAsync()
    {
        var list = (string?)await _server.Server.ExecuteAsync("CLIENT", "LIST") ?? "";
        var killed = 0;
        foreach (var line in list.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var id = Regex.Match(line, @"\bid=(\d+)");
            if (id.Success && line.Contains($" name={ClientName} ", StringComparison.Ordinal))
            {
                await _server.Server.ExecuteAsync("CLIENT", "KILL", "ID", id.Groups[1].Value);
                killed++;
            }
        }

        return killed;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var coordinator in _coordinators)
        {
            await coordinator.DisposeAsync();
        }

        await Redis.DisposeAsync();
        await Recovery.DisposeAsync();
        await Own.DisposeAsync();
        await H.DisposeAsync();
        await _server.Server.FlushDatabaseAsync(Db);
    }
}
