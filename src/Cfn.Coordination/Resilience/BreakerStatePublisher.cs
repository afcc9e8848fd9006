using Cfn.Coordination.Background;
using Cfn.Coordination.Redis;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Cfn.Coordination.Resilience;

/// <summary>One process's breakers as published in Redis for <c>cfn status</c>.</summary>
public sealed record BreakerReport(string ProcessId, string Roles, long UpdatedAt, IReadOnlyDictionary<string, string> Breakers);

/// <summary>
/// Breakers live in each process's memory; this writes their states to Redis (<see cref="Keys.Breakers"/>, TTL three
/// periods, indexed in <see cref="Keys.BreakerIndex"/>) on every transition and periodically, so an operator sees every
/// process's breakers with <c>cfn status</c>. A process that dies stops refreshing and drops out.
/// </summary>
public sealed class BreakerStatePublisher : IAsyncDisposable
{
    private readonly CircuitBreakerRegistry _registry;
    private readonly IDatabase _database;
    private readonly string _processId;
    private readonly string _roles;
    private readonly LoopHealth _loops;
    private readonly TimeSpan _period;
    private readonly ILogger _logger;
    private readonly HashSet<CircuitBreaker> _watched = [];
    private readonly BackgroundLoop _loop;

    /// <summary>
    /// Publishes the state of every breaker in <paramref name="registry"/> for <c>cfn status</c>, as process
    /// <paramref name="processId"/> running <paramref name="roles"/>, every <paramref name="period"/> and on each change.
    /// </summary>
    public BreakerStatePublisher(CircuitBreakerRegistry registry, IDatabase database, string processId, string roles, TimeSpan? period = null, ILogger? logger = null,
        LoopHealth? loops = null)
    {
        ArgumentNullException.ThrowIfNull(registry);
        ArgumentNullException.ThrowIfNull(database);
        _registry = registry;
        _database = database;
        _processId = Identity.Ids.RequireName(processId, "processId");
        _roles = roles;
        _period = period ?? TimeSpan.FromSeconds(10);
        _logger = logger ?? Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;
        _loops = loops ?? LoopHealth.Detached();
        _loop = new BackgroundLoop(_loops, LoopNames.BreakerStates, null, _period, _ => PublishOnceAsync(), _logger)
        {
            Schedule = LoopSchedule.AfterPass,
            PassAtStart = true,
        };
    }

    /// <summary>Publishes now, then on every transition and every period.</summary>
    public void Start() => _loop.Start();

    /// <summary>Writes the current states once.</summary>
    public async Task PublishAsync()
    {
        var breakers = _registry.All;
        lock (_watched)
        {
            foreach (var breaker in breakers.Where(_watched.Add))
            {
                breaker.StateChanged += (_, _) => _loop.Wake();
            }
        }

        var now = _registry.TimeProvider.GetUtcNow().ToUnixTimeMilliseconds();
        var report = new BreakerReport(_processId, _roles, now, breakers.ToDictionary(b => b.Name, b => b.State.ToLabel(), StringComparer.Ordinal));
        var ttl = _period * 3;
        var batch = _database.CreateBatch();
        var set = batch.StringSetAsync(Keys.Breakers(_processId), Json.Serialize(report), ttl);
        var index = batch.SortedSetAddAsync(Keys.BreakerIndex, _processId, now);
        var prune = batch.SortedSetRemoveRangeByScoreAsync(Keys.BreakerIndex, double.NegativeInfinity, now - (ttl.TotalMilliseconds * 2));
        batch.Execute();
        await Task.WhenAll(set, index, prune).ConfigureAwait(false);
    }

    /// <summary>Every published report whose key has not expired, by process ID.</summary>
    public static async Task<IReadOnlyList<BreakerReport>> ReadAllAsync(IDatabase database)
    {
        ArgumentNullException.ThrowIfNull(database);
        var ids = (await database.SortedSetRangeByRankAsync(Keys.BreakerIndex, 0, 999).ConfigureAwait(false))
            .Select(v => (string)v!).Where(Identity.Ids.IsValidName).ToList();
        if (ids.Count == 0)
        {
            return [];
        }

        var values = await database.StringGetAsync([.. ids.Select(Keys.Breakers)]).ConfigureAwait(false);
        var reports = new List<BreakerReport>();
        foreach (var value in values)
        {
            if (Json.TryDeserialize<BreakerReport>((string?)value, out var report, out _) && report is not null)
            {
                reports.Add(report);
            }
        }

        return [.. reports.OrderBy(r => r.ProcessId, StringComparer.Ordinal)];
    }

    private async Task PublishOnceAsync()
    {
        try
        {
            await PublishAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (RedisErrors.IsTransient(e))
        {
            // The redis breaker reports the outage itself; the next period tries again.
            _logger.LogDebug("Breaker states not published: {Error}", RedisErrors.FirstClause(e));
        }
    }

    /// <summary>Stops the loop and removes this process's report.</summary>
    public async ValueTask DisposeAsync()
    {
        await _loop.DisposeAsync().ConfigureAwait(false);
        try
        {
            await _database.KeyDeleteAsync(Keys.Breakers(_processId)).ConfigureAwait(false);
            await _database.SortedSetRemoveAsync(Keys.BreakerIndex, _processId).ConfigureAwait(false);
        }
        catch (Exception e) when (RedisErrors.IsTransient(e))
        {
            // expires on its own
        }
    }
}
