using System.Collections;
using System.ComponentModel.DataAnnotations;

namespace Cfn.Coordination;

/// <summary>
/// Protocol settings shared by every coordinator in a process. Defaults are SPEC's D8; the environment variable that
/// sets each one (SPEC §3.6) is named in its documentation. Validate with <see cref="Validate"/> at start-up.
/// </summary>
public sealed class CoordinationOptions
{
    /// <summary>Default ACK wait timeout and the stuck-wait threshold (<c>BLOCKING_TIMEOUT_MS</c>, 300000).</summary>
    [Range(typeof(TimeSpan), "00:00:00.001", "1.00:00:00", ErrorMessage = "BLOCKING_TIMEOUT_MS is out of range ({1} to {2})")]
    public TimeSpan BlockingTimeout { get; set; } = TimeSpan.FromMilliseconds(300_000);

    /// <summary>Heartbeat period (<c>HEARTBEAT_INTERVAL_MS</c>, 30000).</summary>
    [Range(typeof(TimeSpan), "00:00:00.010", "01:00:00", ErrorMessage = "HEARTBEAT_INTERVAL_MS is out of range ({1} to {2})")]
    public TimeSpan HeartbeatInterval { get; set; } = TimeSpan.FromMilliseconds(30_000);

    /// <summary>K1 TTL (<c>HEARTBEAT_TTL_SECONDS</c>, 300).</summary>
    [Range(1, 86_400, ErrorMessage = "HEARTBEAT_TTL_SECONDS is out of range ({1} to {2})")]
    public int HeartbeatTtlSeconds { get; set; } = 300;

    /// <summary>Log every successful heartbeat at INFO (<c>HEARTBEAT_DEBUG</c>, false).</summary>
    public bool HeartbeatDebug { get; set; }

    /// <summary>
    /// K3 TTL as written (<c>ACK_TTL_SECONDS</c>, 3600): how long an ACK waits for a waiter that has not read it, a TS
    /// waiter polling for it included (D13).
    /// </summary>
    [Range(1, 7 * 86_400, ErrorMessage = "ACK_TTL_SECONDS is out of range ({1} to {2})")]
    public int AckTtlSeconds { get; set; } = 3600;

    /// <summary>
    /// How long an ACK for a cfn participant is kept (<c>ACK_RETENTION_SECONDS</c>, 300; SPEC D23): <c>ack.lua</c> gives
    /// this TTL to the ACK of a sender in the registry (its wait gets the ACK with the wake-up), and a cfn waiter cuts to
    /// it an ACK it read from its key (a TS peer's, written for an hour). A wait must start within this time of the ACK
    /// to find it (<c>cfn agent wait</c> long after <c>cfn agent send</c>). It leaves time for a coordinator that adopts a dead one's work item to see
    /// which requests were ACKed (the item records them right after the wait; this covers a death in between), and for
    /// the runbook's counts of ACK keys while a wait lasts. Shorter: less memory (an ACK key is about 470 bytes); longer
    /// than <see cref="AckTtlSeconds"/> changes nothing.
    /// </summary>
    [Range(1, 7 * 86_400, ErrorMessage = "ACK_RETENTION_SECONDS is out of range ({1} to {2})")]
    public int AckRetentionSeconds { get; set; } = 300;

    /// <summary>K2 and inbox TTL (<c>SIGNAL_TTL_SECONDS</c>, 86400). Also the age past which a signal is "too old".</summary>
    [Range(1, 30 * 86_400, ErrorMessage = "SIGNAL_TTL_SECONDS is out of range ({1} to {2})")]
    public int SignalTtlSeconds { get; set; } = 86_400;

    /// <summary>
    /// K4 TTL (<c>IDEMPOTENCY_TTL_SECONDS</c>, 900; SPEC D23): the window in which a repeat of a signal (the same message
    /// ID: a sender's retry, a resend of an adopted item's request, a replayed HTTP delivery) is recognised as a
    /// duplicate. A sender retries a signal only while it waits for it (<c>BLOCKING_TIMEOUT_MS</c>, 300 s), and
    /// <c>POST /api/signals/receive</c> refuses a request whose signed timestamp is more than 5 minutes old, so within
    /// the defaults nothing can repeat a signal after its record is gone. Longer: about 170 bytes per signal per second
    /// kept longer; shorter than the longest wait lets a late retry through as a second signal.
    /// </summary>
    [Range(1, 30 * 86_400, ErrorMessage = "IDEMPOTENCY_TTL_SECONDS is out of range ({1} to {2})")]
    public int IdempotencyTtlSeconds { get; set; } = 900;

