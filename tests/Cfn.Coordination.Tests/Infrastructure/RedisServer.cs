using StackExchange.Redis;

namespace Cfn.Coordination.Tests.Infrastructure;

/// <summary>
/// The real redis-server the test command started (<c>CFN_TEST_REDIS=host:port</c>, set by <c>scripts/test.sh</c>).
/// There is no fallback: a test that needs Redis fails loudly without one.
/// </summary>
public sealed class RedisServer : IAsyncLifetime
{
    public string Endpoint { get; private set; } = "";

    public ConnectionMultiplexer Multiplexer { get; private set; } = null!;

    public IDatabase Database => Multiplexer.GetDatabase();

    public IServer Server => Multiplexer.GetServer(Multiplexer.GetEndPoints()[0]);

    public async Task InitializeAsync()
    {
        Endpoint = Environment.GetEnvironmentVariable("CFN_TEST_REDIS")
            ?? throw new InvalidOperationException(
                "CFN_TEST_REDIS is not set: run the tests with `bash scripts/test.sh`, which starts a private redis-server");
        Multiplexer = await ConnectionMultiplexer.ConnectAsync($"{Endpoint},allowAdmin=true,abortConnect=false");
    }

    public async Task DisposeAsync() => await Multiplexer.DisposeAsync();

    /// <summary>The same view of another server (e.g. a test's own redis-server); dispose it when done.</summary>
    public static async Task<RedisServer> ConnectToAsync(string endpoint)
    {
        var server = new RedisServer { Endpoint = endpoint };
        server.Multiplexer = await ConnectionMultiplexer.ConnectAsync($"{endpoint},allowAdmin=true,abortConnect=false");
        return server;
    }

    /// <summary>A fresh multiplexer (for tests that need their own connection, e.g. their own pub/sub).</summary>
    public Task<ConnectionMultiplexer> ConnectAsync(string? clientName = null) =>
        ConnectionMultiplexer.ConnectAsync($"{Endpoint},allowAdmin=true,abortConnect=false" + (clientName is null ? "" : $",name={clientName}"));
}

[CollectionDefinition(Name)]
public sealed class RedisCollection : ICollectionFixture<RedisServer>
{
    public const string Name = "redis";
}

/// <summary>Tests that read server-wide counters (DBSIZE, INFO commandstats) run alone, after the parallel ones.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class IsolatedRedisCollection : ICollectionFixture<RedisServer>
{
    public const string Name = "redis-isolated";
}
