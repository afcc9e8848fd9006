using Cfn.Coordination.Identity;
using StackExchange.Redis;

namespace Cfn.Coordination.Redis;

/// <summary>
/// Every Redis key and channel cfn uses, in one place (SPEC §1). Each builder validates the IDs it is given,
/// so no unvalidated string ever becomes part of a key. K-numbers refer to SPEC §1.
/// </summary>
internal static class Keys
{
    /// <summary>
    /// K1 prefix: <c>blocking:heartbeat:{coordinatorId}</c>, JSON, TTL <c>HEARTBEAT_TTL_SECONDS</c>. Written by coordinators
    /// only, so the runbook's <c>--scan --pattern "blocking:heartbeat:*" | wc -l</c> counts coordinators (SPEC §5 #2).
    /// </summary>
    public const string HeartbeatPrefix = "blocking:heartbeat:";

    /// <summary>
    /// Validator heartbeat prefix: <c>validator:heartbeat:{validatorId}</c>, the same JSON and TTL as K1. Validators are
    /// protocol participants (inbox, ACKs, registry) but not coordinators, so they stay out of the K1 count.
    /// </summary>
    public const string ValidatorHeartbeatPrefix = "validator:heartbeat:";

    /// <summary>
    /// The pseudo-swarm of validators: a registry member whose <see cref="Swarms"/> entry is this is a validator (it
    /// heartbeats to <see cref="ValidatorHeartbeat"/>, and its replacement is a validator). The kind is never read from
    /// the ID, which is free-form (a replacement validator is named <c>coordinator-{ms}-{random}</c>).
    /// </summary>
    public const string ValidatorSwarm = "validators";

    /// <summary>K2 prefix: <c>blocking:signal:{receiverId}</c>, JSON of a pending signal, present while the inbox is not empty.</summary>
    public const string SignalPrefix = "blocking:signal:";

    /// <summary>K3 prefix: <c>blocking:ack:{ackingCoordinatorId}:{signalId}</c>, JSON, TTL 3600 s.</summary>
    public const string AckPrefix = "blocking:ack:";

    /// <summary>K4 prefix: <c>blocking:idempotency:{messageId}</c>, <c>"1"</c>, TTL 86400 s.</summary>
    public const string IdempotencyPrefix = "blocking:idempotency:";

    /// <summary>D4 inbox prefix: <c>blocking:inbox:{receiverId}</c>, a stream of unconsumed signals.</summary>
    public const string InboxPrefix = "blocking:inbox:";

    /// <summary>Force-unblock marker prefix: <c>blocking:unblock:{id}</c>, the Redis time (ms) of the request, TTL 300 s.</summary>
    public const string UnblockPrefix = "blocking:unblock:";

    /// <summary>K5 prefix: <c>blocking:retry:{signalId}:{attempt}</c>; K6 is <c>blocking:retry:failed:{signalId}</c>.</summary>
    public const string RetryPrefix = "blocking:retry:";

    /// <summary>K8 prefix: <c>coordinator:escalation:{deadCoordinatorId}</c>, JSON, TTL 3600 s; taken with SET NX as the escalation lock.</summary>
    public const string EscalationPrefix = "coordinator:escalation:";

    /// <summary>K9 prefix: <c>coordinator:spawn:{newCoordinatorId}</c>, JSON, kept as history.</summary>
    public const string SpawnPrefix = "coordinator:spawn:";

    /// <summary>K11 pattern parts: <c>swarm:{swarmId}:blocking:{coordinatorId}</c>.</summary>
    public const string SwarmPrefix = "swarm:";

    /// <summary>K7 prefix: <c>coordinator:activity:{coordinatorId}</c>, JSON, TTL sized from the blocking timeout.</summary>
    public const string ActivityPrefix = "coordinator:activity:";

    /// <summary>K10 prefix: <c>coordinator:work:{swarmId}:{coordinatorId}:{workId}</c>, JSON.</summary>
    public const string WorkPrefix = "coordinator:work:";

    /// <summary>Epoch counter prefix: <c>coordinator:epoch:{coordinatorId}</c>, INCR on every start (fencing token source).</summary>
    public const string EpochPrefix = "coordinator:epoch:";

    /// <summary>
    /// D6 registry: a sorted set of the IDs of every participant that heartbeats — coordinators and validators, told
    /// apart by <see cref="Swarms"/> — scored by last heartbeat (Redis ms). Its name matches neither
    /// <c>blocking:heartbeat:*</c> nor <c>blocking:*{id}*</c>, so the runbook's counts and post-cleanup checks ignore it.
    /// </summary>
    public static readonly RedisKey Registry = "blocking:coordinators";

