using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Cfn.Coordination.Redis;

/// <summary>Subscriptions taken while starting, when Redis may fail just then.</summary>
internal static class Subscriptions
{
    /// <summary>
    /// Subscribes <paramref name="handler"/> to <paramref name="channel"/>. The client records the subscription before it
    /// asks the server, and subscribes again by itself when its connection is restored; so a connection that breaks
    /// during the request (a Redis restart or failover while a process starts; seen in the chaos run) is logged, not
    /// thrown: a start must not fail, and the process exit 1, for something the client repairs.
    /// </summary>
    public static async Task SubscribeAsync(ISubscriber subscriber, RedisChannel channel, Action<RedisChannel, RedisValue> handler, ILogger logger)
    {
        try
        {
            await subscriber.SubscribeAsync(channel, handler).ConfigureAwait(false);
        }
        catch (Exception e) when (RedisErrors.IsTransient(e))
        {
            logger.LogWarning("Subscribing to {Channel} met a Redis failure ({Error}); the client subscribes again when its connection is restored",
                (string?)channel, RedisErrors.FirstClause(e));
        }
    }
}
