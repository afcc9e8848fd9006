using Cfn.Coordination.Redis;
using Cfn.Coordination.Tests.Infrastructure;

namespace Cfn.Coordination.Tests.Redis;

/// <summary>REDIS_POOL_SIZE (D2, SPEC §3.6, §5 #39, #42) against the real server (database 10).</summary>
[Collection(RedisCollection.Name)]
public sealed class RedisPoolTests(RedisServer server)
{
    [Fact]
    public async Task ConnectAsync_PoolOfThree_ThreeConnectionsRoundRobinAndStats()
    {
        await using var h = Harness.Create(server);
        var name = TestIds.New("pool");
        await using var pool = await RedisPool.ConnectAsync(
            $"{server.Endpoint},defaultDatabase={DedicatedDatabase.SignalRetryTests},name={name}", 3, h.Options, loggerFactory: h.LoggerFactory);

        Assert.Equal(3, pool.Size);
        Assert.Equal(3, pool.Contexts.Select(c => c.Multiplexer).Distinct().Count());
        var rented = Enumerable.Range(0, 6).Select(_ => pool.Rent()).ToList();
        Assert.Equal([pool.Contexts[0], pool.Contexts[1], pool.Contexts[2], pool.Contexts[0], pool.Contexts[1], pool.Contexts[2]], rented);
        Assert.Same(pool.Primary, pool.Contexts[0]);
        // One breaker for the process, not one per connection.
        Assert.All(pool.Contexts, c => Assert.Same(pool.Primary.RedisBreaker, c.RedisBreaker));
        Assert.All(pool.Contexts, c => Assert.Equal(DedicatedDatabase.SignalRetryTests, c.Database.Database));

        foreach (var context in pool.Contexts)
        {
            await context.Database.PingAsync();
        }

        var stats = pool.Stats();
        Assert.Equal(3, stats.PoolSize);
        Assert.Equal(3, stats.Connections);
        Assert.True(stats.Connected);
        Assert.Equal(3, stats.Busy + stats.Idle);
        Assert.True(stats.TotalCommands >= 3);
        Assert.True(stats.PendingCommands >= 0);
        Assert.Equal(0, stats.FailedCommands);
        Assert.Equal(0, stats.Reconnects);
        Assert.Equal("closed", stats.CircuitBreaker);
        Assert.Contains(server.Endpoint.Split(':')[^1], stats.Endpoint, StringComparison.Ordinal);

        var clients = (string)(await server.Server.ExecuteAsync("CLIENT", "LIST"))!;
        // Three interactive connections on the server (flags=N; pub/sub connections carry flags=P).
        Assert.Equal(3, clients.Split('\n').Count(l => l.Contains($" name={name} ", StringComparison.Ordinal) && l.Contains(" flags=N ", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task ConnectAsync_SizeOutOfRange_RefusedNamingVariable()
    {
        await using var h = Harness.Create(server);

        var error = await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => RedisPool.ConnectAsync(server.Endpoint, 0, h.Options));

        Assert.Contains("REDIS_POOL_SIZE", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Rent_CoordinatorOnRentedContext_HeartbeatsThroughItsConnection()
    {
        await using var h = Harness.Create(server);
        await using var pool = await RedisPool.ConnectAsync(
            $"{server.Endpoint},defaultDatabase={DedicatedDatabase.SignalRetryTests}", 2, h.Options, loggerFactory: h.LoggerFactory);
        pool.Rent();
        var context = pool.Rent();

        await using var coordinator = await Coordinator.StartAsync(context, h.Keys, TestIds.New("pool"), "swarm-pool", h.Metrics, runHeartbeatLoop: false);

        Assert.Same(pool.Contexts[1], context);
        Assert.True(await pool.Primary.Database.KeyExistsAsync(Keys.Heartbeat(coordinator.Id)));
        Assert.True(pool.Contexts[1].Multiplexer.GetCounters().Interactive.OperationCount > 0);
    }
}
