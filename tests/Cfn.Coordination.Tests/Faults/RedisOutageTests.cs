using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using Cfn.Coordination.Acks;
using Cfn.Coordination.Detection;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Signals;
using Cfn.Coordination.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Cfn.Coordination.Tests.Faults;

/// <summary>
/// Redis itself goes away for 10 s and comes back with its data (SPEC D6 "Redis down is not coordinator down", §2.9,
/// §7.13 item 1): no coordinator is declared dead during or after the outage, heartbeat write failures are counted as
/// connection failures, heartbeats resume on their own, and a waiter blocked across the outage is released by an ACK.
/// </summary>
[Collection(FaultsCollection.Name)]
public sealed class RedisOutageTests(ITestOutputHelper output)
{
    [Fact]
    public async Task RedisDown10Seconds_CoordinatorsAndHandlerReconnect_NoFalseDeathAndBlockedWaiterCompletes()
    {
        await using var redis = await PrivateRedisServer.StartAsync(persistent: true);
        var options = new RecoveryOptions
        {
            HeartbeatStaleThreshold = TimeSpan.FromSeconds(2),
            MonitorInterval = TimeSpan.FromMilliseconds(250),
            MaxWarnings = 3,
        };
        var swarm = TestIds.New("swarm");
        // Time is compressed 60-fold (stale 2 s instead of 120 s), so the client's reconnect back-off is compressed too:
        // StackExchange.Redis retries every connectTimeout/2 (default 2.5 s, randomised, growing to 10 s). With the
        // defaults the handler's and the coordinators' clients came back up to 2.5 s apart (one run in eleven: two
        // warnings given, recovered in the very pass that would have declared them dead), and a coordinator whose client is not back within stale +
        // 2 intervals of the handler's is taken for dead (by design: it cannot show it is alive; the fence keeps that
        // safe). In production the 120 s threshold dwarfs the 10 s maximum back-off.
        const string ReconnectFast = ",connectTimeout=1000";
        await using var fleet = await FaultWorld.ConnectAsync(redis.Endpoint, o => o.HeartbeatInterval = TimeSpan.FromMilliseconds(200), ReconnectFast);
        await using var handlerWorld = await FaultWorld.ConnectAsync(redis.Endpoint, extra: ReconnectFast);
        var coordinators = new List<Coordinator>();
        for (var i = 0; i < 5; i++)
        {
            coordinators.Add(await fleet.StartAsync(TestIds.New("coord"), swarm, heartbeatLoop: true));
        }

        var ids = coordinators.Select(c => c.Id).ToList();
        var waiter = coordinators[0];
        var peer = coordinators[1];
        var signalId = $"{waiter.Id}:{peer.Id}:completion:1:{TestIds.New("outage")}";
        var waiting = waiter.Waiter.WaitForAcksAsync([peer.Id], signalId, TimeSpan.FromSeconds(60));
        await EventuallyAsync(() => waiter.Status == "blocking", "the waiter never reported itself blocking", TimeSpan.FromSeconds(20));
        var epochs = new Dictionary<string, string?>();
        await using (var before = await redis.ConnectAsync())
        {
            foreach (var id in ids)
            {
                epochs[id] = await before.GetDatabase().StringGetAsync("coordinator:epoch:" + id);
            }
        }

        var handler = handlerWorld.NewHandler(options, "handler-outage");
        var deaths = new ConcurrentQueue<CoordinatorDeath>();
        handler.Monitor.CoordinatorDied += deaths.Enqueue;
        handler.Start();
        // Before the outage nobody dies: the time a silent coordinator takes to die. A negative check on the Redis clock:
        // no event marks "not declared dead".
        await Task.Delay(options.DeathAfter);
        Assert.Empty(deaths);
        double ConnectionFailures() => ids.Sum(id => fleet.Metrics.HeartbeatFailures.WithLabels(id, "connection", "connection").Value);
        double TimeoutFailures() => ids.Sum(id => fleet.Metrics.HeartbeatFailures.WithLabels(id, "timeout", "timeout").Value);
        Assert.Equal(0, ConnectionFailures());

        // The outage: SIGKILL (data is safe: appendfsync always), 10 s, then the same port and directory again. The
        // length is the scenario (an outage well past the death time), not a wait for something to happen.
        redis.Kill();
        var outage = Stopwatch.StartNew();
        await Task.Delay(TimeSpan.FromSeconds(10));
        var connectionDuringOutage = ConnectionFailures();
        var timeoutDuringOutage = TimeoutFailures();
        Assert.False(waiting.IsCompleted, "the wait ended during the outage");
        await redis.RestartAsync();
        var restartedAtUtc = DateTimeOffset.UtcNow;
        var restartedAtMs = restartedAtUtc.ToUnixTimeMilliseconds();
        var restarted = Stopwatch.StartNew();
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"outage {outage.Elapsed.TotalSeconds:0.0} s; heartbeat failures during it: connection={connectionDuringOutage} timeout={timeoutDuringOutage}"));
        Assert.True(connectionDuringOutage > 0, "heartbeat_failures_total{reason=\"connection\"} did not rise during the outage");

        // Heartbeats resume by themselves: every K1 timestamp moves past the restart.
        await using var inspect = await redis.ConnectAsync();
        var database = inspect.GetDatabase();
        var resumed = new Dictionary<string, TimeSpan>();
        await EventuallyAsync(async () =>
        {
            foreach (var id in ids.Where(id => !resumed.ContainsKey(id)))
            {
                var raw = (string?)await database.StringGetAsync("blocking:heartbeat:" + id);
                if (raw is not null && System.Text.Json.JsonDocument.Parse(raw).RootElement.GetProperty("timestamp").GetInt64() > restartedAtMs)
                {
                    resumed[id] = restarted.Elapsed;
                }
            }

            return resumed.Count == ids.Count;
        }, TimeSpan.FromSeconds(30));

        output.WriteLine("heartbeats resumed after the restart: " + string.Join(", ",
            ids.Select(id => resumed.TryGetValue(id, out var t) ? string.Create(CultureInfo.InvariantCulture, $"{t.TotalMilliseconds:0} ms") : "never")));
        Assert.Equal(ids.Count, resumed.Count);
        Assert.All(resumed.Values, t => Assert.True(t <= TimeSpan.FromSeconds(5), $"a heartbeat resumed only {t.TotalSeconds:0.0} s after the restart"));

        // The ACK written after the restart releases the waiter that blocked across the outage.
        await peer.Acks.AcknowledgeAsync(signalId, waiter.Id, SignalTypes.Completion, null, 0);
        var released = await waiting.WaitAsync(TimeSpan.FromSeconds(15));
        Assert.Equal(AckWaitStatus.Completed, released.Status);
        Assert.Contains(peer.Id, released.Acks.Keys);

        // Nobody is declared dead, during the outage or for stale threshold + 3 intervals (and more) after it. A negative
        // check over a window of the Redis clock: no event marks "not declared dead".
        var quiet = options.HeartbeatStaleThreshold + (3 * options.MonitorInterval) + TimeSpan.FromSeconds(2);
        if (restarted.Elapsed < quiet)
        {
            await Task.Delay(quiet - restarted.Elapsed);
        }

        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"watched {restarted.Elapsed.TotalSeconds:0.0} s after the restart; monitor passes ok={handlerWorld.Recovery.MonitorPasses.WithLabels("ok").Value} redis_unavailable={handlerWorld.Recovery.MonitorPasses.WithLabels("redis_unavailable").Value}"));
        foreach (var line in handlerWorld.Logs.GetSnapshot().Where(r => r.Timestamp >= restartedAtUtc - TimeSpan.FromSeconds(1) &&
                     (r.Message.Contains("Redis reachable again", StringComparison.Ordinal) || r.Message.Contains("Stale heartbeat", StringComparison.Ordinal) ||
                      r.Message.Contains("DEAD", StringComparison.Ordinal) || r.Message.Contains("recovered", StringComparison.Ordinal))))
        {
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  handler +{(line.Timestamp - restartedAtUtc).TotalMilliseconds:0} ms after the restart: {line.Message}"));
        }

        Assert.Empty(deaths);
        Assert.Empty(await inspect.ScanAsync("coordinator:escalation:*"));
        Assert.Empty(await inspect.ScanAsync("coordinator:spawn:*"));
        Assert.Equal(0, handlerWorld.Recovery.DeadCoordinators.WithLabels(swarm).Value);
        Assert.True(handlerWorld.Recovery.MonitorPasses.WithLabels("redis_unavailable").Value > 0, "the handler never noticed the outage");
        foreach (var c in coordinators)
        {
            Assert.False(c.IsSuperseded, c.Id + " was fenced");
            Assert.Equal(epochs[c.Id], (string?)await database.StringGetAsync("coordinator:epoch:" + c.Id));
            Assert.NotNull(await database.SortedSetScoreAsync("blocking:coordinators", c.Id));
        }
    }
}
