using Cfn.Coordination.Acks;
using Cfn.Coordination.Activity;
using Cfn.Coordination.Heartbeats;
using Cfn.Coordination.Identity;
using Cfn.Coordination.Metrics;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Security;
using Cfn.Coordination.Signals;
using Cfn.Coordination.Wakeups;
using Cfn.Coordination.Work;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Cfn.Coordination;

/// <summary>
/// One running coordinator instance: its identity (ID, swarm, instance, epoch), and the protocol parts it uses —
/// <see cref="Signals"/> to send, <see cref="Inbox"/> to receive, <see cref="Acks"/> to ACK, <see cref="Waiter"/> to
/// block on peers' ACKs, <see cref="Heartbeats"/>, <see cref="Activity"/> and fenced <see cref="Work"/> items.
/// Start with <see cref="StartAsync"/>; <see cref="StopAsync"/> (or disposal) stops gracefully and removes its keys.
/// </summary>
public sealed class Coordinator : IAsyncDisposable
{
    private readonly RedisContext _redis;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _superseded = new();
    private int _stopped;
    private long _lastSignalTimestamp;
    private int _supersededFlag;

    private Coordinator(RedisContext redis, SigningKeys keys, CoordinationMetrics metrics, string id, string swarmId, long epoch)
    {
        _redis = redis;
        SigningKeys = keys;
        Id = id;
        SwarmId = swarmId;
        Epoch = epoch;
        InstanceId = Guid.NewGuid().ToString("N");
        Metrics = metrics;
        var loggers = redis.LoggerFactory;
        _logger = loggers.CreateLogger<Coordinator>();
        Activity = new ActivityRecorder(redis.Database, this, redis.Options.ActivityTtlSeconds);
        // The ACK lines keep the component SPEC §4 gives them, "[BlockingCoordination]", rather than their types' names.
        Acks = new AckService(this, loggers.CreateLogger("Cfn.Coordination.BlockingCoordination"));
        Waiter = new AckWaiter(this, loggers.CreateLogger("Cfn.Coordination.BlockingCoordination"));
        Signals = new SignalSender(this, loggers.CreateLogger<SignalSender>());
        Inbox = new SignalInbox(this, loggers.CreateLogger<SignalInbox>());
        Heartbeats = new HeartbeatLoop(this, redis, metrics, loggers.CreateLogger<HeartbeatLoop>());
        Work = new WorkItemStore(this, redis, metrics, loggers.CreateLogger<WorkItemStore>());
    }

    /// <summary>The coordinator ID (also its pod name in Kubernetes).</summary>
    public string Id { get; }

    /// <summary>Its swarm.</summary>
    public string SwarmId { get; }

    /// <summary>
    /// True for a validator (swarm <see cref="Keys.ValidatorSwarm"/>): a protocol participant like a coordinator, but it
    /// heartbeats to <c>validator:heartbeat:{id}</c>, so the runbook's <c>blocking:heartbeat:*</c> counts coordinators only.
    /// </summary>
    public bool IsValidator => Keys.IsValidatorSwarm(SwarmId);

    /// <summary>The heartbeat key this instance writes: K1 for a coordinator, the validator key for a validator.</summary>
    public RedisKey HeartbeatKey => Keys.HeartbeatOf(Id, SwarmId);

    /// <summary>Unique per start of this ID.</summary>
    public string InstanceId { get; }

    /// <summary>This instance's epoch: <c>INCR coordinator:epoch:{id}</c> at start; a newer one fences this one.</summary>
    public long Epoch { get; }

    /// <summary>Current iteration (signed into ACKs).</summary>
    public int Iteration { get; private set; }

    /// <summary>Current phase, if any.</summary>
    public string? Phase { get; private set; }

    /// <summary>Set by the application while it works on something (K1/K7 status <c>working</c>).</summary>
    public bool IsWorking { get; set; }

    /// <summary><c>blocking</c>, <c>working</c> or <c>idle</c>.</summary>
    public string Status => Activity.RunningWaits > 0 ? "blocking" : IsWorking ? "working" : "idle";

    /// <summary>The metrics this coordinator records into.</summary>
    public CoordinationMetrics Metrics { get; }