    /// <summary>Consumer group of every inbox stream.</summary>
    public const string InboxGroup = "receivers";

    /// <summary>Pub/sub channel prefix: <c>cfn:events:{coordinatorId}</c> wakes a coordinator (new signal, ACK, unblock).</summary>
    public const string EventsChannelPrefix = "cfn:events:";

    /// <summary>K1 heartbeat key (coordinators only).</summary>
    public static RedisKey Heartbeat(string coordinatorId) =>
        HeartbeatPrefix + Ids.RequireName(coordinatorId, "coordinatorId");

    /// <summary>A validator's heartbeat key.</summary>
    public static RedisKey ValidatorHeartbeat(string validatorId) =>
        ValidatorHeartbeatPrefix + Ids.RequireName(validatorId, "validatorId");

    /// <summary>
    /// The heartbeat key a registry member writes, by its swarm (its <see cref="Swarms"/> entry): the validator key in
    /// <see cref="ValidatorSwarm"/>, K1 otherwise (also when the swarm is unknown, e.g. a TS coordinator).
    /// </summary>
    public static RedisKey HeartbeatOf(string id, string? swarmId) =>
        IsValidatorSwarm(swarmId) ? ValidatorHeartbeat(id) : Heartbeat(id);

    /// <summary>True for the validators' pseudo-swarm.</summary>
    public static bool IsValidatorSwarm(string? swarmId) => string.Equals(swarmId, ValidatorSwarm, StringComparison.Ordinal);

    /// <summary>The ID in a heartbeat key of either family, or null when <paramref name="key"/> is neither.</summary>
    public static string? HeartbeatOwner(string key)
    {
        ArgumentNullException.ThrowIfNull(key);
        return key.StartsWith(HeartbeatPrefix, StringComparison.Ordinal) ? key[HeartbeatPrefix.Length..]
            : key.StartsWith(ValidatorHeartbeatPrefix, StringComparison.Ordinal) ? key[ValidatorHeartbeatPrefix.Length..]
            : null;
    }

    /// <summary>K2 pending-signal view of a receiver.</summary>
    public static RedisKey Signal(string receiverId) =>
        SignalPrefix + Ids.RequireName(receiverId, "receiverId");

    /// <summary>K3 ACK written by <paramref name="ackingCoordinatorId"/> for <paramref name="signalId"/>.</summary>
    public static RedisKey Ack(string ackingCoordinatorId, string signalId) =>
        AckPrefix + Ids.RequireName(ackingCoordinatorId, "coordinatorId") + ":" + Ids.RequireSignalId(signalId, "signalId");

    /// <summary>Exact <c>SCAN MATCH</c> pattern of every ACK written by one coordinator (IDs hold no glob characters).</summary>
    public static string AckPatternOf(string ackingCoordinatorId) =>
        AckPrefix + Ids.RequireName(ackingCoordinatorId, "coordinatorId") + ":*";

    /// <summary>K4 idempotency record of a message.</summary>
    public static RedisKey Idempotency(string messageId) =>
        IdempotencyPrefix + Ids.RequireSignalId(messageId, "messageId");

    /// <summary>D4 durable inbox of a receiver.</summary>
    public static RedisKey Inbox(string receiverId) =>
        InboxPrefix + Ids.RequireName(receiverId, "receiverId");

    /// <summary>Force-unblock marker of a coordinator.</summary>
    public static RedisKey Unblock(string coordinatorId) =>
        UnblockPrefix + Ids.RequireName(coordinatorId, "coordinatorId");

    /// <summary>K8 escalation record (and lock) of a dead coordinator.</summary>
    public static RedisKey Escalation(string deadCoordinatorId) =>
        EscalationPrefix + Ids.RequireName(deadCoordinatorId, "coordinatorId");

    /// <summary>K9 spawn request of a new coordinator.</summary>
    public static RedisKey Spawn(string newCoordinatorId) =>
        SpawnPrefix + Ids.RequireName(newCoordinatorId, "newCoordinatorId");

    /// <summary>K11 blocking state of a coordinator in a swarm.</summary>
    public static RedisKey SwarmBlocking(string swarmId, string coordinatorId) =>
        SwarmPrefix + Ids.RequireName(swarmId, "swarmId") + ":blocking:" + Ids.RequireName(coordinatorId, "coordinatorId");

