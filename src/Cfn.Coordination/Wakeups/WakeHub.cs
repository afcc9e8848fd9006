using Cfn.Coordination.Background;
using System.Collections.Concurrent;
using System.Globalization;
using Cfn.Coordination.Identity;
using Cfn.Coordination.Recovery;
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
/// <para>
/// Waits survive a peer's death (D18): one pattern subscription to <c>swarm:*:coordinator:dead</c> (C1) per process; a
/// notice is checked against Redis (K8 record, epoch, registry; one round trip per notice) and the peer's fate (follow
/// its replacement, or dead with nothing coming) is posted to every wait awaiting it. A dead peer leaves the registry,
/// so the fallback check reads its ACKs; it also reads its K8 record in the same MGET (and its epoch when it has one), which catches a lost
/// notice. Peers in the registry cost nothing (D3): an idle wait on live cfn peers still sends no command.
/// </para>
/// </summary>
internal sealed class WakeHub : IAsyncDisposable
{
    private const int FallbackBatchSize = 512;

    /// <summary>How long "publishes its ACK wake-ups" (or not) is believed about a coordinator before it is asked again.</summary>
    internal static readonly TimeSpan PublisherMemory = TimeSpan.FromSeconds(60);

    /// <summary>
    /// How long a confirmed death notice is kept for waits that start later (a <c>no_replacement</c> death leaves no
    /// record in Redis to find it by); at least as long as any such wait is still awaiting the peer.
    /// </summary>
    internal static readonly TimeSpan FateMemory = TimeSpan.FromMinutes(15);

    private readonly ConcurrentDictionary<string, List<CoordinatorMailbox>> _mailboxes = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Publisher> _publishers = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _subscriptionLock = new(1, 1);
    private readonly IConnectionMultiplexer _multiplexer;
    private readonly IDatabase _database;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<string, KnownFate> _fates = new(StringComparer.Ordinal);
    private readonly BackgroundLoop _fallbackLoop;
    private Action<RedisChannel, RedisValue>? _onDeathNotice;
    private int _fullChecksOwed;

    // CFN_TS_COMPAT: a TS peer's ACK is a plain SETEX with no wake-up (D13). When the server sends keyspace notifications
    // for string commands, each peer known not to publish gets one pattern subscription to its own ACK keys
    // (__keyspace@{db}__:blocking:ack:{peer}:*), so only writes of those peers reach this process; cfn ACKs, which
    // publish, cost nothing more. Without notifications the fallback check reads them, as before.
    private readonly bool _tsCompat;
    private readonly ConcurrentDictionary<string, RedisChannel> _tsAckSubscriptions = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, RedisChannel> _tsSignalSubscriptions = new(StringComparer.Ordinal);
    private Action<RedisChannel, RedisValue>? _onTsAckWritten;
    private int _keyspaceState; // 0 not asked yet, 1 on, 2 off
    private long _keyspaceAskedAt;

    public WakeHub(IConnectionMultiplexer multiplexer, IDatabase database, TimeSpan fallbackInterval, TimeProvider time, ILogger logger,
        LoopHealth loops, bool tsCompat = false)
    {
        _multiplexer = multiplexer;
        _database = database;
        _tsCompat = tsCompat;
        _logger = logger;
        _time = time;
        _multiplexer.ConnectionRestored += OnConnectionRestored;
        // One hub per connection of the pool: the instance tells them apart in readiness.
        _fallbackLoop = new BackgroundLoop(loops, LoopNames.AckFallback, "hub-" + Interlocked.Increment(ref s_hubs), fallbackInterval,
            _ => CheckFallbackAsync(), logger, time)
        {
            // With CFN_TS_COMPAT a wait on a peer not yet known cuts the sleep short (WaitStarted); Wake needs this schedule.
            Schedule = tsCompat ? LoopSchedule.AfterPass : LoopSchedule.FixedRate,
        };
        _fallbackLoop.Start();
    }