    /// <summary>
    /// Most signals pending in one receiver's inbox (<c>SIGNAL_INBOX_MAX_LENGTH</c>, 10000). A send that would go beyond
    /// it is refused before anything is written (<see cref="Signals.SignalDeliveryException"/> with reason
    /// <c>inbox_full</c>), so a receiver that stops consuming cannot grow Redis without bound. Higher: more memory held
    /// by a stuck receiver (about one signal JSON per entry); lower: senders refused sooner during a burst. Hand-over of a
    /// dead coordinator's signals to its replacement ignores it (they were accepted once already).
    /// </summary>
    [Range(1, 10_000_000, ErrorMessage = "SIGNAL_INBOX_MAX_LENGTH is out of range ({1} to {2})")]
    public int SignalInboxMaxLength { get; set; } = 10_000;

    /// <summary>
    /// How long a completed work item's K10 record (<c>coordinator:work:…</c>: its input and validation progress) stays
    /// once it is done (<c>FINISHED_WORK_RETENTION_SECONDS</c>, 300; SPEC D23). Its outcome, verdicts and history stay in
    /// the work record for <see cref="WorkResultTtlSeconds"/> (<c>GET /api/swarms/{id}/work/{workId}</c>). It covers a
    /// completion read back after a failover (about 30 s) and an operator looking at a recent item with
    /// <c>redis-cli</c>. Longer: about 800 bytes per item per second kept longer.
    /// </summary>
    [Range(1, 30 * 86_400, ErrorMessage = "FINISHED_WORK_RETENTION_SECONDS is out of range ({1} to {2})")]
    public int FinishedWorkRetentionSeconds { get; set; } = 300;

    /// <summary>
    /// K10 TTL of a new work item (<c>WORK_TTL_SECONDS</c>, 3600): the longest an item may stay unfinished with its
    /// input and validation progress, kept (never reset) through claims, transfers and requeues. An item still in progress
    /// when it expires is gone; its work record says so for a week. Longer suits items that wait long for validators.
    /// </summary>
    [Range(1, 30 * 86_400, ErrorMessage = "WORK_TTL_SECONDS is out of range ({1} to {2})")]
    public int WorkTtlSeconds { get; set; } = 3600;

    /// <summary>
    /// How long the record of a finished work item (completed or failed: its status, owner history, result and verdicts,
    /// not its input) is kept for <c>GET /api/swarms/{id}/work/{workId}</c> and <c>cfn work get</c>
    /// (<c>WORK_RESULT_TTL_SECONDS</c>, 900; SPEC D23). The work-owner marker of the ID lives as long, so a resubmission
    /// is recognised while the result can be read. Longer lets a client ask later; Redis then holds one record (about
    /// 1.5 KiB with two verdicts, measured by bench row h) per item finished in that time.
    /// </summary>
    [Range(1, 30 * 86_400, ErrorMessage = "WORK_RESULT_TTL_SECONDS is out of range ({1} to {2})")]
    public int WorkResultTtlSeconds { get; set; } = 900;

    /// <summary>
    /// Period of the process-wide fallback check for ACKs whose wake-up cannot arrive (<c>ACK_POLL_INTERVAL_MS</c>,
    /// 1000): batched MGETs of the ACKs owed by peers that do not publish (not in the registry: TS coordinators), and of
    /// every missing ACK for two periods after a reconnect; never one read per waiter, none for waits on cfn peers (D3).
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00.010", "01:00:00", ErrorMessage = "ACK_POLL_INTERVAL_MS is out of range ({1} to {2})")]
    public TimeSpan AckFallbackPollInterval { get; set; } = TimeSpan.FromMilliseconds(1000);

