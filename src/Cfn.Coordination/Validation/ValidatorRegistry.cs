using Cfn.Coordination.Identity;
using Cfn.Coordination.Redis;
using StackExchange.Redis;

namespace Cfn.Coordination.Validation;

/// <summary>
/// The live validators (<c>validator:registry</c>, a sorted set scored by the Redis time a validator last reported,
/// D5): validators report themselves periodically, coordinators pick the fresh ones. Entries older than the retention
/// are trimmed on every write and the set expires one retention after its last write.
/// </summary>
public sealed class ValidatorRegistry
{
    /// <summary>Default retention (the statistics window).</summary>
    public static readonly TimeSpan DefaultRetention = TimeSpan.FromMilliseconds(3_600_000);

    private readonly RedisContext _redis;
    private readonly long _retentionMs;

    /// <summary>Creates the registry view.</summary>
    /// <param name="redis">The process's Redis.</param>
    /// <param name="retention">How long an entry is kept after its last report (<see cref="DefaultRetention"/> when null).</param>
    public ValidatorRegistry(RedisContext redis, TimeSpan? retention = null)
    {
        ArgumentNullException.ThrowIfNull(redis);
        _redis = redis;
        var window = retention ?? DefaultRetention;
        ArgumentOutOfRangeException.ThrowIfLessThan(window, TimeSpan.FromSeconds(1), nameof(retention));
        _retentionMs = (long)window.TotalMilliseconds;
    }

    /// <summary>Marks <paramref name="validatorId"/> live now (Redis clock).</summary>
    /// <exception cref="InvalidIdException">The ID is invalid; nothing was written.</exception>
    public async Task RegisterAsync(string validatorId)
    {
        Ids.RequireName(validatorId, "validatorId");
        await _redis.Database.ScriptEvaluateAsync(
            RedisScripts.ValidatorRecord,
            [Keys.ValidatorDurations(validatorId), Keys.Validators, Keys.ValidatorsSeen],
            [validatorId, string.Empty, 0, "0", _retentionMs, 1, string.Empty]).ConfigureAwait(false);
    }

    /// <summary>Removes <paramref name="validatorId"/> (a graceful stop), so coordinators stop picking it at once.</summary>
    public async Task UnregisterAsync(string validatorId)
    {
        Ids.RequireName(validatorId, "validatorId");
        await _redis.Database.SortedSetRemoveAsync(Keys.Validators, validatorId).ConfigureAwait(false);
    }

    /// <summary>The validators that reported within <paramref name="freshWithin"/> (Redis clock), freshest first.</summary>
    public async Task<IReadOnlyList<string>> LiveAsync(TimeSpan freshWithin)
    {
        var now = await RedisTime.NowMsAsync(_redis.Database).ConfigureAwait(false);
        var ids = await _redis.Database.SortedSetRangeByScoreAsync(
            Keys.Validators, now - (long)freshWithin.TotalMilliseconds, double.PositiveInfinity, order: Order.Descending)
            .ConfigureAwait(false);
        return [.. ids.Select(v => (string)v!).Where(Ids.IsValidName)];
    }
}