    /// <summary>Number of fallback MGETs sent (for tests and diagnostics).</summary>
    public long FallbackReads => Interlocked.Read(ref _fallbackReads);

    /// <summary>Number of registry look-ups (ZMSCORE) the fallback check made to learn who publishes.</summary>
    public long PublisherLookups => Interlocked.Read(ref _publisherLookups);

    /// <summary>Number of keys the fallback MGETs read.</summary>
    public long FallbackKeysRead => Interlocked.Read(ref _fallbackKeysRead);

    /// <summary>
    /// Raised for each death notice Redis bears out, after the waits awaiting the peer were told: a work loop that waits
    /// for something other than an ACK (a validator's verdict, after its ACK) follows the peer's fate too (D18). Handlers
    /// run on the notice's thread and must be short.
    /// </summary>
    public event Action<PeerFate>? PeerFateConfirmed;

    /// <summary>
    /// The fate of <paramref name="peerId"/> from a death notice this process confirmed within the last
    /// <see cref="FateMemory"/>, or null.
    /// </summary>
    public PeerFate? ConfirmedFate(string peerId) =>
        _fates.TryGetValue(peerId, out var known) && known.Expires >= _time.GetTimestamp()
            ? Resolve(peerId, null, null, known.Notice, inRegistry: false)
            : null;

    /// <summary>Number of this process's coordinators whose K2 key it watches through keyspace notifications (TS signals).</summary>
    public int TsSignalSubscriptions => _tsSignalSubscriptions.Count;

    /// <summary>The keyspace channel of <paramref name="receiverId"/>'s K2 key.</summary>
    private RedisChannel TsSignalChannel(string receiverId) =>
        RedisChannel.Literal($"__keyspace@{_database.Database}__:{(string?)Keys.Signal(receiverId)}");

    /// <summary>Number of TS peers whose ACK keys this process watches through keyspace notifications.</summary>
    public int TsAckSubscriptions => _tsAckSubscriptions.Count;

    /// <summary>Number of waits woken by a keyspace notification of a TS peer's ACK write.</summary>
    public long TsAckNotifications => Interlocked.Read(ref _tsAckNotifications);

    private long _tsAckNotifications;

    /// <summary>
    /// A wait starts (called by the waiter with CFN_TS_COMPAT). A peer not yet known to publish or not may be a TS
    /// coordinator: the fallback check runs now instead of at its next period, so a TS peer is learnt, and its ACK keys
    /// watched, before its ACK is likely to come. Costs nothing when every peer is known.
    /// </summary>
    public void WaitStarted(PendingWait wait)
    {
        if (!_tsCompat || Volatile.Read(ref _keyspaceState) == 2)
        {
            return;
        }

        var now = _time.GetTimestamp();
        foreach (var (ackerId, _) in wait.Missing)
        {
            if (!_publishers.TryGetValue(ackerId, out var known) || known.Expires < now)
            {
                _fallbackLoop.Wake();
                return;
            }
        }
    }

    /// <summary>Number of death notices (C1) this process confirmed against Redis and routed to its waits.</summary>
    public long DeathNoticesConfirmed => Interlocked.Read(ref _deathNoticesConfirmed);