    /// <summary>Warning state of coordinators with stale heartbeats (hash: id → <c>warnings|lastWarnAt|state</c>), shared by every monitor.</summary>
    public static readonly RedisKey Health = "coordinator:health";

    /// <summary>
    /// Swarm of each registered coordinator (hash: id → swarmId), kept by the heartbeat script. It also says which
    /// members are validators (<see cref="ValidatorSwarm"/>), and survives the heartbeat key's expiry.
    /// </summary>
    public static readonly RedisKey Swarms = "coordinator:swarms";

    /// <summary>
    /// TS coordinators being watched (CFN_TS_COMPAT, SPEC D13; sorted set: id → Redis ms when its K1 was last seen to
    /// change). TS coordinators never write the registry, and judging their own <c>lastHeartbeat</c> clock would let a
    /// skewed clock cause or hide a death; so the monitor samples their K1 and scores the moment it saw it change.
    /// Not under <c>blocking:</c>, so no runbook glob counts it.
    /// </summary>
    public static readonly RedisKey TsCoordinators = "coordinator:ts-coordinators";

    /// <summary>
    /// What the monitor last saw of each watched TS coordinator's K1 (hash: id → <c>lastHeartbeat:sequence</c>, empty when
    /// found but no heartbeat seen yet); an entry is how a TS coordinator is discovered (from traffic or the slow scan).
    /// </summary>
    public static readonly RedisKey TsHeartbeats = "coordinator:ts-heartbeats";

    /// <summary>
    /// Participants that are agents run outside cfn (hash: id → <c>shell</c> or <c>http</c>, SPEC D21), written by the start
    /// script and removed with the registry entry. A dead agent is not replaced: no host can start the user's program, so
    /// its waiters get <c>peer_dead</c> at once instead of an ACK from a built-in coordinator that would never answer.
    /// </summary>
    public static readonly RedisKey Agents = "coordinator:agents";

    /// <summary>Deadlines of running waits (sorted set: id → Redis ms when its oldest wait times out), kept by the activity script.</summary>
    public static readonly RedisKey Deadlines = "coordinator:deadlines";

    /// <summary>Stuck waits already reported (hash: id → <c>{signalId}|{blockingSince}</c>), so each is counted once.</summary>
    public static readonly RedisKey StuckReported = "coordinator:stuck";

    /// <summary>Spawn requests by creation time (sorted set: newCoordinatorId → ms), so the swarm manager finds them without SCAN.</summary>
    public static readonly RedisKey SpawnIndex = "coordinator:spawns";

    /// <summary>Lock of the batch cleanup (SPEC §2.12): <c>SET NX EX</c> with a token.</summary>
    public static readonly RedisKey CleanupLock = "blocking:cleanup:lock";

    /// <summary>C1: the swarm's dead-coordinator channel.</summary>
    public static RedisChannel SwarmDead(string swarmId) =>
        RedisChannel.Literal(SwarmPrefix + Ids.RequireName(swarmId, "swarmId") + ":coordinator:dead");

    /// <summary>C1 of every swarm, for one pattern subscription per process: <c>swarm:*:coordinator:dead</c>.</summary>
    public static readonly RedisChannel SwarmDeadPattern = RedisChannel.Pattern(SwarmPrefix + "*:coordinator:dead");

    /// <summary>C2: the swarm's replacement channel.</summary>
    public static RedisChannel SwarmReplacement(string swarmId) =>
        RedisChannel.Literal(SwarmPrefix + Ids.RequireName(swarmId, "swarmId") + ":coordinator:replacement");

    /// <summary>K7 activity record.</summary>
    public static RedisKey Activity(string coordinatorId) =>
        ActivityPrefix + Ids.RequireName(coordinatorId, "coordinatorId");

    /// <summary>K10 work item.</summary>
    public static RedisKey Work(string swarmId, string coordinatorId, string workId) =>
        WorkPrefix + Ids.RequireName(swarmId, "swarmId") + ":" + Ids.RequireName(coordinatorId, "coordinatorId") + ":" +
        Ids.RequireName(workId, "workId");

    /// <summary>Exact <c>SCAN MATCH</c> pattern of one coordinator's work items in a swarm.</summary>
    public static string WorkPatternOf(string swarmId, string coordinatorId) =>
        WorkPrefix + Ids.RequireName(swarmId, "swarmId") + ":" + Ids.RequireName(coordinatorId, "coordinatorId") + ":*";