    /// <summary>
    /// How long a fencing write (an epoch taken at start or at a death, the escalation lock, a work transfer) waits for
    /// a replica to confirm it with <c>WAIT</c>, when the primary has replicas (<c>REDIS_WAIT_TIMEOUT_MS</c>, 200; SPEC
    /// D19). A write a failover loses would turn fencing around. <c>WAIT</c> holds the multiplexer's connection while
    /// it runs, so longer protects lagging replicas at the cost of stalling that connection; an unconfirmed write is
    /// logged and counted, and goes ahead.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00.001", "00:00:10", ErrorMessage = "REDIS_WAIT_TIMEOUT_MS is out of range ({1} to {2})")]
    public TimeSpan ReplicaWaitTimeout { get; set; } = TimeSpan.FromMilliseconds(200);

    /// <summary>
    /// How many replicas must confirm a fencing write and a work intake (<c>REDIS_MIN_REPLICAS</c>; SPEC D19). Unset: 1
    /// when Redis is reached through Sentinel (a primary there is expected to have replicas, and one that has none may
    /// be an old primary a failover has not yet demoted, whose writes will be dropped), else 1 only while the primary
    /// reports replicas. With a requirement, work is refused (503) while no replica confirms it: durability over
    /// availability, as Redis's own <c>min-replicas-to-write</c>. 0 confirms only when replicas exist.
    /// </summary>
    [Range(0, 10, ErrorMessage = "REDIS_MIN_REPLICAS must be from 0 to 10")]
    public int? MinReplicas { get; set; }

