using StackExchange.Redis;

namespace Cfn.Coordination.Redis;

/// <summary>The Redis server's clock (D5: the one clock for liveness).</summary>
public static class RedisTime
{
    /// <summary>Redis <c>TIME</c> in ms since the epoch.</summary>
    public static async Task<long> NowMsAsync(IDatabase database)
    {
        ArgumentNullException.ThrowIfNull(database);
        var reply = (RedisResult[])(await database.ExecuteAsync("TIME").ConfigureAwait(false))!;
        return ((long)reply[0] * 1000) + ((long)reply[1] / 1000);
    }
}

/// <summary>Redis errors as one short line.</summary>
public static class RedisErrors
{
    /// <summary>The first clause of a StackExchange.Redis message (its timeout text runs to a screenful).</summary>
    public static string FirstClause(Exception exception)
    {
        ArgumentNullException.ThrowIfNull(exception);
        return exception.Message.Split(" - ", 2)[0];
    }
}
