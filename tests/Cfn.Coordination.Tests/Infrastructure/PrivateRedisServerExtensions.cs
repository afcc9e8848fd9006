using StackExchange.Redis;

namespace Cfn.Coordination.Tests.Infrastructure;

/// <summary>What only tests need of a <see cref="PrivateRedisServer"/>.</summary>
internal static class PrivateRedisServerExtensions
{
    /// <summary>A connection for the test's own inspection (admin commands allowed).</summary>
    public static Task<ConnectionMultiplexer> ConnectAsync(this PrivateRedisServer server) =>
        ConnectionMultiplexer.ConnectAsync(server.Endpoint + ",allowAdmin=true,abortConnect=false");
}
