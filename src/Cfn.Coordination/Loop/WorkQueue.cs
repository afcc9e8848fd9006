using System.Collections.Concurrent;
using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Text.Json;
using System.Text;
using Cfn.Coordination.Identity;
using Cfn.Coordination.Loop;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Work;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

// An entry point of the library: public at the namespace root (SPEC D22), its machinery stays in Loop.
namespace Cfn.Coordination;

/// <summary>An item waiting in a swarm's queue (<c>swarm:{swarmId}:queue</c>, JSON, camelCase).</summary>
public sealed record QueuedWork
{
    /// <summary>The work item's ID (also the K10 key's last segment).</summary>
    public required string WorkId { get; init; }

    /// <summary>What the validators validate (any JSON).</summary>
    public required JsonElement Input { get; init; }

    /// <summary>When it was queued (local clock, ms).</summary>
    public required long EnqueuedAt { get; init; }

    /// <summary>Set when a coordinator gave the item back (it released its K10 item): the next taker claims it from there.</summary>
    public string? ReleasedBy { get; init; }

    /// <summary>How many times a coordinator gave it back.</summary>
    public int Returns { get; init; }

    /// <summary>The entry as it sits in Redis (to remove it from the taker's taken list once recorded).</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public string? Raw { get; init; }
}

/// <summary>What <see cref="WorkQueue.EnqueueAsync"/> queued.</summary>
/// <param name="WorkId">The item's ID (generated when none was given).</param>
/// <param name="QueueLength">The queue's length right after.</param>
public sealed record EnqueueResult(string WorkId, long QueueLength);

/// <summary>The swarm's queue already holds its maximum number of items; nothing was queued.</summary>
public sealed class WorkQueueFullException(string swarmId, int maxLength)
    : InvalidOperationException($"work queue of swarm {swarmId} is full ({maxLength} items); nothing was queued")
{
    /// <summary>The swarm.</summary>
    public string SwarmId { get; } = swarmId;

    /// <summary>The queue's bound.</summary>
    public int MaxLength { get; } = maxLength;
}

/// <summary>
/// Each swarm's queue of work waiting for a coordinator: a bounded Redis list (<c>swarm:{swarmId}:queue</c>), pushed at
/// the back, taken from the front, and an item a coordinator gives back goes to the front again. Coordinators waiting
/// for work sleep on the swarm's pub/sub channel (<c>cfn:queue:{swarmId}</c>, published by the push script, one
/// subscription per swarm per process) with a slow fallback poll for a lost message (D3): an idle taker costs one
/// <c>LPOP</c> per fallback interval. Taking is <c>LPOP</c>: an item taken by a process that dies before it creates
/// its K10 record is lost (a window of one round trip).
/// </summary>
[SuppressMessage("Naming", "CA1711:Identifiers should not have incorrect suffix", Justification = "It is a queue (a Redis list of work).")]
public sealed partial class WorkQueue : IAsyncDisposable
{
    /// <summary>Default bound of a queue.</summary>
    public const int DefaultMaxLength = 10_000;

    /// <summary>Default fallback poll of a waiting taker.</summary>
    public static readonly TimeSpan DefaultFallbackPoll = TimeSpan.FromSeconds(5);

    /// <summary>Room kept in a validation signal's payload for everything but the input.</summary>
    private const int PayloadOverheadBytes = 256;

    private readonly RedisContext _redis;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<string, Lazy<Task<Waiters>>> _swarms = new(StringComparer.Ordinal);
    private long _malformed;