    /// <summary>Sending signals.</summary>
    public SignalSender Signals { get; }

    /// <summary>Receiving signals.</summary>
    public SignalInbox Inbox { get; }

    /// <summary>Writing and reading ACKs.</summary>
    public AckService Acks { get; }

    /// <summary>Waiting for peers' ACKs.</summary>
    public AckWaiter Waiter { get; }

    /// <summary>The heartbeat writer.</summary>
    internal HeartbeatLoop Heartbeats { get; }

    /// <summary>Sequence number of the last heartbeat attempted (0 until the first).</summary>
    public long HeartbeatSequence => Heartbeats.Sequence;

    /// <summary>The K7 activity writer.</summary>
    internal ActivityRecorder Activity { get; }

    /// <summary>Fenced work items.</summary>
    public WorkItemStore Work { get; }

    /// <summary>Told when each ACK wait starts and ends (lifecycle hooks, SPEC §2.15); none by default.</summary>
    public IWaitObserver? WaitObserver { get; set; }

    /// <summary>True once this instance learned that a newer instance (or a replacement) took over.</summary>
    /// <remarks>
    /// The flag, not the token: the first thread to learn it sets the flag, logs, then cancels, and a second thread that
    /// learns it meanwhile (a fenced work write) must already see it. Read from the token, that window made a fenced
    /// item look recorded, and it was dropped instead of given back (chaos run, 2026-12-02).
    /// </remarks>
    public bool IsSuperseded => Volatile.Read(ref _supersededFlag) == 1;

    /// <summary>Fires when this instance is superseded: stop working, the work is no longer yours.</summary>
    public CancellationToken SupersededToken => _superseded.Token;

    internal CoordinatorMailbox Mailbox { get; private set; } = null!;

    internal RedisContext Redis => _redis;

    internal SigningKeys SigningKeys { get; }

    /// <summary>
    /// The swarm validators run in: they are protocol participants, not members of a working swarm, and an instance started
    /// in this swarm is a validator, with a heartbeat key of its own.
    /// </summary>
    public const string ValidatorSwarmId = Keys.ValidatorSwarm;

    /// <summary>The options this coordinator runs with (payload limit, heartbeat interval, timeouts).</summary>
    public CoordinationOptions Options => _redis.Options;

    /// <summary>The clock this coordinator stamps and judges time by (the system clock unless a test gives its own).</summary>
    public TimeProvider Time => _redis.Time;

    /// <summary>
    /// True when <paramref name="signature"/> (lowercase hex) is the HMAC-SHA256 of <paramref name="message"/> under the
    /// shared secret, current or new, compared in constant time; for transports that authenticate a request themselves
    /// (<c>POST /api/signals/receive</c>). Never throws: a malformed signature is simply invalid.
    /// </summary>
    public bool VerifySignature(string message, string? signature) => SigningKeys.Verify(message, signature);

    /// <summary>
    /// Acts as instance <paramref name="epoch"/> of <paramref name="coordinatorId"/>, which another process started and
    /// keeps alive (its heartbeat): the <c>cfn agent</c> verbs run by a program inside <c>cfn agent run</c> (SPEC D21). No
    /// new epoch is taken and no heartbeat sent; its writes are fenced by that epoch like the owner's, and stopping it
    /// removes nothing (the keys belong to the instance that keeps the ID alive).
    /// </summary>
    /// <exception cref="InvalidIdException">An ID is invalid; nothing was written.</exception>
    /// <exception cref="CoordinatorSupersededException">The ID's current epoch is not <paramref name="epoch"/>: that instance was superseded or never started.</exception>
    public static async Task<Coordinator> AttachAsync(
        RedisContext redis,
        SigningKeys keys,
        string coordinatorId,
        string swarmId,
        long epoch,
        CoordinationMetrics? metrics = null)
    {
        ArgumentNullException.ThrowIfNull(redis);
        ArgumentNullException.ThrowIfNull(keys);
        Ids.RequireName(coordinatorId, "coordinatorId");
        Ids.RequireName(swarmId, "swarmId");
        var current = (string?)await redis.Database.StringGetAsync(Keys.Epoch(coordinatorId)).ConfigureAwait(false);
        if (current != epoch.ToString(System.Globalization.CultureInfo.InvariantCulture))
        {
            throw new CoordinatorSupersededException(coordinatorId, epoch, current);
        }

        var coordinator = new Coordinator(redis, keys, metrics ?? CoordinationMetrics.Default, coordinatorId, swarmId, epoch) { IsAttached = true };
        coordinator.Mailbox = await redis.Wakeups.RegisterAsync(coordinatorId).ConfigureAwait(false);
        return coordinator;
    }

