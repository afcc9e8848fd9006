using StackExchange.Redis;

namespace Cfn.Tests.Infrastructure;

/// <summary>The test command's redis-server (<c>CFN_TEST_REDIS</c>), and one of its databases opened empty for a test class.</summary>
public static class TestRedis
{
    /// <summary><c>host:port</c> of the test server.</summary>
    public static string Endpoint => Environment.GetEnvironmentVariable("CFN_TEST_REDIS")
        ?? throw new InvalidOperationException("CFN_TEST_REDIS is not set: run the tests with `bash scripts/test.sh`, which starts a private redis-server");

    /// <summary>Connects (admin commands allowed) and flushes database <paramref name="db"/>; dispose the connection after the test.</summary>
    public static async Task<(ConnectionMultiplexer Redis, IServer Server, IDatabase Database)> OpenEmptyAsync(int db)
    {
        var redis = await ConnectionMultiplexer.ConnectAsync($"{Endpoint},allowAdmin=true");
        var server = redis.GetServer(redis.GetEndPoints()[0]);
        await server.FlushDatabaseAsync(db);
        return (redis, server, redis.GetDatabase(db));
    }
}