    /// <summary>
    /// The unfinished work items a coordinator owns in a swarm: <c>coordinator:owned:{swarmId}:{coordinatorId}</c> (set of
    /// work IDs), kept by <c>work_cas.lua</c> in the same step as each write. A coordinator adopts what is listed here at start
    /// (D16), and a transfer or requeue finds a dead coordinator's items here without scanning the keyspace.
    /// </summary>
    public static RedisKey Owned(string swarmId, string coordinatorId) =>
        "coordinator:owned:" + Ids.RequireName(swarmId, "swarmId") + ":" + Ids.RequireName(coordinatorId, "coordinatorId");

    /// <summary>
    /// Which coordinator's key holds the record of a work ID: <c>coordinator:work-owner:{swarmId}:{workId}</c> (string, the
    /// owner's ID, same TTL as the record). Written with every record write, checked on create, so a work ID never has two
    /// records at once (an item requeued by a crash's cleanup while its record moved to a replacement is claimed or skipped,
    /// not created a second time). Not matched by <c>coordinator:work:*</c>.
    /// </summary>
    public static RedisKey WorkOwner(string swarmId, string workId) =>
        "coordinator:work-owner:" + Ids.RequireName(swarmId, "swarmId") + ":" + Ids.RequireName(workId, "workId");

    /// <summary>
    /// Escalations whose steps are not done (sorted set: dead coordinator ID → Redis ms when its escalation started). Every
    /// monitor pass resumes those older than one lease whose handler is gone (D17), whatever became of the dead ID since
    /// (it may already run again under a new epoch, so its registration cannot be relied on).
    /// </summary>
    public static readonly RedisKey Escalating = "coordinator:escalating";

    /// <summary>The epoch counter of a coordinator ID.</summary>
    public static RedisKey Epoch(string coordinatorId) =>
        EpochPrefix + Ids.RequireName(coordinatorId, "coordinatorId");

    /// <summary>The wake-up channel of a coordinator.</summary>
    public static RedisChannel Events(string coordinatorId) =>
        RedisChannel.Literal(EventsChannelPrefix + Ids.RequireName(coordinatorId, "coordinatorId"));

    // ---- Swarm manager: spawning, scaling and coordinator hosts ----

    /// <summary>Pause flag of spawning (SPEC §3.1 #2): present (value = pause time, ms) while paused, so a restart keeps it.</summary>
    public static readonly RedisKey SpawningPaused = "swarm-manager:spawning:paused";

    /// <summary>Target size of each scaled swarm (hash: swarmId → targetSize).</summary>
    public static readonly RedisKey SwarmTargets = "swarm-manager:targets";

    /// <summary>Live coordinator hosts (sorted set: hostId → last report, Redis ms).</summary>
    public static readonly RedisKey Hosts = "swarm-manager:hosts";

    /// <summary>Prefix of a host's record: <c>swarm-manager:host:{hostId}</c>, JSON (capacity, running coordinators).</summary>
    public const string HostPrefix = "swarm-manager:host:";

    /// <summary>A coordinator host's record.</summary>
    public static RedisKey Host(string hostId) => HostPrefix + Ids.RequireName(hostId, "hostId");

    /// <summary>A host's command queue (list of JSON commands: start or stop a coordinator), pushed by the swarm manager.</summary>
    public static RedisKey HostCommands(string hostId) => HostPrefix + Ids.RequireName(hostId, "hostId") + ":commands";

    /// <summary>Wakes a host when a command is queued for it.</summary>
    public static RedisChannel HostChannel(string hostId) =>
        RedisChannel.Literal("cfn:hosts:" + Ids.RequireName(hostId, "hostId"));

    /// <summary>Wakes the swarm managers (new spawn request, resume, scale).</summary>
    public static readonly RedisChannel SwarmManagerChannel = RedisChannel.Literal("cfn:swarm-manager");

    /// <summary>Lease of the swarm manager that reconciles targets (string: managerId, PX), so two managers never both scale one swarm.</summary>
    public static readonly RedisKey SwarmManagerLease = "swarm-manager:lease";

    /// <summary>Coordinators a swarm manager told to stop (sorted set: coordinatorId → request time, ms), pruned once they are gone.</summary>
    public static readonly RedisKey CoordinatorStops = "swarm-manager:stopping";

    // ---- Work queue and validators: the working swarm ----

    /// <summary>A swarm's queue of work waiting for a coordinator: <c>swarm:{swarmId}:queue</c> (list of JSON).</summary>
    public static RedisKey SwarmQueue(string swarmId) => SwarmPrefix + Ids.RequireName(swarmId, "swarmId") + ":queue";