    /// <summary>Creates the queue view.</summary>
    /// <param name="redis">The process's Redis.</param>
    /// <param name="maxLength">Most items a swarm's queue holds (new work beyond it is refused).</param>
    /// <param name="fallbackPoll">How often a waiting taker looks without a wake-up (<see cref="DefaultFallbackPoll"/> when null).</param>
    /// <param name="logger">Logger (from the Redis context's factory when null).</param>
    public WorkQueue(RedisContext redis, int maxLength = DefaultMaxLength, TimeSpan? fallbackPoll = null, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(redis);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxLength, 1);
        _redis = redis;
        MaxLength = maxLength;
        FallbackPoll = fallbackPoll ?? DefaultFallbackPoll;
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(FallbackPoll, TimeSpan.Zero, nameof(fallbackPoll));
        _logger = logger ?? redis.LoggerFactory.CreateLogger<WorkQueue>();
    }

    /// <summary>Most items a swarm's queue holds.</summary>
    public int MaxLength { get; }

    /// <summary>The fallback poll of a waiting taker.</summary>
    public TimeSpan FallbackPoll { get; }

    /// <summary>Largest input accepted (UTF-8 bytes of its JSON): it must fit a validation signal's payload.</summary>
    public int MaxInputBytes => Math.Max(1, _redis.Options.MaxPayloadBytes - PayloadOverheadBytes);

    /// <summary>Queue entries that could not be read (skipped and dropped).</summary>
    public long Malformed => Interlocked.Read(ref _malformed);

    /// <summary>Queues new work at the back of <paramref name="swarmId"/>'s queue and wakes its coordinators.</summary>
    /// <param name="swarmId">The swarm.</param>
    /// <param name="workId">The item's ID; a new <c>work-{unixms}-{8 base36}</c> when null.</param>
    /// <param name="input">What to validate (any JSON value).</param>
    /// <exception cref="InvalidIdException">An ID is invalid; nothing was written.</exception>
    /// <exception cref="ArgumentException">The input is missing or larger than <see cref="MaxInputBytes"/>; nothing was written.</exception>
    /// <exception cref="WorkQueueFullException">The queue holds <see cref="MaxLength"/> items; nothing was written.</exception>
    /// <exception cref="TimeoutException">The primary has replicas and none confirmed the item in time (a failover could drop it): retry with the same ID.</exception>
    public async Task<EnqueueResult> EnqueueAsync(string swarmId, string? workId, JsonElement input)
    {
        Ids.RequireName(swarmId, "swarmId");
        workId = workId is null ? NewWorkId(_redis.Time) : Ids.RequireName(workId, "workId");
        if (input.ValueKind == JsonValueKind.Undefined)
        {
            throw new ArgumentException("input is required (any JSON value)", nameof(input));
        }

        var size = Encoding.UTF8.GetByteCount(input.GetRawText());
        if (size > MaxInputBytes)
        {
            throw new ArgumentException(
                string.Create(CultureInfo.InvariantCulture, $"input exceeds maximum size of {MaxInputBytes} bytes (got {size})"), nameof(input));
        }

        var item = new QueuedWork { WorkId = workId, Input = input.Clone(), EnqueuedAt = _redis.Time.GetUtcNow().ToUnixTimeMilliseconds() };
        var length = await PushAsync(swarmId, item, front: false).ConfigureAwait(false);
        if (length < 0)
        {
            throw new WorkQueueFullException(swarmId, MaxLength);
        }

        // Accepted means it survives a failover: with replicas, an enqueue no replica confirmed is not reported as
        // accepted (the old primary's unreplicated writes are dropped when it rejoins as a replica). Retrying with the
        // same work ID is safe: a second copy of an ID is recognised by its work record.
        if (!await _redis.Replication.ConfirmAsync("work_enqueue").ConfigureAwait(false))
        {
            throw new TimeoutException(string.Create(CultureInfo.InvariantCulture,
                $"work {workId} was not confirmed by a replica within {_redis.Options.ReplicaWaitTimeout.TotalMilliseconds} ms (REDIS_WAIT_TIMEOUT_MS, REDIS_MIN_REPLICAS); retry with the same workId"));
        }

        return new EnqueueResult(workId, length);
    }

    /// <summary>
    /// Gives an item back to the front of its swarm's queue, marked as released by <paramref name="releasedBy"/> (whose
    /// K10 item the next taker claims). Never refused for length: the item was in the queue before.
    /// </summary>
    public async Task ReturnAsync(string swarmId, QueuedWork item, string? releasedBy)
    {
        ArgumentNullException.ThrowIfNull(item);
        Ids.RequireName(swarmId, "swarmId");
        if (releasedBy is not null)
        {
            Ids.RequireName(releasedBy, "releasedBy");
        }

        await PushAsync(swarmId, item with { ReleasedBy = releasedBy ?? item.ReleasedBy, Returns = item.Returns + 1 }, front: true)
            .ConfigureAwait(false);
    }

    /// <summary>
    /// Takes the front item of <paramref name="swarmId"/>'s queue, or null when it is empty (no waiting). With a
    /// <paramref name="takerId"/> the item moves atomically to the taker's taken list (<see cref="Keys.SwarmTaken"/>) instead
    /// of leaving Redis, until <see cref="RecordedAsync"/>: a crash in between cannot lose it.
    /// </summary>
    public async Task<QueuedWork?> TryTakeAsync(string swarmId, string? takerId = null)
    {
        var key = Keys.SwarmQueue(swarmId);
        var taken = takerId is null ? default : Keys.SwarmTaken(swarmId, takerId);
        while (true)
        {
            var raw = takerId is null
                ? (string?)await _redis.Database.ListLeftPopAsync(key).ConfigureAwait(false)
                : (string?)await _redis.Database.ListMoveAsync(key, taken, ListSide.Left, ListSide.Right).ConfigureAwait(false);
            if (raw is null)
            {
                return null;
            }

            if (Json.TryDeserialize<QueuedWork>(raw, out var item, out var error) && Ids.IsValidName(item!.WorkId) &&
                item.Input.ValueKind != JsonValueKind.Undefined && (item.ReleasedBy is null || Ids.IsValidName(item.ReleasedBy)))
            {
                return item with { Raw = raw };
            }

            Interlocked.Increment(ref _malformed);
            _logger.LogWarning("Malformed work queue entry dropped swarm={SwarmId}: {Error}", swarmId, error ?? "invalid workId, input or releasedBy");
            if (takerId is not null)
            {
                await _redis.Database.ListRemoveAsync(taken, raw, 1).ConfigureAwait(false);
            }
        }
    }

    /// <summary>The taker has recorded <paramref name="item"/> (its K10 item exists, or it was skipped): it leaves the taken list.</summary>
    public async Task RecordedAsync(string swarmId, string takerId, QueuedWork item)
    {
        ArgumentNullException.ThrowIfNull(item);
        if (item.Raw is not null)
        {
            await _redis.Database.ListRemoveAsync(Keys.SwarmTaken(swarmId, takerId), item.Raw, 1).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Gives one taken, unrecorded item back to the front of the queue (the taker was superseded before it could record
    /// it); only that entry moves, so a newer instance's taken items under the same ID stay where they are.
    /// </summary>
    public async Task<bool> UntakeAsync(string swarmId, string takerId, QueuedWork item)
    {
        ArgumentNullException.ThrowIfNull(item);
        if (item.Raw is null)
        {
            return false;
        }

        var moved = (long)await _redis.Database.ScriptEvaluateAsync(RedisScripts.WorkUntake,
            [Keys.SwarmTaken(swarmId, takerId), Keys.SwarmQueue(swarmId)], [item.Raw, Keys.SwarmQueueChannel(swarmId).ToString()]).ConfigureAwait(false);
        return moved == 1;
    }

    /// <summary>
    /// Puts back at the front of the queue everything <paramref name="takerId"/> took and never recorded (it crashed, or
    /// Redis failed in between); returns how many. Run when a coordinator's loop starts and when a coordinator is cleaned up.
    /// </summary>
    public Task<long> RequeueTakenAsync(string swarmId, string takerId) => RequeueTakenAsync(_redis.Database, swarmId, takerId, _logger);

    /// <summary>The same for callers without a queue object (the cleanup of a dead coordinator); logs what it moved.</summary>
    internal static async Task<long> RequeueTakenAsync(IDatabase database, string swarmId, string takerId, ILogger logger)
    {
        var moved = (long)await database.ScriptEvaluateAsync(RedisScripts.WorkRequeueTaken,
            [Keys.SwarmTaken(swarmId, takerId), Keys.SwarmQueue(swarmId)], [Keys.SwarmQueueChannel(swarmId).ToString()]).ConfigureAwait(false);
        if (moved > 0)
        {
            logger.LogWarning("Work taken but never recorded put back in the queue swarm={SwarmId} taker={TakerId} items={Items}", swarmId, takerId, moved);
        }

        return moved;
    }

    /// <summary>
    /// Takes the front item of <paramref name="swarmId"/>'s queue, waiting (pub/sub wake-up, fallback poll) until there
    /// is one. Redis errors are logged and retried at the fallback interval.
    /// </summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> fired.</exception>
    public async Task<QueuedWork> TakeAsync(string swarmId, CancellationToken cancellationToken, string? takerId = null)
    {
        Ids.RequireName(swarmId, "swarmId");
        var waiters = await WaitersOfAsync(swarmId).ConfigureAwait(false);
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var wake = waiters.Next; // taken before looking, so a push between the look and the wait still wakes us
            try
            {
                if (await TryTakeAsync(swarmId, takerId).ConfigureAwait(false) is { } item)
                {
                    return item;
                }
            }
            catch (Exception e) when (RedisErrors.IsTransient(e))
            {
                _logger.LogWarning("Redis error while taking work swarm={SwarmId}: {Error}", swarmId, RedisErrors.FirstClause(e));
            }

            try
            {
                await wake.WaitAsync(FallbackPoll, _redis.Time, cancellationToken).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                // fallback poll
            }
        }
    }

    /// <summary>The number of items in <paramref name="swarmId"/>'s queue.</summary>
    public Task<long> LengthAsync(string swarmId) => _redis.Database.ListLengthAsync(Keys.SwarmQueue(swarmId));

    private async Task<long> PushAsync(string swarmId, QueuedWork item, bool front)
    {
        // The work ID's record says "queued" in the same step as the push (a give-back only when its owner released it).
        var result = await _redis.Database.ScriptEvaluateAsync(
            RedisScripts.WorkEnqueue,
            [Keys.SwarmQueue(swarmId), Keys.WorkRecord(swarmId, item.WorkId)],
            [Json.Serialize(item), MaxLength, Keys.SwarmQueueChannel(swarmId).ToString(), front ? "front" : "back",
                (long)RecordNote.UnfinishedTtl.TotalMilliseconds, item.ReleasedBy ?? string.Empty]).ConfigureAwait(false);
        return (long)result;
    }

    private Task<Waiters> WaitersOfAsync(string swarmId) =>
        _swarms.GetOrAdd(swarmId, id => new Lazy<Task<Waiters>>(() => SubscribeAsync(id))).Value;

    private async Task<Waiters> SubscribeAsync(string swarmId)
    {
        var waiters = new Waiters(Keys.SwarmQueueChannel(swarmId));
        await _redis.Multiplexer.GetSubscriber().SubscribeAsync(waiters.Channel, waiters.Handler).ConfigureAwait(false);
        return waiters;
    }

    /// <summary>A new work-item ID: <c>work-{unixms}-{8 lowercase base36}</c>.</summary>
    public static string NewWorkId(TimeProvider? time = null)
    {
        const string alphabet = "0123456789abcdefghijklmnopqrstuvwxyz";
        Span<char> suffix = stackalloc char[8];
        for (var i = 0; i < suffix.Length; i++)
        {
            suffix[i] = alphabet[System.Security.Cryptography.RandomNumberGenerator.GetInt32(alphabet.Length)];
        }

        var ms = (time ?? TimeProvider.System).GetUtcNow().ToUnixTimeMilliseconds();
        return string.Create(CultureInfo.InvariantCulture, $"work-{ms}-{suffix}");
    }

    /// <inheritdoc/>
    public async ValueTask DisposeAsync()
    {
        foreach (var entry in _swarms.Values)
        {
            if (entry.IsValueCreated && entry.Value.IsCompletedSuccessfully)
            {
                try
                {
                    await _redis.Multiplexer.GetSubscriber().UnsubscribeAsync(entry.Value.Result.Channel, entry.Value.Result.Handler)
                        .ConfigureAwait(false);
                }
                catch (Exception e) when (e is RedisException or ObjectDisposedException or TimeoutException)
                {
                    // the connection is going away anyway
                }
            }
        }

        _swarms.Clear();
    }

    /// <summary>The takers of one swarm in this process: every wake-up releases all of them (each then tries an LPOP).</summary>
    private sealed class Waiters
    {
        private TaskCompletionSource _next = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Waiters(RedisChannel channel)
        {
            Channel = channel;
            Handler = (_, _) => Pulse(); // kept, so disposal removes this queue's handler only
        }

        public RedisChannel Channel { get; }

        public Action<RedisChannel, RedisValue> Handler { get; }

        public Task Next => Volatile.Read(ref _next).Task;

        public void Pulse() =>
            Interlocked.Exchange(ref _next, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
    }
}
