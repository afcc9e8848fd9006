using Cfn.Coordination.Identity;
using StackExchange.Redis;

namespace Cfn.Coordination.Redis;

/// <summary>
/// Every Redis key and channel cfn uses, in one place (SPEC §1). Each builder validates the IDs it is given,
/// so no unvalidated string ever becomes part of a key. K-numbers refer to SPEC §1.
/// </summary>
public static class Keys
{
    /// <summary>K1 prefix: <c>blocking:heartbeat:{coordinatorId}</c>, JSON, TTL <c>HEARTBEAT_TTL_SECONDS</c>.</summary>
    public const string HeartbeatPrefix = "blocking:heartbeat:";

    /// <summary>K2 prefix: <c>blocking:signal:{receiverId}</c>, JSON of a pending signal, present while the inbox is not empty.</summary>
    public const string SignalPrefix = "blocking:signal:";

    /// <summary>K3 prefix: <c>blocking:ack:{ackingCoordinatorId}:{signalId}</c>, JSON, TTL 3600 s.</summary>
    public const string AckPrefix = "blocking:ack:";

    /// <summary>K4 prefix: <c>blocking:idempotency:{messageId}</c>, <c>"1"</c>, TTL 86400 s.</summary>
    public const string IdempotencyPrefix = "blocking:idempotency:";

    /// <summary>D4 inbox prefix: <c>blocking:inbox:{receiverId}</c>, a stream of unconsumed signals.</summary>
    public const string InboxPrefix = "blocking:inbox:";

    /// <summary>Receiver-side processed marker prefix: <c>blocking:processed:{receiverId}:{messageId}</c>.</summary>
    public const string ProcessedPrefix = "blocking:processed:";

    /// <summary>K7 prefix: <c>coordinator:activity:{coordinatorId}</c>, JSON, TTL sized from the blocking timeout.</summary>
    public const string ActivityPrefix = "coordinator:activity:";

    /// <summary>K10 prefix: <c>coordinator:work:{swarmId}:{coordinatorId}:{workId}</c>, JSON.</summary>
    public const string WorkPrefix = "coordinator:work:";

    /// <summary>Epoch counter prefix: <c>coordinator:epoch:{coordinatorId}</c>, INCR on every start (fencing token source).</summary>
    public const string EpochPrefix = "coordinator:epoch:";

    /// <summary>
    /// D6 registry: a sorted set of coordinator IDs scored by last heartbeat (Redis ms). Its name matches neither
    /// <c>blocking:heartbeat:*</c> nor <c>blocking:*{id}*</c>, so the runbook's counts and post-cleanup checks ignore it.
    /// </summary>
    public static readonly RedisKey Registry = "blocking:coordinators";

    /// <summary>Consumer group of every inbox stream.</summary>
    public const string InboxGroup = "receivers";

    /// <summary>Pub/sub channel prefix: <c>cfn:events:{coordinatorId}</c> wakes a coordinator (new signal, ACK, unblock).</summary>
    public const string EventsChannelPrefix = "cfn:events:";

    /// <summary>K1 heartbeat key.</summary>
    public static RedisKey Heartbeat(string coordinatorId) =>
        HeartbeatPrefix + Ids.RequireName(coordinatorId, "coordinatorId");

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

    /// <summary>Receiver-side marker that a message was processed (at-least-once becomes effectively-once for handlers that check it).</summary>
    public static RedisKey Processed(string receiverId, string messageId) =>
        ProcessedPrefix + Ids.RequireName(receiverId, "receiverId") + ":" + Ids.RequireSignalId(messageId, "messageId");

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

    /// <summary>The epoch counter of a coordinator ID.</summary>
    public static RedisKey Epoch(string coordinatorId) =>
        EpochPrefix + Ids.RequireName(coordinatorId, "coordinatorId");

    /// <summary>The wake-up channel of a coordinator.</summary>
    public static RedisChannel Events(string coordinatorId) =>
        RedisChannel.Literal(EventsChannelPrefix + Ids.RequireName(coordinatorId, "coordinatorId"));
}
