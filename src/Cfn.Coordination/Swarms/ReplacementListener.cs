using Cfn.Coordination.Identity;
using Cfn.Coordination.Redis;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Cfn.Coordination.Swarms;

/// <summary>C2 message: <paramref name="NewCoordinatorId"/> now runs in place of the dead <paramref name="OldCoordinatorId"/>.</summary>
internal sealed record ReplacementNotice(string OldCoordinatorId, string NewCoordinatorId, string SwarmId, long Timestamp);

/// <summary>
/// The "parent coordinator" side of escalation (SPEC §2.13, channels C1/C2): one pattern subscription per coordinator process to
/// <c>swarm:*:coordinator:dead</c> and <c>swarm:*:coordinator:replacement</c>. For a swarm this process has coordinators in,
/// a replacement is logged as <c>Replacement coordinator acknowledged</c> and a death notice as
/// <c>Dead coordinator notice received</c>. Operators may publish the same JSON by hand (the playbook's
/// <c>redis-cli publish</c>); anything malformed is logged and ignored.
/// </summary>
public sealed class ReplacementListener : IAsyncDisposable
{
    private static readonly RedisChannel DeadPattern = Keys.SwarmDeadPattern;
    private static readonly RedisChannel ReplacementPattern = RedisChannel.Pattern(Keys.SwarmPrefix + "*:coordinator:replacement");

    private readonly ISubscriber _subscriber;
    private readonly Func<string, IReadOnlyCollection<string>> _localCoordinatorsOf;
    private readonly ILogger _logger;
    private long _acknowledged;
    private Action<RedisChannel, RedisValue>? _onReplacement;
    private Action<RedisChannel, RedisValue>? _onDead;

    /// <param name="redis">Where to subscribe.</param>
    /// <param name="localCoordinatorsOf">The coordinators this process runs in a swarm (empty: not a parent there).</param>
    public ReplacementListener(RedisContext redis, Func<string, IReadOnlyCollection<string>> localCoordinatorsOf)
    {
        ArgumentNullException.ThrowIfNull(redis);
        _subscriber = redis.Multiplexer.GetSubscriber();
        _localCoordinatorsOf = localCoordinatorsOf;
        _logger = redis.LoggerFactory.CreateLogger<ReplacementListener>();
    }

    /// <summary>Replacements acknowledged so far.</summary>
    public long Acknowledged => Interlocked.Read(ref _acknowledged);

    /// <summary>Subscribes to the replacement notices; from now on each one for a local coordinator is acknowledged.</summary>
    public async Task StartAsync()
    {
        _onReplacement = (channel, message) => OnReplacement(channel.ToString(), message);
        _onDead = (channel, message) => OnDead(channel.ToString(), message);
        await Subscriptions.SubscribeAsync(_subscriber, ReplacementPattern, _onReplacement, _logger).ConfigureAwait(false);
        await Subscriptions.SubscribeAsync(_subscriber, DeadPattern, _onDead, _logger).ConfigureAwait(false);
    }

    private void OnReplacement(string channel, RedisValue message)
    {
        var swarm = SwarmOf(channel);
        if (swarm is null || !Json.TryDeserialize<ReplacementNotice>((string?)message, out var notice, out var error) || notice is null ||
            !Ids.IsValidName(notice.OldCoordinatorId) || !Ids.IsValidName(notice.NewCoordinatorId))
        {
            _logger.LogWarning("Malformed replacement message ignored channel={Channel}: {Error}", channel,
                swarm is null ? "invalid swarm ID" : "expected {oldCoordinatorId, newCoordinatorId} with valid IDs");
            return;
        }

        var parents = _localCoordinatorsOf(swarm);
        if (parents.Count == 0)
        {
            return; // not a parent in that swarm
        }

        Interlocked.Increment(ref _acknowledged);
        _logger.LogInformation("Replacement coordinator acknowledged old={OldCoordinatorId} new={NewCoordinatorId} swarm={SwarmId} by={Parents}",
            notice.OldCoordinatorId, notice.NewCoordinatorId, swarm, string.Join(',', parents));
    }

    private void OnDead(string channel, RedisValue message)
    {
        var swarm = SwarmOf(channel);
        if (swarm is null || _localCoordinatorsOf(swarm).Count == 0)
        {
            return;
        }

        _logger.LogInformation("Dead coordinator notice received swarm={SwarmId} notice={Notice}", swarm,
            ((string?)message ?? "").ReplaceLineEndings(" ") is { Length: > 300 } long_ ? long_[..300] : ((string?)message ?? "").ReplaceLineEndings(" "));
    }

    /// <summary>The swarm ID of <c>swarm:{id}:coordinator:…</c>, or null when it is not a valid ID.</summary>
    private static string? SwarmOf(string channel)
    {
        var parts = channel.Split(':');
        return parts.Length == 4 && Ids.IsValidName(parts[1]) ? parts[1] : null;
    }

    /// <summary>Unsubscribes.</summary>
    public async ValueTask DisposeAsync()
    {
        // Its own handlers only: the process's wake-up hub listens to the same death notices on the same connection.
        await _subscriber.UnsubscribeAsync(ReplacementPattern, _onReplacement).ConfigureAwait(false);
        await _subscriber.UnsubscribeAsync(DeadPattern, _onDead).ConfigureAwait(false);
    }
}
