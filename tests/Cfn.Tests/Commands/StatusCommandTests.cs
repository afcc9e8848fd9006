using Cfn.Commands;
using Cfn.Coordination;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Security;
using Cfn.Tests.Infrastructure;

namespace Cfn.Tests.Commands;

/// <summary><c>cfn status</c> against real coordinators on the test command's redis-server, in a database of its own.</summary>
public sealed class StatusCommandTests
{
    [Fact]
    public async Task Status_BlockingAndIdleCoordinators_TablesShowSwarmAgeAndWhomTheyWaitFor()
    {
        const int db = 6;
        var endpoint = TestRedis.Endpoint;
        await using var redis = await RedisContext.ConnectAsync($"{endpoint},allowAdmin=true,defaultDatabase={db}", new CoordinationOptions());
        await redis.Database.ExecuteAsync("FLUSHDB");
        var keys = new SigningKeys("status-test-secret-0123456789abcdef0123456789");
        var metrics = new Cfn.Coordination.Metrics.CoordinationMetrics(Prometheus.Metrics.NewCustomRegistry());
        await using var parent = await Coordinator.StartAsync(redis, keys, "parent-1", "swarm-a", metrics, runHeartbeatLoop: false);
        await using var validator = await Coordinator.StartAsync(redis, keys, "validator-1", "swarm-a", metrics, runHeartbeatLoop: false);
        await using var checker = await Coordinator.StartAsync(redis, keys, "checker-1", "validators", metrics, runHeartbeatLoop: false);
        using var cts = new CancellationTokenSource();
        var wait = parent.Waiter.WaitForAcksAsync(["validator-1"], "parent-1:validator-1:validation:1:x", TimeSpan.FromSeconds(30), cts.Token);
        await EventuallyAsync(async () => (string?)await redis.Database.StringGetAsync("coordinator:activity:parent-1") is { } raw &&
                                          raw.Contains("blocking", StringComparison.Ordinal), "parent-1 never reported itself blocking");

        // Another process's breakers, one of them open, as that process publishes them.
        var breakers = new Cfn.Coordination.Resilience.CircuitBreakerRegistry(Prometheus.Metrics.NewCustomRegistry());
        var external = breakers.GetOrCreate("external:api.example.com");
        for (var i = 0; i < 3; i++)
        {
            external.RecordFailure(new HttpRequestException("down"));
        }

        _ = breakers.Redis;
        await using (var publisher = new Cfn.Coordination.Resilience.BreakerStatePublisher(breakers, redis.Database, "coordinator-0-17", "coordinator"))
        {
            await publisher.PublishAsync();
        }

        await using var live = new Cfn.Coordination.Resilience.BreakerStatePublisher(breakers, redis.Database, "swarm-manager-5", "swarm-manager");
        await live.PublishAsync();

        var text = await StatusCommand.RenderAsync(redis, new Cfn.Coordination.Recovery.RecoveryOptions());
        await cts.CancelAsync();
        await wait;

        var lines = text.Split('\n').Select(l => l.TrimEnd()).ToList();
        Assert.Contains(lines, l => l.StartsWith("swarm-a", StringComparison.Ordinal) && l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1..] is ["2", "1", "0"]);
        var parentRow = lines.Single(l => l.StartsWith("parent-1 ", StringComparison.Ordinal)).Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(["parent-1", "swarm-a"], parentRow[..2]);
        Assert.Equal("live", parentRow[3]);
        Assert.Equal(["blocking", "validator-1", "parent-1:validator-1:validation:1:x"], parentRow[5..]);
        Assert.Contains(lines, l => l.StartsWith("validator-1 ", StringComparison.Ordinal) && l.Contains(" idle", StringComparison.Ordinal));
        Assert.Contains("SPAWN REQUESTS (0)", text, StringComparison.Ordinal);
        // "validator-1" runs in swarm-a, so it is a coordinator; "checker-1" is a validator: the kind is the swarm's, never the ID's.
        Assert.Contains("COORDINATORS (2) AND VALIDATORS (1)", text, StringComparison.Ordinal);
        Assert.Contains(lines, l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries) is ["checker-1", "validators", _, "live", ..]);
        // A stopped process's breakers are gone; a running one's are listed with their states.
        Assert.Contains("BREAKERS (2)", text, StringComparison.Ordinal);
        Assert.Contains(lines, l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries) is ["swarm-manager-5", "swarm-manager", "external:api.example.com", "open", _]);
        Assert.Contains(lines, l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries) is ["swarm-manager-5", "swarm-manager", "redis", "closed", _]);
        Assert.DoesNotContain("coordinator-0-17", text, StringComparison.Ordinal);
        await redis.Database.ExecuteAsync("FLUSHDB");
    }
}