    /// <summary>
    /// Items a coordinator took from its swarm's queue and has not yet recorded as its K10 item:
    /// <c>swarm:{swarmId}:taken:{coordinatorId}</c> (list). A crash in between leaves them here, and they go back to the
    /// queue when that coordinator's loop starts again or when it is cleaned up, so no work is lost.
    /// </summary>
    public static RedisKey SwarmTaken(string swarmId, string coordinatorId) =>
        SwarmPrefix + Ids.RequireName(swarmId, "swarmId") + ":taken:" + Ids.RequireName(coordinatorId, "coordinatorId");

    /// <summary>
    /// What became of one work ID submitted to a swarm: <c>swarm:{swarmId}:work:{workId}</c> (hash: <c>status</c>,
    /// <c>owner</c>, <c>enqueuedAt</c>, <c>updatedAt</c>, <c>finishedAt</c>, <c>history</c> (a JSON array of the owner changes),
    /// <c>events</c>, and once finished <c>result</c> and <c>verdicts</c>). Written by the same script as each transition it
    /// describes (enqueue, create, claim, adopt, transfer, release, requeue, complete), so it is read by ID in one
    /// <c>HGETALL</c> and outlives the K10 record, which is keyed by owner. TTL: a week while unfinished, then
    /// <c>WORK_RESULT_TTL_SECONDS</c>.
    /// </summary>
    public static RedisKey WorkRecord(string swarmId, string workId) =>
        SwarmPrefix + Ids.RequireName(swarmId, "swarmId") + ":work:" + Ids.RequireName(workId, "workId");

    /// <summary>Published once when a work ID's record becomes completed or failed: <c>cfn:work:{swarmId}:{workId}</c> (the status).</summary>
    public static RedisChannel WorkFinishedChannel(string swarmId, string workId) =>
        RedisChannel.Literal("cfn:work:" + Ids.RequireName(swarmId, "swarmId") + ":" + Ids.RequireName(workId, "workId"));

    /// <summary>Live validators (sorted set: validatorId → last report, Redis ms).</summary>
    public static readonly RedisKey Validators = "validator:registry";

    /// <summary>Validators with any record in the statistics window (sorted set: validatorId → last record, ms): the performance report's list.</summary>
    public static readonly RedisKey ValidatorsSeen = "validator:seen";

    /// <summary>A validator's recent durations (sorted set scored by finish time, ms), trimmed to the rolling window.</summary>
    public static RedisKey ValidatorDurations(string validatorId) => "validator:durations:" + Ids.RequireName(validatorId, "validatorId");

    /// <summary>Cached verdict of an identical validation input (<c>ENABLE_VALIDATION_CACHE</c>): <c>validator:cache:{sha256 hex}</c>.</summary>
    public static RedisKey ValidationCache(string inputHashHex) => "validator:cache:" + inputHashHex;

    /// <summary>Wakes the coordinators waiting for work of a swarm when an item is queued: <c>cfn:queue:{swarmId}</c>.</summary>
    public static RedisChannel SwarmQueueChannel(string swarmId) =>
        RedisChannel.Literal("cfn:queue:" + Ids.RequireName(swarmId, "swarmId"));

    // ---- Sender-side retry (SPEC §2.7) ----

    /// <summary>K5 record of one retry attempt.</summary>
    public static RedisKey RetryAttempt(string signalId, int attempt) =>
        RetryPrefix + Ids.RequireSignalId(signalId, "signalId") + ":" + attempt.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>K6 record of a signal whose retries were exhausted.</summary>
    public static RedisKey RetryFailed(string signalId) => RetryPrefix + "failed:" + Ids.RequireSignalId(signalId, "signalId");

    /// <summary>Index of K6 records by sender (sorted set <c>blocking:retry:failed-by:{senderId}</c>: signalId → ms), so retry-failed needs no SCAN.</summary>
    public static RedisKey RetryFailedIndex(string senderId) => RetryPrefix + "failed-by:" + Ids.RequireName(senderId, "senderId");

    // ---- Breaker states of every process (cfn status) ----

    /// <summary>Processes that publish their breakers (sorted set: processId → last report, ms).</summary>
    public static readonly RedisKey BreakerIndex = "cfn:breakers";

    /// <summary>One process's breakers: <c>cfn:breakers:{processId}</c>, JSON, short TTL (gone soon after the process).</summary>
    public static RedisKey Breakers(string processId) => "cfn:breakers:" + Ids.RequireName(processId, "processId");
}
