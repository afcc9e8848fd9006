using Cfn.Coordination.Redis;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Cfn.Coordination.Activity;

/// <summary>
/// Writes K7 on every progress event (signal sent or received, ACK received, iteration change, blocking start or end,
/// work state change), with <c>lastActivity</c> from the Redis clock (D5). Heartbeats only extend the key's TTL.
/// </summary>
internal sealed class ActivityRecorder
{
    private readonly IDatabase _database;
    private readonly Coordinator _coordinator;
    private readonly int _ttlSeconds;
    private readonly object _gate = new();
    private readonly List<RunningWait> _waits = [];

    // Whether the deadlines index is known to hold no deadline of this coordinator, so a write without a wait can skip
    // its ZREM (one command less per ACK of a coordinator that is not waiting). False at start (an earlier instance
    // may have left one); true only after a write that removed it landed while no deadline-adding write was prepared
    // since or still on its way (_addsInFlight: one that failed stays counted, which only keeps the ZREM).
    private bool _indexClear;
    private long _indexGeneration;
    private int _addsInFlight;

    // The last record written without a wait, serialised: a coordinator that is not waiting writes the same K7 on every
    // ACK and wait end until its iteration, phase or working flag changes, so the JSON is built once for all of them.
    private IdleRecord? _idle;
    private OwnKeys? _keys;

    internal ActivityRecorder(IDatabase database, Coordinator coordinator, int ttlSeconds)
    {
        _database = database;
        _coordinator = coordinator;
        _ttlSeconds = ttlSeconds;
    }

    /// <summary>Redis time (ms) of the last write, or 0 before the first.</summary>
    public long LastActivity { get; private set; }

    /// <summary>This coordinator's own keys (built once; every progress write names them).</summary>
    internal OwnKeys OwnKeys => _keys ??= new OwnKeys(_coordinator.Id);

    internal int RunningWaits
    {
        get
        {
            lock (_gate)
            {
                return _waits.Count;
            }
        }
    }

    /// <summary>Records a progress event now; returns the Redis time written (ms).</summary>
    /// <exception cref="CoordinatorSupersededException">This instance was superseded; nothing was written.</exception>
    public async Task<long> RecordAsync()
    {
        var write = Prepare();
        var reply = await _database.ScriptEvaluateAsync(
            RedisScripts.Activity,
            [OwnKeys.Activity, OwnKeys.Epoch, Keys.Deadlines],
            write.Arguments(_coordinator.Epoch, _coordinator.Id)).ConfigureAwait(false);
        if (RedisScripts.IsFenced(reply, out var currentEpoch))
        {
            throw _coordinator.Superseded("activity", currentEpoch);
        }

        var now = (long)reply;

        Written(now, write);
        return now;
    }

    /// <summary>
    /// The K7 write of the current state, for a script that records progress in the same step as its own write
    /// (<c>lib_activity.lua</c>); the caller reports the Redis time it got back with <see cref="Written"/>.
    /// </summary>
    internal ActivityWrite Prepare()
    {
        ActivityRecord? snapshot = null;
        IdleRecord? idle = null;
        long knownDeadline = 0, startingTimeout = 0, generation;
        lock (_gate)
        {
            if (_waits.Count == 0 && _idle is { } cached && cached.Matches(_coordinator))
            {
                idle = cached;
            }
            else
            {
                snapshot = Snapshot();
            }

            generation = _indexGeneration;
            foreach (var wait in _waits)
            {
                if (wait.StartedAt != 0)
                {
                    var deadline = wait.StartedAt + wait.TimeoutMs;
                    knownDeadline = knownDeadline == 0 ? deadline : Math.Min(knownDeadline, deadline);
                }
                else
                {
                    startingTimeout = startingTimeout == 0 ? wait.TimeoutMs : Math.Min(startingTimeout, wait.TimeoutMs);
                }
            }

            if (knownDeadline > 0 || startingTimeout > 0)
            {
                _indexClear = false;
                generation = ++_indexGeneration;
                _addsInFlight++;
            }
            else if (_indexClear)
            {
                knownDeadline = -1;
            }
        }

        if (idle is null)
        {
            var (json, fields) = Json.SerializeForStamp(snapshot!);
            if (snapshot!.Status != "blocking")
            {
                idle = new IdleRecord(snapshot.Iteration, snapshot.Phase, snapshot.Status, json, fields);
                _idle = idle;
            }
            else
            {
                return new ActivityWrite(json, _ttlSeconds, fields, knownDeadline, startingTimeout, generation);
            }
        }

        return new ActivityWrite(idle.Json, _ttlSeconds, idle.StampFields, knownDeadline, startingTimeout, generation);
    }

    /// <summary>A write prepared by <see cref="Prepare"/> landed at Redis time <paramref name="now"/> (ms).</summary>
    internal void Written(long now, ActivityWrite write)
    {
        LastActivity = now;
        lock (_gate)
        {
            if (write.AddsDeadline)
            {
                _addsInFlight--;
            }
            else if (write.KnownDeadline == 0 && _addsInFlight == 0 && write.IndexGeneration == _indexGeneration)
            {
                _indexClear = true; // this write's ZREM landed after every deadline-adding write
            }

            // A wait's start is the Redis time of the record that announced it (D5), learnt from this write.
            foreach (var wait in _waits.Where(w => w.StartedAt == 0))
            {
                wait.StartedAt = now;
            }
        }
    }

