using Cfn.Coordination.Background;
using System.Collections.Concurrent;
using Cfn.Coordination.Redis;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Cfn.Coordination.Wakeups;

/// <summary>
/// The process's one pub/sub connection (D3), multiplexed over every coordinator it hosts: each coordinator's channel
/// <c>cfn:events:{id}</c> is subscribed once and its messages are routed to the coordinator's mailboxes.
/// <para>
/// Also runs the slow fallback check (<c>ACK_POLL_INTERVAL_MS</c>), which costs nothing while nothing can have been
/// lost. A cfn ACK always publishes its wake-up in the script that writes it, and pub/sub over one TCP connection
/// loses messages only when that connection breaks; so the check reads (one batched MGET) only (1) the ACKs owed by
/// coordinators that are not known to publish, i.e. not in the registry <c>blocking:coordinators</c> (a TS coordinator
/// in a mixed fleet writes its ACK with a plain SETEX, D13), and (2) after the client reports a connection restored,
/// every missing ACK and force-unblock marker, for two periods (the wake-ups sent while it was down are gone). Which
/// coordinators publish is learnt from their ACK wake-ups and, for the others, from one ZMSCORE per period over the
/// unknown ones, remembered for <see cref="PublisherMemory"/>.
/// </para>
/// </summary>
internal sealed class WakeHub : IAsyncDisposable
{
    private const int FallbackBatchSize = 512;

    /// <summary>How long "publishes its ACK wake-ups" (or not) is believed about a coordinator before it is asked again.</summary>
    internal static readonly TimeSpan PublisherMemory = TimeSpan.FromSeconds(60);

    private readonly ConcurrentDictionary<string, List<CoordinatorMailbox>> _mailboxes = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Publisher> _publishers = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _subscriptionLock = new(1, 1);
    private readonly IConnectionMultiplexer _multiplexer;
    private readonly IDatabase _database;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stopping = new();
    private readonly Task _fallbackLoop;
    private int _fullChecksOwed;

    public WakeHub(IConnectionMultiplexer multiplexer, IDatabase database, TimeSpan fallbackInterval, TimeProvider time, ILogger logger,
        LoopHealth loops)
    {
        _multiplexer = multiplexer;
        _database = database;
        _logger = logger;
        _time = time;
        _multiplexer.ConnectionRestored += OnConnectionRestored;
        // One hub per connection of the pool: the instance tells them apart in readiness.
        var health = loops.Register(LoopNames.AckFallback, "hub-" + Interlocked.Increment(ref s_hubs), fallbackInterval);
        _fallbackLoop = BackgroundLoop.RunPeriodicAsync(health, fallbackInterval, time, CheckFallbackAsync, logger, _stopping.Token);
    }

    /// <summary>Number of fallback MGETs sent (for tests and diagnostics).</summary>
    public long FallbackReads => Interlocked.Read(ref _fallbackReads);

    /// <summary>Number of registry look-ups (ZMSCORE) the fallback check made to learn who publishes.</summary>
    public long PublisherLookups => Interlocked.Read(ref _publisherLookups);

    /// <summary>Number of keys the fallback MGETs read.</summary>
    public long FallbackKeysRead => Interlocked.Read(ref _fallbackKeysRead);

    private long _fallbackReads;
    private long _fallbackKeysRead;
    private long _publisherLookups;

    public async Task<CoordinatorMailbox> RegisterAsync(string coordinatorId)
    {
        var mailbox = new CoordinatorMailbox(coordinatorId);
        await _subscriptionLock.WaitAsync().ConfigureAwait(false);
        try
        {
            var list = _mailboxes.GetOrAdd(coordinatorId, _ => []);
            bool first;
            lock (list)
            {
                first = list.Count == 0;
                list.Add(mailbox);
            }

            if (first)
            {
                await _multiplexer.GetSubscriber()
                    .SubscribeAsync(Keys.Events(coordinatorId), (_, message) => Dispatch(coordinatorId, message))
                    .ConfigureAwait(false);
            }
        }
        finally
        {
            _subscriptionLock.Release();
        }

        return mailbox;
    }

