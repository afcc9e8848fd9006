using Cfn.Coordination.Activity;
using Cfn.Coordination.Identity;
using Cfn.Coordination.Redis;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Cfn.Coordination.Deadlocks;

/// <summary>
/// Reads the K7 activity records of blocking coordinators, builds their wait-for graph and reports its cycles
/// (SPEC §5 #65). Each newly found deadlock is logged once at ERROR as
/// <c>deadlock detected: A -> B -> A</c> (operators grep that literal); a deadlock that persists from the previous pass of
/// the same instance is not logged again, one that disappears and comes back is. Bad data never makes it throw: missing
/// keys are skipped, malformed values are skipped, logged at WARN and counted in <see cref="MalformedValues"/>.
/// Thread-safe.
/// </summary>
internal sealed class DeadlockDetector
{
    /// <summary>The largest number of keys one <c>MGET</c> reads.</summary>
    public const int BatchSize = 500;

    private readonly IDatabase _database;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly object _gate = new();
    private HashSet<string> _previous = new(StringComparer.Ordinal);
    private long _malformed;

    /// <summary>Creates a detector reading K7 through <paramref name="database"/>.</summary>
    public DeadlockDetector(IDatabase database, ILogger logger, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(database);
        ArgumentNullException.ThrowIfNull(logger);
        ArgumentNullException.ThrowIfNull(time);
        _database = database;
        _logger = logger;
        _time = time;
    }

    /// <summary>How many malformed K7 values (bad JSON, missing required fields, wrong types) were skipped so far.</summary>
    public long MalformedValues => Interlocked.Read(ref _malformed);

    /// <summary>
    /// Reads <c>coordinator:activity:{id}</c> of every ID (deduplicated) with <c>MGET</c> in batches of at most
    /// <see cref="BatchSize"/> keys, then analyses them as <see cref="Detect"/> does. A missing key is skipped; a
    /// malformed value is skipped, logged and counted; an invalid ID (one that cannot name a key) is skipped and logged.
    /// The ID of a record is the one of its key, whatever its <c>coordinatorId</c> field says.
    /// </summary>
    /// <exception cref="RedisException">Redis failed; bad data never throws.</exception>
    public async Task<DeadlockSnapshot> DetectAsync(IEnumerable<string> blockingCoordinatorIds)
    {
        ArgumentNullException.ThrowIfNull(blockingCoordinatorIds);
        var ids = new List<string>();
        var keys = new List<RedisKey>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var id in blockingCoordinatorIds)
        {
            if (id is null || !seen.Add(id))
            {
                continue;
            }

            if (!Ids.IsValidName(id))
            {
                _logger.LogWarning("Deadlock check skipped an invalid coordinator ID: {Rule}", Ids.NameRule);
                continue;
            }

            ids.Add(id);
            keys.Add(Keys.Activity(id));
        }

        // Every batch is sent before the first reply is awaited: one pipelined round trip, whatever the swarm's size.
        var batches = new List<Task<RedisValue[]>>();
        for (var offset = 0; offset < keys.Count; offset += BatchSize)
        {
            var batch = keys.GetRange(offset, Math.Min(BatchSize, keys.Count - offset)).ToArray();
            batches.Add(_database.StringGetAsync(batch));
        }

        var records = new List<ActivityRecord>(ids.Count);
        for (var b = 0; b < batches.Count; b++)
        {
            var values = await batches[b].ConfigureAwait(false);
            for (var i = 0; i < values.Length; i++)
            {
                var id = ids[(b * BatchSize) + i];
                if (values[i].IsNull)
                {
                    continue; // expired, cleaned up, or not a string
                }

                if (Json.TryDeserialize<ActivityRecord>(values[i].ToString(), out var record, out var error) &&
                    WaitForGraph.SplitWaitingFor(record!.WaitingFor).FirstOrDefault(w => !Ids.IsValidName(w)) is { } invalid)
                {
                    // An ID read back that cannot name a coordinator: the record is skipped, not half-used.
                    Interlocked.Increment(ref _malformed);
                    _logger.LogWarning("Malformed activity record key={Key} : waitingFor holds an invalid ID ({Length} chars): {Rule}",
                        Keys.Activity(id).ToString(), invalid.Length, Ids.NameRule);
                }
                else if (record is not null)
                {
                    records.Add(string.Equals(record!.CoordinatorId, id, StringComparison.Ordinal) ? record : record with { CoordinatorId = id });
                }
                else
                {
                    Interlocked.Increment(ref _malformed);
                    _logger.LogWarning("Malformed activity record key={Key} : {Error}", Keys.Activity(id).ToString(), error);
                }
            }
        }

        return Detect(records);
    }

    /// <summary>
    /// Analyses records already read (for the API and tests) and logs the deadlocks that are new since this
    /// instance's previous pass. Records that are null or have no coordinator ID are ignored.
    /// </summary>
    public DeadlockSnapshot Detect(IEnumerable<ActivityRecord> records)
    {
        var snapshot = Analyze(records, _time.GetUtcNow().ToUnixTimeMilliseconds());
        var current = new HashSet<string>(StringComparer.Ordinal);
        var fresh = new List<Deadlock>();
        lock (_gate)
        {
            foreach (var deadlock in snapshot.Deadlocks)
            {
                var identity = string.Join(',', deadlock.Coordinators);
                current.Add(identity);
                if (!_previous.Contains(identity))
                {
                    fresh.Add(deadlock);
                }
            }

            _previous = current;
        }

        foreach (var deadlock in fresh)
        {
            _logger.LogError("deadlock detected: {Cycle}", deadlock.Describe());
        }

        return snapshot;
    }

    /// <summary>
    /// The pure analysis: the wait-for graph of the blocking records (<see cref="WaitForGraph.FromActivity"/>) and its
    /// deadlocks (<see cref="CycleFinder.FindDeadlocks"/>). No logging, no state.
    /// </summary>
    /// <param name="records">K7 records; null ones and those without a coordinator ID are ignored.</param>
    /// <param name="timestampMs">The snapshot's time, milliseconds since the Unix epoch.</param>
    public static DeadlockSnapshot Analyze(IEnumerable<ActivityRecord> records, long timestampMs)
    {
        ArgumentNullException.ThrowIfNull(records);
        var usable = records.Where(r => r is not null && !string.IsNullOrWhiteSpace(r.CoordinatorId)).ToList();
        var blocking = usable.Where(WaitForGraph.IsBlocking).Select(r => r.CoordinatorId).Distinct(StringComparer.Ordinal).Count();
        var deadlocks = CycleFinder.FindDeadlocks(WaitForGraph.FromActivity(usable));
        return new DeadlockSnapshot(timestampMs, blocking, deadlocks);
    }
}
