using Cfn.Coordination.Identity;
using Cfn.Coordination.Redis;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Cfn.Coordination.Recovery;

/// <summary>
/// Ends running waits from outside (SPEC §3.1 #6): a marker <c>blocking:unblock:{id}</c> holding the Redis time of the
/// request (TTL 300 s) plus a wake-up on the coordinator's channel. The coordinator's wait ends at once with status
/// <c>forced</c> and its partial result; a wait that missed the wake-up still sees the marker on its next read, and
/// waits started after the request are not affected. Cleanup removes the marker.
/// </summary>
internal sealed class ForceUnblocker(RedisContext redis)
{
    /// <summary>Marker lifetime.</summary>
    public static readonly TimeSpan MarkerTtl = TimeSpan.FromSeconds(300);

    private readonly ILogger _logger = redis.LoggerFactory.CreateLogger<ForceUnblocker>();

    /// <summary>Unblocks one coordinator; true when it had a running wait.</summary>
    public async Task<bool> UnblockAsync(string coordinatorId)
    {
        Ids.RequireName(coordinatorId, "coordinatorId");
        var database = redis.Database;
        // Whether it is blocking is read before the wake-up: a woken wait ends at once and leaves coordinator:deadlines.
        var blocking = await database.SortedSetScoreAsync(Keys.Deadlines, coordinatorId).ConfigureAwait(false) is not null;
        var now = await RedisTime.NowMsAsync(database).ConfigureAwait(false);
        // Marker and wake-up in one MULTI: a crash between them would leave a marker that nothing announces (the
        // fallback check reads markers only after a reconnect).
        var both = database.CreateTransaction();
        _ = both.StringSetAsync(Keys.Unblock(coordinatorId), now, MarkerTtl);
        _ = both.PublishAsync(Keys.Events(coordinatorId), "unblock");
        await both.ExecuteAsync().ConfigureAwait(false);
        _logger.LogWarning("Force unblock requested coordinator={CoordinatorId} wasBlocking={Blocking}", coordinatorId, blocking);
        return blocking;
    }

    /// <summary>Unblocks every coordinator that is blocking now; returns their IDs.</summary>
    public async Task<IReadOnlyList<string>> UnblockAllAsync()
    {
        var blocking = await redis.Database.SortedSetRangeByRankAsync(Keys.Deadlines).ConfigureAwait(false);
        var unblocked = new List<string>();
        foreach (var member in blocking)
        {
            var id = (string)member!;
            if (Ids.IsValidName(id))
            {
                await UnblockAsync(id).ConfigureAwait(false);
                unblocked.Add(id);
            }
        }

        return unblocked;
    }
}