    /// <summary>The kind of agent this instance was started as by <see cref="StartAgentAsync"/>; null for a coordinator or validator.</summary>
    public AgentKind? AgentKind { get; private init; }

    /// <summary>True for an instance made by <see cref="AttachAsync"/>: it acts for an instance another process keeps alive.</summary>
    public bool IsAttached { get; private init; }

    /// <summary>
    /// Starts a coordinator instance: a new epoch, its wake-up channel, the first heartbeat and activity record, and
    /// (unless <paramref name="runHeartbeatLoop"/> is false) the periodic heartbeat.
    /// </summary>
    /// <exception cref="InvalidIdException">An ID is invalid; nothing was written.</exception>
    public static Task<Coordinator> StartAsync(
        RedisContext redis,
        SigningKeys keys,
        string coordinatorId,
        string swarmId,
        CoordinationMetrics? metrics = null,
        bool runHeartbeatLoop = true) =>
        StartCoreAsync(redis, keys, coordinatorId, swarmId, null, metrics, runHeartbeatLoop);

    /// <summary>
    /// Starts the instance of an agent that runs outside cfn (SPEC D21): a shell program under <c>cfn agent run</c>, or an
    /// HTTP agent session. It takes part like a coordinator, but it is marked as an agent of <paramref name="kind"/>, so
    /// when it dies no replacement is started (no host can run the user's program): waits on it end with
    /// <c>peer_dead</c> at once and its unfinished work items go back to the front of its swarm's queue.
    /// </summary>
    /// <exception cref="InvalidIdException">An ID is invalid; nothing was written.</exception>
    public static Task<Coordinator> StartAgentAsync(
        RedisContext redis,
        SigningKeys keys,
        string agentId,
        string swarmId,
        AgentKind kind,
        CoordinationMetrics? metrics = null)
    {
        if (!Enum.IsDefined(kind))
        {
            throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown agent kind");
        }

        return StartCoreAsync(redis, keys, agentId, swarmId, kind, metrics, runHeartbeatLoop: true);
    }

    private static async Task<Coordinator> StartCoreAsync(
        RedisContext redis,
        SigningKeys keys,
        string coordinatorId,
        string swarmId,
        AgentKind? kind,
        CoordinationMetrics? metrics,
        bool runHeartbeatLoop)
    {
        ArgumentNullException.ThrowIfNull(redis);
        ArgumentNullException.ThrowIfNull(keys);
        Ids.RequireName(coordinatorId, "coordinatorId");
        Ids.RequireName(swarmId, "swarmId");
        var epoch = (long)await RedisErrors.WhileLoadingAsync(() => redis.Database.ScriptEvaluateAsync(RedisScripts.EpochClaim,
                [Keys.Epoch(coordinatorId), Keys.Registry, Keys.Swarms, Keys.Agents], [coordinatorId, swarmId, AgentKinds.Label(kind)]), redis.Time,
            TimeSpan.FromSeconds(60)).ConfigureAwait(false);
        // A new instance's epoch fences its predecessor: a failover that lost it would let the zombie's writes win.
        await redis.Replication.ConfirmAsync("start_epoch").ConfigureAwait(false);
        var coordinator = new Coordinator(redis, keys, metrics ?? CoordinationMetrics.Default, coordinatorId, swarmId, epoch) { AgentKind = kind };
        coordinator.Metrics.Initialize(coordinatorId);
        coordinator.Mailbox = await redis.Wakeups.RegisterAsync(coordinatorId).ConfigureAwait(false);
        await coordinator.Heartbeats.BeatAsync().ConfigureAwait(false);
        await coordinator.Activity.RecordAsync().ConfigureAwait(false);
        if (runHeartbeatLoop)
        {
            coordinator.Heartbeats.Start();
        }

        coordinator._logger.LogInformation(
            "Coordinator started coordinator={CoordinatorId} swarm={SwarmId} instance={InstanceId} epoch={Epoch}",
            coordinatorId, swarmId, coordinator.InstanceId, epoch);
        return coordinator;
    }