    private long _fallbackReads;
    private long _fallbackKeysRead;
    private long _publisherLookups;
    private long _deathNoticesConfirmed;

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
                if (_tsCompat && await KeyspaceNotificationsAsync().ConfigureAwait(false))
                {
                    // A TS sender writes only K2 and publishes nothing: its write wakes the inbox, which takes the signal
                    // at once instead of at its next idle look. A cfn send's own K2 write wakes it too, together with
                    // its publish (one wake-up: the signal coalesces).
                    var channel = TsSignalChannel(coordinatorId);
                    _tsSignalSubscriptions[coordinatorId] = channel;
                    await _multiplexer.GetSubscriber().SubscribeAsync(channel, (_, message) =>
                    {
                        if (string.Equals((string?)message, "set", StringComparison.Ordinal))
                        {
                            foreach (var mailbox in MailboxesOf(coordinatorId))
                            {
                                mailbox.InboxWake.Set();
                            }
                        }
                    }).ConfigureAwait(false);
                }
            }

            if (_onDeathNotice is null)
            {
                // One pattern subscription for every swarm's C1 notices, taken with the first coordinator (a process
                // without coordinators has no waits to tell).
                _onDeathNotice = (_, message) => OnDeathNotice(message);
                await _multiplexer.GetSubscriber().SubscribeAsync(Keys.SwarmDeadPattern, _onDeathNotice).ConfigureAwait(false);
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
                    if (_tsSignalSubscriptions.TryRemove(mailbox.CoordinatorId, out var channel))
                    {
                        await _multiplexer.GetSubscriber().UnsubscribeAsync(channel).ConfigureAwait(false);
                    }
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
        if (message.IsNull)
        {
            return;
        }

        // Parsed once here for every mailbox of the coordinator, from the bytes received (no string of the whole message).
        if (WakeMessage.TryParseAck(((ReadOnlyMemory<byte>)message).Span, out var signalId, out var ackerId, out var json))
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

        var text = (string)message!;
        foreach (var mailbox in MailboxesOf(coordinatorId))
        {
            mailbox.Deliver(text);
        }
    }

    private long PublisherMemoryTicks => (long)(PublisherMemory.TotalSeconds * _time.TimestampFrequency);

    private long FateMemoryTicks => (long)(FateMemory.TotalSeconds * _time.TimestampFrequency);

    private void OnConnectionRestored(object? sender, ConnectionFailedEventArgs e)
    {
        // Any connection: with RESP3 the wake-ups travel on the interactive one.
        _logger.LogWarning("Redis {ConnectionType} connection restored ({Endpoint}); re-checking every wait and inbox",
            e.ConnectionType, e.EndPoint);
        RecheckAll("connection restored");
    }

    /// <summary>
    /// Re-checks every wait and inbox of this connection: after a reconnect (wake-ups published while the client was
    /// re-subscribing are lost) or a failover (the new primary may lack recent writes, ACKs among them). The next two
    /// fallback periods read every missing ACK, and every mailbox is woken to re-read its inbox.
    /// </summary>
    internal void RecheckAll(string reason)
    {
        Volatile.Write(ref _fullChecksOwed, 2);
        _logger.LogDebug("Re-checking every wait and inbox: {Reason}", reason);
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
        catch (Exception e) when (RedisErrors.IsTransient(e))
        {
            _logger.LogWarning("Redis error in the ACK fallback check: {Error}", e.Message);
        }
    }

    /// <summary>
    /// One fallback period: reads, in batched MGETs, the missing ACKs that a wake-up might not announce (all of them
    /// after a reconnect) and wakes the waits that have something to read. In the same MGETs it reads the K8 record of
    /// every awaited peer that is not in the registry (every awaited peer after a reconnect), and the epoch of those that
    /// have one, so a peer whose death notice was lost is still followed or reported dead within a period (D18).
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

        // Forget what is out of date and no longer awaited (the maps stay as small as the recent peers).
        foreach (var (id, known) in _publishers)
        {
            if (known.Expires < now && !awaited.Contains(id))
            {
                _publishers.TryRemove(id, out _);
                await UnwatchTsAcksAsync(id).ConfigureAwait(false);
            }
        }

        foreach (var (id, known) in _fates)
        {
            if (known.Expires < now && !awaited.Contains(id))
            {
                _fates.TryRemove(id, out _);
            }
        }

        if (undecided.Count > 0)
        {
            await LearnPublishersAsync(undecided, keys, owners, now).ConfigureAwait(false);
        }

        // Peers whose death this check looks for: the ones known not to be in the registry (dead ones are removed from
        // it, and so are TS peers, which are never there: only a K8 record or a notice declares them dead).
        var peers = awaited.Where(id => full || (_publishers.TryGetValue(id, out var known) && !known.Publishes)).ToList();
        var ackKeys = keys.Count;
        foreach (var peer in peers)
        {
            keys.Add(Keys.Escalation(peer));
        }

        var values = await ReadAsync(keys).ConfigureAwait(false);
        for (var i = 0; i < ackKeys; i++)
        {
            if (!values[i].IsNull)
            {
                owners[i].Wake.Set();
            }
        }

        // The epoch decides whether a K8 record (or a notice confirmed earlier) is about the peer's current incarnation;
        // it is read only for the few peers that have either (a dead one), so a TS peer costs one key more, not two.
        var suspects = Enumerable.Range(0, peers.Count).Where(j => !values[ackKeys + j].IsNull || _fates.ContainsKey(peers[j])).ToList();
        if (suspects.Count == 0)
        {
            return;
        }

        var epochs = await ReadAsync([.. suspects.Select(j => Keys.Epoch(peers[j]))]).ConfigureAwait(false);
        for (var k = 0; k < suspects.Count; k++)
        {
            var peer = peers[suspects[k]];
            var epoch = (string?)epochs[k];
            // A notice confirmed earlier still holds while the peer has not restarted (same epoch).
            var notice = _fates.TryGetValue(peer, out var known) && known.Epoch == epoch ? known.Notice : null;
            var fate = Resolve(peer, (string?)values[ackKeys + suspects[k]], epoch, notice, inRegistry: false);
            if (fate is not null)
            {
                foreach (var wait in WaitsAwaiting(peer))
                {
                    wait.Post(fate);
                }
            }
        }
    }

    /// <summary>Reads <paramref name="keys"/> in MGETs of at most <see cref="FallbackBatchSize"/> keys.</summary>
    private async Task<RedisValue[]> ReadAsync(List<RedisKey> keys)
    {
        var values = new RedisValue[keys.Count];
        for (var start = 0; start < keys.Count; start += FallbackBatchSize)
        {
            var count = Math.Min(FallbackBatchSize, keys.Count - start);
            var batch = await _database.StringGetAsync([.. keys.GetRange(start, count)]).ConfigureAwait(false);
            Interlocked.Increment(ref _fallbackReads);
            Interlocked.Add(ref _fallbackKeysRead, count);
            batch.CopyTo(values, start);
        }

        return values;
    }

    private void OnDeathNotice(RedisValue message)
    {
        if (!DeathNotices.TryParse((string?)message, out var notice))
        {
            return; // the replacement listener logs malformed notices
        }

        // Its ACKs are now read by the fallback check (it will not publish any more), and so is its K8 record.
        _publishers[notice!.DeadCoordinatorId] = new Publisher(false, _time.GetTimestamp() + PublisherMemoryTicks);
        _ = ConfirmNoticeAsync(notice);
    }

    /// <summary>
    /// Checks a notice against Redis before acting on it (the K8 record, the dead ID's epoch and its registry entry, in
    /// one round trip), remembers the outcome and tells every wait of this process that awaits the dead peer. A notice
    /// Redis does not bear out (the peer is back, or an operator's test message) changes nothing.
    /// </summary>
    private async Task ConfirmNoticeAsync(DeathNotice notice)
    {
        var peer = notice.DeadCoordinatorId;
        try
        {
            var batch = _database.CreateBatch();
            var read = batch.StringGetAsync([Keys.Escalation(peer), Keys.Epoch(peer)]);
            var score = batch.SortedSetScoreAsync(Keys.Registry, peer);
            batch.Execute();
            var values = await read.ConfigureAwait(false);
            var inRegistry = (await score.ConfigureAwait(false)).HasValue;
            var fate = Resolve(peer, (string?)values[0], (string?)values[1], notice, inRegistry);
            if (fate is null)
            {
                _logger.LogInformation("Dead coordinator notice not borne out by Redis, ignored coordinator={CoordinatorId} action={Action}",
                    peer, notice.Action);
                return;
            }

            Interlocked.Increment(ref _deathNoticesConfirmed);
            _fates[peer] = new KnownFate(notice, (string?)values[1], _time.GetTimestamp() + FateMemoryTicks);
            foreach (var wait in WaitsAwaiting(peer))
            {
                wait.Post(fate);
            }

            PeerFateConfirmed?.Invoke(fate);
        }
        catch (Exception e) when (RedisErrors.IsTransient(e) || e is ObjectDisposedException)
        {
            // The fallback check reads the K8 record of a peer that left the registry.
            _logger.LogWarning("Redis error while confirming a dead coordinator notice coordinator={CoordinatorId}: {Error}", peer, e.Message);
        }
    }

    /// <summary>Every wait of this process that still awaits an ACK of <paramref name="peerId"/>.</summary>
    private List<PendingWait> WaitsAwaiting(string peerId)
    {
        var found = new List<PendingWait>();
        foreach (var list in _mailboxes.Values)
        {
            CoordinatorMailbox[] copy;
            lock (list)
            {
                copy = [.. list];
            }

            foreach (var wait in copy.SelectMany(m => m.Waits))
            {
                if (Array.Exists(wait.Missing, a => a.AckerId == peerId))
                {
                    found.Add(wait);
                }
            }
        }

        return found;
    }

    /// <summary>
    /// What became of <paramref name="peerId"/>, or null when nothing says it died. Its K8 record decides when it belongs
    /// to the current incarnation (its fencing token is the peer's epoch, or the epoch is gone): a replacement to follow
    /// while the escalation runs or succeeded, dead when it failed. Otherwise a notice decides, only when the peer is
    /// not in the registry: <c>no_replacement</c> and <c>replacement_failed</c> mean dead, <c>spawn_replacement</c>
    /// names the replacement. A peer without either is not judged (a TS peer is never in the registry).
    /// </summary>
    internal static PeerFate? Resolve(string peerId, string? escalationJson, string? epoch, DeathNotice? notice, bool inRegistry)
    {
        if (Json.TryDeserialize<EscalationRecord>(escalationJson, out var record, out _) && record!.DeadCoordinatorId == peerId &&
            (epoch is null || (long.TryParse(epoch, NumberStyles.None, CultureInfo.InvariantCulture, out var current) && current == record.FencingToken)))
        {
            var replacement = Ids.IsValidName(record.NewCoordinatorId) ? record.NewCoordinatorId : null;
            switch (record.Status)
            {
                case EscalationStatus.Failed:
                    return new PeerFate(peerId, PeerFateKind.Dead, replacement,
                        $"escalation failed (K8 status failed): {Clip(record.Error ?? "no error recorded")}");
                case EscalationStatus.Escalated or EscalationStatus.ReplacementRequested or EscalationStatus.Replaced when replacement is not null:
                    return new PeerFate(peerId, PeerFateKind.HandedOver, replacement, $"escalated to {replacement} (K8 status {record.Status})");
            }
        }

        if (notice is null || inRegistry || notice.DeadCoordinatorId != peerId)
        {
            return null;
        }

        return notice.Action switch
        {
            DeathNotice.NoReplacement => new PeerFate(peerId, PeerFateKind.Dead, null, notice.Reason switch
            {
                DeathNotice.AgentNotRespawnable => "agent died; agents are not replaced (notice no_replacement)",
                DeathNotice.StoppedWithRequests => "validator stopped gracefully with requests unanswered (notice no_replacement)",
                _ => "auto-escalation disabled (notice no_replacement)",
            }),
            DeathNotice.ReplacementFailed => new PeerFate(peerId, PeerFateKind.Dead, notice.NewCoordinatorId,
                $"replacement {notice.NewCoordinatorId} failed to start (notice replacement_failed)"),
            DeathNotice.SpawnReplacement => new PeerFate(peerId, PeerFateKind.HandedOver, notice.NewCoordinatorId,
                $"escalated to {notice.NewCoordinatorId} (notice spawn_replacement)"),
            _ => null,
        };
    }

    private static string Clip(string text) => (text.Length > 200 ? text[..200] : text).ReplaceLineEndings(" ");

    /// <summary>
    /// Asks the registry which of <paramref name="undecided"/> are cfn coordinators (they publish their ACK
    /// wake-ups); the keys owed by the others join this period's reads.
    /// </summary>
    private async Task LearnPublishersAsync(
        Dictionary<string, List<(RedisKey Key, PendingWait Wait)>> undecided, List<RedisKey> keys, List<PendingWait> owners, long now)
    {
        var ids = undecided.Keys.ToArray();
        var expires = now + PublisherMemoryTicks;
        var notPublishing = new List<(string Id, string? SwarmId)>();
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
                    // Watched before this period's read below, so an ACK written in between is either read or announced.
                    await WatchTsAcksAsync(batch[i]).ConfigureAwait(false);
                    notPublishing.Add((batch[i], null));
                    foreach (var (key, wait) in undecided[batch[i]])
                    {
                        keys.Add(key);
                        owners.Add(wait);
                    }
                }
            }
        }

        // An awaited peer outside the registry may be a TS coordinator (or a dead one): with compat the monitor watches
        // it; one that never heartbeats as TS is never judged (Detection/TsCoordinators).
        if (_tsCompat && notPublishing.Count > 0)
        {
            await Detection.TsCoordinators.DiscoverAsync(_database, notPublishing).ConfigureAwait(false);
        }
    }

    /// <summary>Subscribes to keyspace notifications of <paramref name="peerId"/>'s ACK keys, when compat is on and the server sends them.</summary>
    private async Task WatchTsAcksAsync(string peerId)
    {
        if (!_tsCompat || _tsAckSubscriptions.ContainsKey(peerId) || !Ids.IsValidName(peerId) ||
            !await KeyspaceNotificationsAsync().ConfigureAwait(false))
        {
            return;
        }

        var pattern = RedisChannel.Pattern($"__keyspace@{_database.Database}__:{Keys.AckPatternOf(peerId)}");
        if (!_tsAckSubscriptions.TryAdd(peerId, pattern))
        {
            return;
        }

        _onTsAckWritten ??= (channel, message) => OnTsAckWritten(channel, message);
        await _multiplexer.GetSubscriber().SubscribeAsync(pattern, _onTsAckWritten).ConfigureAwait(false);
    }

    private async Task UnwatchTsAcksAsync(string peerId)
    {
        if (_tsAckSubscriptions.TryRemove(peerId, out var pattern) && _onTsAckWritten is not null)
        {
            await _multiplexer.GetSubscriber().UnsubscribeAsync(pattern, _onTsAckWritten).ConfigureAwait(false);
        }
    }

    /// <summary>A TS peer wrote one of its ACK keys: the waits owed that key read it now.</summary>
    private void OnTsAckWritten(RedisChannel channel, RedisValue message)
    {
        if (!string.Equals((string?)message, "set", StringComparison.Ordinal))
        {
            return; // only a write brings an ACK (not its expiry or deletion)
        }

        var name = (string?)channel;
        var colon = name?.IndexOf("__:", StringComparison.Ordinal) ?? -1;
        if (name is null || colon < 0)
        {
            return;
        }

        // blocking:ack:{peer}:{signalId}: the waits awaiting the peer, and of those the ones owed this key.
        var keyName = name[(colon + 3)..];
        var peerEnd = keyName.IndexOf(':', Keys.AckPrefix.Length);
        if (!keyName.StartsWith(Keys.AckPrefix, StringComparison.Ordinal) || peerEnd < 0)
        {
            return;
        }

        RedisKey key = keyName;
        foreach (var wait in WaitsAwaiting(keyName[Keys.AckPrefix.Length..peerEnd]))
        {
            if (Array.Exists(wait.Missing, a => a.Key == key))
            {
                Interlocked.Increment(ref _tsAckNotifications);
                wait.Wake.Set();
            }
        }
    }

    /// <summary>
    /// Whether the server sends keyspace notifications for string writes (<c>notify-keyspace-events</c> has <c>K</c> and
    /// <c>$</c> or <c>A</c>). cfn does not change the server's setting: that is the operator's (docs/configuration.md).
    /// Asked once, and again a minute after a "no" (the setting may be turned on later); a refused <c>CONFIG</c> (ACL,
    /// managed Redis) counts as no.
    /// </summary>
    private async Task<bool> KeyspaceNotificationsAsync()
    {
        var state = Volatile.Read(ref _keyspaceState);
        var now = _time.GetTimestamp();
        if (state == 1 || (state == 2 && now - Interlocked.Read(ref _keyspaceAskedAt) < PublisherMemoryTicks))
        {
            return state == 1;
        }

        string flags;
        string? refused = null;
        try
        {
            var reply = (RedisResult[])(await _database.ExecuteAsync("CONFIG", "GET", "notify-keyspace-events").ConfigureAwait(false))!;
            flags = reply.Length == 2 ? (string?)reply[1] ?? "" : "";
        }
        catch (RedisServerException e)
        {
            flags = "";
            refused = e.Message;
        }

        var on = flags.Contains('K', StringComparison.Ordinal) && (flags.Contains('$', StringComparison.Ordinal) || flags.Contains('A', StringComparison.Ordinal));
        Interlocked.Exchange(ref _keyspaceAskedAt, now);
        if (Interlocked.Exchange(ref _keyspaceState, on ? 1 : 2) != (on ? 1 : 2))
        {
            if (on)
            {
                _logger.LogInformation("Keyspace notifications are on (notify-keyspace-events={Flags}): waits on TS peers wake when their ACK is written", flags);
            }
            else
            {
                _logger.LogInformation(
                    "Keyspace notifications are off (notify-keyspace-events=\"{Flags}\"{Refused}): waits on TS peers read their ACKs every ACK_POLL_INTERVAL_MS; `CONFIG SET notify-keyspace-events K$` makes them wake at once",
                    flags, refused is null ? "" : ", CONFIG refused: " + refused);
            }
        }

        return on;
    }

    public async ValueTask DisposeAsync()
    {
        _multiplexer.ConnectionRestored -= OnConnectionRestored;
        if (_onDeathNotice is not null)
        {
            try
            {
                // This handler only: the multiplexer may be shared with other listeners of the same pattern.
                await _multiplexer.GetSubscriber().UnsubscribeAsync(Keys.SwarmDeadPattern, _onDeathNotice).ConfigureAwait(false);
            }
            catch (Exception e) when (RedisErrors.IsTransient(e) || e is ObjectDisposedException)
            {
                _logger.LogDebug("Could not unsubscribe from the death notices: {Error}", e.Message);
            }
        }

        await _fallbackLoop.DisposeAsync().ConfigureAwait(false);
        foreach (var peer in _tsAckSubscriptions.Keys)
        {
            try
            {
                await UnwatchTsAcksAsync(peer).ConfigureAwait(false);
            }
            catch (Exception e) when (RedisErrors.IsTransient(e) || e is ObjectDisposedException)
            {
                _logger.LogDebug("Could not unsubscribe from a TS peer's ACK keys: {Error}", e.Message);
            }
        }

        _subscriptionLock.Dispose();
    }

    /// <summary>Whether a coordinator publishes its ACK wake-ups, and until when (timestamp ticks) that is believed.</summary>
    private readonly record struct Publisher(bool Publishes, long Expires);

    /// <summary>A confirmed death notice, the peer's epoch when it was confirmed, and until when it is kept (timestamp ticks).</summary>
    private sealed record KnownFate(DeathNotice Notice, string? Epoch, long Expires);
}