    public async Task UnregisterAsync(CoordinatorMailbox mailbox)
    {
        await _subscriptionLock.WaitAsync().ConfigureAwait(false);
        try
        {
            if (_mailboxes.TryGetValue(mailbox.CoordinatorId, out var list))
            {
                bool last;
                lock (list)
                {
                    list.Remove(mailbox);
                    last = list.Count == 0;
                }

                if (last)
                {
                    _mailboxes.TryRemove(mailbox.CoordinatorId, out _);
                    await _multiplexer.GetSubscriber().UnsubscribeAsync(Keys.Events(mailbox.CoordinatorId)).ConfigureAwait(false);
                }
            }
        }
        finally
        {
            _subscriptionLock.Release();
        }
    }

    /// <summary>The mailboxes of <paramref name="coordinatorId"/> in this process.</summary>
    public IReadOnlyList<CoordinatorMailbox> MailboxesOf(string coordinatorId)
    {
        if (!_mailboxes.TryGetValue(coordinatorId, out var list))
        {
            return [];
        }

        lock (list)
        {
            return [.. list];
        }
    }

    private void Dispatch(string coordinatorId, RedisValue message)
    {
        var text = (string?)message;
        if (text is null)
        {
            return;
        }

        // Parsed once here for every mailbox of the coordinator.
        if (WakeMessage.TryParseAck(text, out var signalId, out var ackerId, out var json))
        {
            // The acker is a cfn coordinator: its ACKs need no polling.
            var now = _time.GetTimestamp();
            if (!_publishers.TryGetValue(ackerId, out var known) || !known.Publishes || known.Expires < now)
            {
                _publishers[ackerId] = new Publisher(true, now + PublisherMemoryTicks);
            }

            foreach (var mailbox in MailboxesOf(coordinatorId))
            {
                mailbox.DeliverAck(signalId, ackerId, json);
            }

            return;
        }

        foreach (var mailbox in MailboxesOf(coordinatorId))
        {
            mailbox.Deliver(text);
        }
    }

    private long PublisherMemoryTicks => (long)(PublisherMemory.TotalSeconds * _time.TimestampFrequency);

    private void OnConnectionRestored(object? sender, ConnectionFailedEventArgs e)
    {
        // Any connection: with RESP3 the wake-ups travel on the interactive one. The next two fallback periods read
        // everything, for the wake-ups published while the client was re-subscribing.
        Volatile.Write(ref _fullChecksOwed, 2);
        _logger.LogWarning("Redis {ConnectionType} connection restored ({Endpoint}); re-checking every wait and inbox",
            e.ConnectionType, e.EndPoint);
        foreach (var list in _mailboxes.Values)
        {
            CoordinatorMailbox[] copy;
            lock (list)
            {
                copy = [.. list];
            }

            foreach (var mailbox in copy)
            {
                mailbox.WakeAll();
            }
        }
    }

    private static int s_hubs;