    /// <summary>
    /// Records a progress event, logging instead of throwing when Redis fails or the instance was superseded: a lost
    /// activity update must never fail the signal, ACK or work write it accompanies. Returns the Redis time, or 0.
    /// </summary>
    internal async Task<long> TryRecordAsync(ILogger logger)
    {
        try
        {
            return await RecordAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (RedisErrors.IsTransient(e))
        {
            logger.LogWarning("Redis error while recording activity coordinator={CoordinatorId}: {Error}", _coordinator.Id, e.Message);
        }
        catch (CoordinatorSupersededException)
        {
            // already logged once by the coordinator
        }

        return 0;
    }

    /// <summary>Redis time (ms) at which the wait behind <paramref name="token"/> was announced, or 0.</summary>
    internal long StartOf(object token)
    {
        lock (_gate)
        {
            return ((RunningWait)token).StartedAt;
        }
    }

    /// <summary>
    /// A read-only view of the running waits, oldest first (for <c>GET /api/coordinator/state</c>): what each waits
    /// for, who has ACKed, who is still missing, and since when.
    /// </summary>
    public IReadOnlyList<RunningWaitInfo> GetRunningWaits()
    {
        var now = _coordinator.Redis.Time.GetUtcNow();
        lock (_gate)
        {
            return _waits.Select(w => new RunningWaitInfo(
                w.SignalId,
                w.WaitingFor,
                [.. w.WaitingFor.Except(w.Targets, StringComparer.Ordinal)],
                [.. w.Targets],
                w.StartedAt != 0 ? w.StartedAt : w.BegunAt.ToUnixTimeMilliseconds(),
                w.TimeoutMs,
                (long)(now - w.BegunAt).TotalMilliseconds)).ToList();
        }
    }

    internal object BeginWait(string signalId, IReadOnlyList<string> targets, long timeoutMs)
    {
        var wait = new RunningWait(signalId, targets, timeoutMs) { BegunAt = _coordinator.Redis.Time.GetUtcNow() };
        lock (_gate)
        {
            _waits.Add(wait);
        }

        return wait;
    }

    /// <summary>A wait whose signal was redirected to a replacement before anything was written: it now awaits other targets.</summary>
    internal void RetargetWait(object token, string signalId, IReadOnlyList<string> targets)
    {
        lock (_gate)
        {
            var wait = (RunningWait)token;
            wait.SignalId = signalId;
            wait.WaitingFor = targets;
            wait.Targets = targets;
        }
    }

    internal void UpdateWait(object token, IReadOnlyList<string> missing)
    {
        lock (_gate)
        {
            ((RunningWait)token).Targets = missing;
        }
    }

    internal void EndWait(object token)
    {
        lock (_gate)
        {
            _waits.Remove((RunningWait)token);
        }
    }

    internal ActivityRecord Snapshot()
    {
        lock (_gate)
        {
            var idle = new ActivityRecord
            {
                CoordinatorId = _coordinator.Id,
                SwarmId = _coordinator.SwarmId,
                LastActivity = Json.NowMarker,
                Iteration = _coordinator.Iteration,
                Phase = _coordinator.Phase,
                Status = _coordinator.IsWorking ? "working" : "idle",
            };
            if (_waits.Count == 0)
            {
                return idle;
            }

            var newest = _waits[^1];
            if (_waits.Count == 1)
            {
                // The common case, without the LINQ of the general one: a wait's own targets are distinct already.
                return idle with
                {
                    Status = "blocking",
                    WaitingFor = newest.Targets.Count == 1 ? newest.Targets[0] : string.Join(',', newest.Targets),
                    WaitingForSignal = newest.SignalId,
                    BlockingSince = newest.StartedAt != 0 ? newest.StartedAt : Json.NowMarker,
                    TimeoutMs = newest.TimeoutMs,
                };
            }

            return idle with
            {
                Status = "blocking",
                WaitingFor = string.Join(',', _waits.SelectMany(w => w.Targets).Distinct(StringComparer.Ordinal)),
                WaitingForSignal = newest.SignalId,
                BlockingSince = _waits.Any(w => w.StartedAt != 0) ? _waits.Where(w => w.StartedAt != 0).Min(w => w.StartedAt) : Json.NowMarker,
                TimeoutMs = newest.TimeoutMs,
            };
        }
    }

    /// <summary>A serialised K7 without a wait and what it was built from.</summary>
    private sealed record IdleRecord(int Iteration, string? Phase, string Status, string Json, string StampFields)
    {
        public bool Matches(Coordinator coordinator) =>
            Iteration == coordinator.Iteration && string.Equals(Phase, coordinator.Phase, StringComparison.Ordinal) &&
            Status == (coordinator.IsWorking ? "working" : "idle");
    }

    private sealed class RunningWait(string signalId, IReadOnlyList<string> targets, long timeoutMs)
    {
        public string SignalId { get; set; } = signalId;

        /// <summary>Every target of the wait, as it started (or as a redirect to a replacement changed it).</summary>
        public IReadOnlyList<string> WaitingFor { get; set; } = targets;

        /// <summary>Local time the wait began (for its elapsed time).</summary>
        public DateTimeOffset BegunAt { get; init; }

        /// <summary>The targets whose ACK is still missing.</summary>
        public IReadOnlyList<string> Targets { get; set; } = targets;

        /// <summary>Redis time (ms) of the record that announced the wait; 0 until that write returns.</summary>
        public long StartedAt { get; set; }

        public long TimeoutMs { get; } = timeoutMs;
    }
}