    /// <summary>Moves to a new iteration (and phase): a progress event.</summary>
    public async Task SetIterationAsync(int iteration, string? phase = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(iteration);
        Iteration = iteration;
        if (phase is not null)
        {
            Phase = phase;
        }

        await Activity.RecordAsync().ConfigureAwait(false);
    }

    /// <summary>Ends every running wait of this instance with status <c>forced</c>; returns how many.</summary>
    public int ForceUnblock() => Mailbox.ForceUnblockAll();

    /// <summary>
    /// The send time of a new signal: the local clock in ms, but strictly increasing per instance, so two signals sent
    /// in the same millisecond never share a message ID (which would make the second look like a duplicate).
    /// </summary>
    internal long NextSignalTimestamp()
    {
        var now = _redis.Time.GetUtcNow().ToUnixTimeMilliseconds();
        while (true)
        {
            var last = Interlocked.Read(ref _lastSignalTimestamp);
            var next = Math.Max(now, last + 1);
            if (Interlocked.CompareExchange(ref _lastSignalTimestamp, next, last) == last)
            {
                return next;
            }
        }
    }

    /// <summary>
    /// Records that this instance was superseded (a newer epoch exists) and says so once: everything it does from now
    /// on is refused by Redis, so it stops (SPEC §2.13 zombies).
    /// </summary>
    internal void MarkSuperseded(string discoveredBy, string? currentEpoch = null)
    {
        if (Interlocked.Exchange(ref _supersededFlag, 1) == 1)
        {
            return;
        }

        _logger.LogError(
            "Coordinator superseded: coordinator={CoordinatorId} epoch={Epoch} currentEpoch={CurrentEpoch} detectedBy={DetectedBy}; its writes are refused, stopping",
            Id, Epoch, currentEpoch ?? "unknown", discoveredBy);
        _superseded.Cancel();
    }

    /// <summary>Marks the instance superseded and returns the exception to throw.</summary>
    internal CoordinatorSupersededException Superseded(string discoveredBy, string? currentEpoch)
    {
        MarkSuperseded(discoveredBy, currentEpoch);
        return new CoordinatorSupersededException(Id, Epoch, currentEpoch);
    }

    /// <summary>
    /// Graceful stop (SIGTERM): stops heartbeats and removes this coordinator's heartbeat, registry entry, ACKs and
    /// activity. Its inbox and K2 view are kept while they hold unconsumed signals, so nothing sent to it is lost; a
    /// superseded instance removes nothing, because the keys belong to its successor.
    /// </summary>
    public async Task StopAsync()
    {
        if (Interlocked.Exchange(ref _stopped, 1) == 1)
        {
            return;
        }

        if (IsAttached)
        {
            // Nothing of the ID is this instance's to remove: the process that keeps it alive stops it.
            await _redis.Wakeups.UnregisterAsync(Mailbox).ConfigureAwait(false);
            return;
        }

        Heartbeats.StatusOverride = "stopping";
        await Heartbeats.DisposeAsync().ConfigureAwait(false);
        Metrics.HeartbeatTimestamp.RemoveLabelled(Id, SwarmId);
        try
        {
            await _redis.Wakeups.UnregisterAsync(Mailbox).ConfigureAwait(false);
            if (IsSuperseded || await IsSupersededInRedisAsync().ConfigureAwait(false))
            {
                _logger.LogWarning("Coordinator stopped without cleanup (superseded) coordinator={CoordinatorId} epoch={Epoch}", Id, Epoch);
                return;
            }

            var (deleted, inboxKept) = await DeleteOwnKeysAsync().ConfigureAwait(false);
            _logger.LogInformation("Coordinator stopped coordinator={CoordinatorId} keysDeleted={KeysDeleted}", Id, deleted);
            if (inboxKept && IsValidator)
            {
                await NoticeUnansweredAsync().ConfigureAwait(false);
            }
        }
        catch (Exception e) when (RedisErrors.IsTransient(e) || e is ObjectDisposedException)
        {
            // A stop during an outage must still stop; the keys expire, and the monitor cleans up what is left.
            _logger.LogWarning("Redis error while stopping coordinator={CoordinatorId}; its keys are left to expire: {Error}", Id, e.Message);
        }
    }

