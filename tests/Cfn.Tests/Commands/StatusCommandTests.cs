using Cfn.Commands;
using Cfn.Coordination;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Security;

namespace Cfn.Tests.Commands;

/// <summary><c>cfn status</c> against real coordinators on the test command's redis-server, in a database of its own.</summary>
public sealed class StatusCommandTests
{
    [Fact]
    public async Task Status_BlockingAndIdleCoordinators_TablesShowSwarmAgeAndWhomTheyWaitFor()
    {
        const int db = 6;
        var endpoint = Environment.GetEnvironmentVariable("CFN_TEST_REDIS")
            ?? throw new InvalidOperationException("CFN_TEST_REDIS is not set: run the tests with `bash scripts/test.sh`");
        await using var redis = await RedisContext.ConnectAsync($"{endpoint},allowAdmin=true,defaultDatabase={db}", new CoordinationOptions());
        await redis.Database.ExecuteAsync("FLUSHDB");
        var keys = new SigningKeys("status-test-secret-0123456789abcdef0123456789");
        var metrics = new Cfn.Coordination.Metrics.CoordinationMetrics(Prometheus.Metrics.NewCustomRegistry());
        await using var parent = await Coordinator.StartAsync(redis, keys, "parent-1", "swarm-a", metrics, runHeartbeatLoop: false);
        await using var validator = await Coordinator.StartAsync(redis, keys, "validator-1", "swarm-a", metrics, runHeartbeatLoop: false);
        using var cts = new CancellationTokenSource();
        var wait = parent.Waiter.WaitForAcksAsync(["validator-1"], "parent-1:validator-1:validation:1:x", TimeSpan.FromSeconds(30), cts.Token);
        while ((string?)await redis.Database.StringGetAsync("coordinator:activity:parent-1") is not { } raw || !raw.Contains("blocking", StringComparison.Ordinal))
        {
            await Task.Delay(20);
        }

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
        await redis.Database.ExecuteAsync("FLUSHDB");
    }
}