    private async Task CheckFallbackAsync()
    {
        try
        {
            await CheckAllWaitsAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (e is RedisException or TimeoutException)
        {
            _logger.LogWarning("Redis error in the ACK fallback check: {Error}", e.Message);
        }
    }

    /// <summary>
    /// One fallback period: reads, in batched MGETs, the missing ACKs that a wake-up might not announce (all of them
    /// after a reconnect) and wakes the waits that have something to read.
    /// </summary>
    internal async Task CheckAllWaitsAsync()
    {
        var full = Volatile.Read(ref _fullChecksOwed) > 0;
        if (full)
        {
            Interlocked.Decrement(ref _fullChecksOwed);
        }

        var now = _time.GetTimestamp();
        var keys = new List<RedisKey>();
        var owners = new List<PendingWait>();
        var undecided = new Dictionary<string, List<(RedisKey Key, PendingWait Wait)>>(StringComparer.Ordinal);
        var awaited = new HashSet<string>(StringComparer.Ordinal);
        foreach (var list in _mailboxes.Values)
        {
            CoordinatorMailbox[] copy;
            lock (list)
            {
                copy = [.. list];
            }

            foreach (var wait in copy.SelectMany(m => m.Waits))
            {
                foreach (var (ackerId, key) in wait.Missing)
                {
                    awaited.Add(ackerId);
                    if (full)
                    {
                        keys.Add(key);
                        owners.Add(wait);
                    }
                    else if (!_publishers.TryGetValue(ackerId, out var known) || known.Expires < now)
                    {
                        (undecided.TryGetValue(ackerId, out var pending) ? pending : undecided[ackerId] = []).Add((key, wait));
                    }
                    else if (!known.Publishes)
                    {
                        keys.Add(key);
                        owners.Add(wait);
                    }
                }

                if (full)
                {
                    // A force-unblock whose wake-up was lost: the marker wakes the wait, which then sees it and ends.
                    keys.Add(Keys.Unblock(wait.CoordinatorId));
                    owners.Add(wait);
                }
            }
        }

        // Forget what is out of date and no longer awaited (the map stays as small as the recent peers).
        foreach (var (id, known) in _publishers)
        {
            if (known.Expires < now && !awaited.Contains(id))
            {
                _publishers.TryRemove(id, out _);
            }
        }

        if (undecided.Count > 0)
        {
            await LearnPublishersAsync(undecided, keys, owners, now).ConfigureAwait(false);
        }

        for (var start = 0; start < keys.Count; start += FallbackBatchSize)
        {
            var count = Math.Min(FallbackBatchSize, keys.Count - start);
            var values = await _database.StringGetAsync([.. keys.GetRange(start, count)]).ConfigureAwait(false);
            Interlocked.Increment(ref _fallbackReads);
            Interlocked.Add(ref _fallbackKeysRead, count);
            for (var i = 0; i < values.Length; i++)
            {
                if (!values[i].IsNull)
                {
                    owners[start + i].Wake.Set();
                }
            }
        }
    }

    /// <summary>
    /// Asks the registry which of <paramref name="undecided"/> are cfn coordinators (they publish their ACK
    /// wake-ups); the keys owed by the others join this period's reads.
    /// </summary>
    private async Task LearnPublishersAsync(
        Dictionary<string, List<(RedisKey Key, PendingWait Wait)>> undecided, List<RedisKey> keys, List<PendingWait> owners, long now)
    {
        var ids = undecided.Keys.ToArray();
        var expires = now + PublisherMemoryTicks;
        for (var start = 0; start < ids.Length; start += FallbackBatchSize)
        {
            var batch = ids.AsSpan(start, Math.Min(FallbackBatchSize, ids.Length - start)).ToArray();
            var scores = await _database.SortedSetScoresAsync(Keys.Registry, [.. batch.Select(id => (RedisValue)id)]).ConfigureAwait(false);
            Interlocked.Increment(ref _publisherLookups);
            for (var i = 0; i < batch.Length; i++)
            {
                var publishes = scores[i].HasValue;
                _publishers[batch[i]] = new Publisher(publishes, expires);
                if (!publishes)
                {
                    foreach (var (key, wait) in undecided[batch[i]])
                    {
                        keys.Add(key);
                        owners.Add(wait);
                    }
                }
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        _multiplexer.ConnectionRestored -= OnConnectionRestored;
        await _stopping.CancelAsync().ConfigureAwait(false);
        await _fallbackLoop.ConfigureAwait(false);
        _stopping.Dispose();
        _subscriptionLock.Dispose();
    }

    /// <summary>Whether a coordinator publishes its ACK wake-ups, and until when (timestamp ticks) that is believed.</summary>
    private readonly record struct Publisher(bool Publishes, long Expires);
}