    /// <summary>
    /// Stops like a crash: no more heartbeats, nothing removed. The timeout handler then declares the instance dead and
    /// recovers it (inbox handed over, work transferred), as for a process that died; <c>cfn agent run</c> does this when
    /// the agent's program dies, and the fault tests and chaos tooling to simulate a crash.
    /// </summary>
    public async Task AbandonAsync()
    {
        if (Interlocked.Exchange(ref _stopped, 1) == 1)
        {
            return;
        }

        await Heartbeats.DisposeAsync().ConfigureAwait(false);
        await _redis.Wakeups.UnregisterAsync(Mailbox).ConfigureAwait(false);
    }

    private async Task<bool> IsSupersededInRedisAsync()
    {
        var current = await _redis.Database.StringGetAsync(Keys.Epoch(Id)).ConfigureAwait(false);
        return current != Epoch;
    }

    /// <summary>
    /// A validator stopped with requests in its inbox (accepted and not answered, or not yet read). A validator's ID is
    /// its pod's name in a Deployment, so no later instance reads them, and a graceful stop is never declared dead: its
    /// waiters would wait out their timeouts. The notice a death without replacement publishes tells them to ask
    /// another validator (D18), which is what a rolling update needs so that no wait is lost.
    /// </summary>
    private async Task NoticeUnansweredAsync()
    {
        var notice = new DeathNotice(Id, SwarmId, _redis.Time.GetUtcNow().ToUnixTimeMilliseconds(), DeathNotice.NoReplacement,
            Reason: DeathNotice.StoppedWithRequests);
        var receivers = await DeathNotices.PublishAsync(_redis.Database, notice).ConfigureAwait(false);
        _logger.LogWarning("Validator stopped with requests unanswered; their senders ask other validators validatorId={ValidatorId} notified={Notified}",
            Id, receivers);
    }

    private async Task<(long Deleted, bool InboxKept)> DeleteOwnKeysAsync()
    {
        var database = _redis.Database;
        // Both heartbeat families: an ID that ran as the other kind before leaves nothing behind either.
        var keys = new List<RedisKey> { Keys.Heartbeat(Id), Keys.ValidatorHeartbeat(Id), Keys.Activity(Id), Keys.Unblock(Id) };
        // Shutdown is not a hot path; the pattern is an exact prefix (IDs hold no glob characters).
        foreach (var server in _redis.Multiplexer.GetServers().Where(s => !s.IsReplica))
        {
            await foreach (var key in server.KeysAsync(database.Database, Keys.AckPatternOf(Id), pageSize: 1000).ConfigureAwait(false))
            {
                keys.Add(key);
            }
        }

        var deleted = await database.KeyDeleteAsync([.. keys]).ConfigureAwait(false);
        await database.SortedSetRemoveAsync(Keys.Registry, Id).ConfigureAwait(false);
        await database.SortedSetRemoveAsync(Keys.Deadlines, Id).ConfigureAwait(false);
        await database.HashDeleteAsync(Keys.Swarms, Id).ConfigureAwait(false);
        await database.HashDeleteAsync(Keys.Agents, Id).ConfigureAwait(false);
        // The emptiness check and the delete are one script: a signal appended between them would be deleted unread.
        var inbox = (long)await database.ScriptEvaluateAsync(RedisScripts.DeleteInboxIfEmpty, [Keys.Inbox(Id), Keys.Signal(Id)])
            .ConfigureAwait(false);
        if (inbox == -2)
        {
            _logger.LogWarning("Coordinator stopped with a TS signal in {Key}: left for the next instance coordinator={CoordinatorId}",
                (string?)Keys.Signal(Id), Id);
        }

        return (deleted + Math.Max(0, inbox), inbox == -1);
    }

    /// <inheritdoc/>
    public async ValueTask DisposeAsync()
    {
        await StopAsync().ConfigureAwait(false);
        Mailbox?.Dispose();
        _superseded.Dispose();
    }
}