    /// <summary>
    /// Safety re-read of an idle inbox (30 s). Senders always publish a wake-up in the same script that appends the
    /// signal, and every inbox is re-read after a reconnect, so this only bounds the damage of a lost message.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00.010", "01:00:00", ErrorMessage = "InboxFallbackPollInterval is out of range ({1} to {2})")]
    public TimeSpan InboxFallbackPollInterval { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Mixed fleets with the original TypeScript coordinators (<c>CFN_TS_COMPAT</c>, false; SPEC D13). When on, a receiver
    /// also takes a signal that a TS coordinator wrote only as its K2 value (no inbox entry, usually unsigned), moving
    /// it into its inbox exactly once; the monitor watches TS coordinators by their <c>lastHeartbeat</c>; waits on a TS
    /// peer are woken by keyspace notifications when the server sends them. The security cost: anyone who can write
    /// <c>blocking:signal:*</c> can then inject an unsigned signal (logged and counted). When off, such a K2 value is left
    /// in place and reported once. In either mode no stop or cleanup deletes it, except an operator's forced cleanup.
    /// </summary>
    public bool TsCompat { get; set; }

    /// <summary>Activity check interval of the timeout handler (<c>ACTIVITY_CHECK_INTERVAL_MS</c>, 30000); sizes the K7 TTL.</summary>
    [Range(typeof(TimeSpan), "00:00:00.010", "01:00:00", ErrorMessage = "ACTIVITY_CHECK_INTERVAL_MS is out of range ({1} to {2})")]
    public TimeSpan ActivityCheckInterval { get; set; } = TimeSpan.FromMilliseconds(30_000);

    /// <summary>Largest signal payload, as serialized JSON bytes (64 KiB).</summary>
    [Range(1, 16 * 1024 * 1024, ErrorMessage = "MaxPayloadBytes is out of range ({1} to {2})")]
    public int MaxPayloadBytes { get; set; } = 64 * 1024;

    /// <summary>
    /// K7 TTL in seconds: it must outlive the blocking timeout plus one activity check (SPEC K7: an activity record that expired mid-wait would make a live coordinator look gone), and is never
    /// below the TS value of 600 s.
    /// </summary>
    public int ActivityTtlSeconds =>
        (int)Math.Max(600, Math.Ceiling((BlockingTimeout + ActivityCheckInterval + ActivityCheckInterval).TotalSeconds));

    /// <summary>Throws <see cref="ValidationException"/> naming the first bad field.</summary>
    public void Validate()
    {
        OptionsValidation.Annotations(this);

        if (TimeSpan.FromSeconds(HeartbeatTtlSeconds) <= HeartbeatInterval)
        {
            throw new ValidationException(
                $"HeartbeatTtlSeconds ({HeartbeatTtlSeconds}) must be longer than HeartbeatInterval ({HeartbeatInterval.TotalMilliseconds} ms)");
        }
    }

    /// <summary>
    /// Reads the protocol variables of SPEC §3.6 (<c>BLOCKING_TIMEOUT_MS</c>, <c>HEARTBEAT_INTERVAL_MS</c>,
    /// <c>HEARTBEAT_TTL_SECONDS</c>, <c>HEARTBEAT_DEBUG</c>, <c>ACK_TTL_SECONDS</c>, <c>SIGNAL_TTL_SECONDS</c>,
    /// <c>IDEMPOTENCY_TTL_SECONDS</c>, <c>SIGNAL_INBOX_MAX_LENGTH</c>, <c>ACK_POLL_INTERVAL_MS</c>, <c>ACTIVITY_CHECK_INTERVAL_MS</c>, <c>WORK_RESULT_TTL_SECONDS</c>, <c>REDIS_WAIT_TIMEOUT_MS</c>, <c>CFN_TS_COMPAT</c>, and the obsolete
    /// <c>BLOCKING_TIMEOUT</c>) from <paramref name="environment"/> (the process environment when null), then validates.
    /// </summary>
    /// <exception cref="ValidationException">A value is not a number, or breaks its range; the message names the variable.</exception>
    public static CoordinationOptions FromEnvironment(IDictionary? environment = null)
    {
        var env = new EnvironmentSettings(environment);
        var o = new CoordinationOptions();
        o.BlockingTimeout = env.Milliseconds("BLOCKING_TIMEOUT_MS") ?? env.Milliseconds("BLOCKING_TIMEOUT") ?? o.BlockingTimeout;
        o.HeartbeatInterval = env.Milliseconds("HEARTBEAT_INTERVAL_MS") ?? o.HeartbeatInterval;
        o.HeartbeatTtlSeconds = env.PositiveInt("HEARTBEAT_TTL_SECONDS") ?? o.HeartbeatTtlSeconds;
        o.HeartbeatDebug = env.Flag("HEARTBEAT_DEBUG") ?? o.HeartbeatDebug;
        o.AckTtlSeconds = env.PositiveInt("ACK_TTL_SECONDS") ?? o.AckTtlSeconds;
        o.AckRetentionSeconds = env.PositiveInt("ACK_RETENTION_SECONDS") ?? o.AckRetentionSeconds;
        o.SignalTtlSeconds = env.PositiveInt("SIGNAL_TTL_SECONDS") ?? o.SignalTtlSeconds;
        o.IdempotencyTtlSeconds = env.PositiveInt("IDEMPOTENCY_TTL_SECONDS") ?? o.IdempotencyTtlSeconds;
        o.SignalInboxMaxLength = env.PositiveInt("SIGNAL_INBOX_MAX_LENGTH") ?? o.SignalInboxMaxLength;
        o.AckFallbackPollInterval = env.Milliseconds("ACK_POLL_INTERVAL_MS") ?? o.AckFallbackPollInterval;
        o.ActivityCheckInterval = env.Milliseconds("ACTIVITY_CHECK_INTERVAL_MS") ?? o.ActivityCheckInterval;
        o.WorkResultTtlSeconds = env.PositiveInt("WORK_RESULT_TTL_SECONDS") ?? o.WorkResultTtlSeconds;
        o.FinishedWorkRetentionSeconds = env.PositiveInt("FINISHED_WORK_RETENTION_SECONDS") ?? o.FinishedWorkRetentionSeconds;
        o.WorkTtlSeconds = env.PositiveInt("WORK_TTL_SECONDS") ?? o.WorkTtlSeconds;
        o.ReplicaWaitTimeout = env.Milliseconds("REDIS_WAIT_TIMEOUT_MS") ?? o.ReplicaWaitTimeout;
        o.MinReplicas = env.WholeNumber("REDIS_MIN_REPLICAS") ?? o.MinReplicas;
        o.TsCompat = env.Flag("CFN_TS_COMPAT") ?? o.TsCompat;
        o.Validate();
        return o;
    }
}
