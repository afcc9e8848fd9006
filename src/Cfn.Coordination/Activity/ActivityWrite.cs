using StackExchange.Redis;

namespace Cfn.Coordination.Activity;

/// <summary>
/// One K7 write as the scripts of <c>lib_activity.lua</c> take it: the record without its time fields, its TTL, the
/// fields that get the Redis time, the earliest known wait deadline (-1: none, and the deadlines index is known to hold
/// none of this coordinator's, so the script skips its ZREM) and the timeout of a wait starting now.
/// <see cref="IndexGeneration"/> is the recorder's count of deadline-adding writes when this one was prepared.
/// </summary>
internal readonly record struct ActivityWrite(string Json, int TtlSeconds, string StampFields, long KnownDeadline, long StartingTimeout, long IndexGeneration = 0)
{
    /// <summary>Whether the script adds or updates this coordinator's deadline in the index.</summary>
    public bool AddsDeadline => KnownDeadline > 0 || StartingTimeout > 0;

    /// <summary>The arguments of <c>activity.lua</c> and <c>wait_begin.lua</c>.</summary>
    public RedisValue[] Arguments(long epoch, string coordinatorId) =>
        [Json, TtlSeconds, StampFields, epoch, coordinatorId, KnownDeadline, StartingTimeout];

    /// <summary>The six trailing arguments of a script that records progress along with its own write.</summary>
    public IEnumerable<RedisValue> TrailingArguments(string coordinatorId) =>
        [Json, TtlSeconds, StampFields, coordinatorId, KnownDeadline, StartingTimeout];
}
