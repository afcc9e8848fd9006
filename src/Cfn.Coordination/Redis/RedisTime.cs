using StackExchange.Redis;

namespace Cfn.Coordination.Redis;

/// <summary>The Redis server's clock (D5: the one clock for liveness).</summary>
internal static class RedisTime
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
    /// <summary>
    /// True for the failures of a Redis call that the caller logs and survives (the next pass, retry or check runs as
    /// usual): any <see cref="RedisException"/> (connection lost, timeout, an error reply) and a <see cref="TimeoutException"/>.
    /// Everything else is a bug and goes to the caller's per-pass handler instead.
    /// </summary>
    public static bool IsTransient(Exception exception) => exception is RedisException or TimeoutException;

    /// <summary>True for Redis's <c>LOADING</c> reply: the server is up but still reading its data (AOF/RDB) after a restart.</summary>
    public static bool IsLoading(Exception exception) =>
        exception is RedisServerException && exception.Message.StartsWith("LOADING", StringComparison.Ordinal);

    /// <summary>
    /// Runs <paramref name="action"/>, waiting out Redis's <c>LOADING</c> phase after a restart (up to
    /// <paramref name="patience"/>): a process that starts while Redis reads its data must not crash on it.
    /// </summary>
    public static async Task<T> WhileLoadingAsync<T>(Func<Task<T>> action, TimeProvider time, TimeSpan patience)
    {
        ArgumentNullException.ThrowIfNull(action);
        var deadline = time.GetUtcNow() + patience;
        while (true)
        {
            try
            {
                return await action().ConfigureAwait(false);
            }
            catch (RedisServerException e) when (IsLoading(e) && time.GetUtcNow() < deadline)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(200), time).ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// The first clause of a StackExchange.Redis message (its timeout text runs to a screenful). When the server refused
    /// the credentials, what to do about it follows: StackExchange.Redis reports that only deep in the timeout text
    /// ("Last Connection Exception: AuthenticationFailure") or in an inner exception.
    /// </summary>
    public static string FirstClause(Exception exception)
    {
        ArgumentNullException.ThrowIfNull(exception);
        var first = exception.Message.Split(" - ", 2)[0];
        return IsAuthenticationFailure(exception) ? first + "; " + AuthenticationHint : first;
    }

    /// <summary>What an operator does when Redis refuses cfn's credentials.</summary>
    private const string AuthenticationHint =
        "Redis refused the credentials (NOAUTH or WRONGPASS): give the password, and the ACL user if any, in REDIS_URL " +
        "(redis://user:password@host:6379) or in REDIS_PASSWORD and REDIS_USERNAME";

    /// <summary>True when Redis refused the connection's credentials (anywhere in the exception chain).</summary>
    internal static bool IsAuthenticationFailure(Exception exception)
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            if (e is RedisConnectionException { FailureType: ConnectionFailureType.AuthenticationFailure } ||
                e.Message.Contains("AuthenticationFailure", StringComparison.Ordinal) ||
                e.Message.Contains("NOAUTH", StringComparison.Ordinal) || e.Message.Contains("WRONGPASS", StringComparison.Ordinal))
            {
                return true;
            }
        }

        return false;
    }
}
