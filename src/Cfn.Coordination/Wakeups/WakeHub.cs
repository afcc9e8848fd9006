using System.Collections.Concurrent;
using Cfn.Coordination.Redis;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Cfn.Coordination.Wakeups;

/// <summary>
/// The process's one pub/sub connection (D3), multiplexed over every coordinator it hosts: each coordinator's channel
/// <c>cfn:events:{id}</c> is subscribed once and its messages are routed to the coordinator's mailboxes. Also runs
/// the fallback check: one batched MGET per period over the missing ACKs of every wait in the process, so a lost
/// wake-up (or an ACK written by a TS coordinator, which publishes nothing) delays a wait by at most one period.
/// </summary>
internal sealed class WakeHub : IAsyncDisposable
{
    private const int FallbackBatchSize = 512;

    private readonly ConcurrentDictionary<string, List<CoordinatorMailbox>> _mailboxes = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _subscriptionLock = new(1, 1);
    private readonly IConnectionMultiplexer _multiplexer;
    private readonly IDatabase _database;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stopping = new();
    private readonly Task _fallbackLoop;

    public WakeHub(IConnectionMultiplexer multiplexer, IDatabase database, TimeSpan fallbackInterval, TimeProvider time, ILogger logger)
    {
        _multiplexer = multiplexer;
        _database = database;
        _logger = logger;
        _multiplexer.ConnectionRestored += OnConnectionRestored;
        _fallbackLoop = RunFallbackAsync(fallbackInterval, time, _stopping.Token);
    }

    /// <summary>Number of fallback MGETs sent (for tests and diagnostics).</summary>
    public long FallbackReads => Interlocked.Read(ref _fallbackReads);

    private long _fallbackReads;

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

        foreach (var mailbox in MailboxesOf(coordinatorId))
        {
            mailbox.Deliver(text);
        }
    }

    private void OnConnectionRestored(object? sender, ConnectionFailedEventArgs e)
    {
        if (e.ConnectionType != ConnectionType.Subscription)
        {
            return;
        }

        _logger.LogWarning("Redis subscription restored ({Endpoint}); re-checking every wait and inbox", e.EndPoint);
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

    private async Task RunFallbackAsync(TimeSpan interval, TimeProvider time, CancellationToken stopping)
    {
        using var timer = new PeriodicTimer(interval, time);
        try
        {
            while (await timer.WaitForNextTickAsync(stopping).ConfigureAwait(false))
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
        }
        catch (OperationCanceledException)
        {
            // stopping
        }
    }

    /// <summary>One batched read of every missing ACK in the process; wakes the waits that have something to read.</summary>
    internal async Task CheckAllWaitsAsync()
    {
        var keys = new List<RedisKey>();
        var owners = new List<PendingWait>();
        foreach (var list in _mailboxes.Values)
        {
            CoordinatorMailbox[] copy;
            lock (list)
            {
                copy = [.. list];
            }

            foreach (var wait in copy.SelectMany(m => m.Waits))
            {
                foreach (var key in wait.MissingKeys)
                {
                    keys.Add(key);
                    owners.Add(wait);
                }

                // A force-unblock whose wake-up was lost: the marker wakes the wait, which then sees it and ends.
                keys.Add(Keys.Unblock(wait.CoordinatorId));
                owners.Add(wait);
            }
        }

        for (var start = 0; start < keys.Count; start += FallbackBatchSize)
        {
            var count = Math.Min(FallbackBatchSize, keys.Count - start);
            var values = await _database.StringGetAsync([.. keys.GetRange(start, count)]).ConfigureAwait(false);
            Interlocked.Increment(ref _fallbackReads);
            for (var i = 0; i < values.Length; i++)
            {
                if (!values[i].IsNull)
                {
                    owners[start + i].Wake.Set();
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
}
