using System.Globalization;
using Cfn.Coordination.Identity;
using Cfn.Coordination.Redis;
using StackExchange.Redis;

namespace Cfn.Coordination.Validation;

/// <summary>
/// Per-validator duration statistics over a rolling window, kept in Redis so every process shares them (SPEC §3.1 #4,
/// runbook #17). A validator records the time from a validation signal entering its inbox (the Redis time the
/// coordinator sent it) to its completion signal; a coordinator whose wait for a verdict timed out records a timeout
/// for that validator, with the time it waited. Each record goes to <c>validator:durations:{id}</c> (scored by the
/// Redis time it finished, trimmed to the window, at most <see cref="MaxEntriesPerValidator"/> entries, expiring one
/// window after the last record) and marks the validator seen in <c>validator:registry</c>.
/// </summary>
public sealed class ValidatorPerformance
{
    /// <summary>Most records kept per validator within the window (older ones are dropped first).</summary>
    public const int MaxEntriesPerValidator = 10_000;

    private readonly RedisContext _redis;

    /// <summary>Creates the statistics view.</summary>
    /// <param name="redis">The process's Redis.</param>
    /// <param name="window">The rolling window (<c>VALIDATOR_STATS_WINDOW_MS</c>; 1 h when null).</param>
    public ValidatorPerformance(RedisContext redis, TimeSpan? window = null)
    {
        ArgumentNullException.ThrowIfNull(redis);
        _redis = redis;
        Window = window ?? ValidatorRegistry.DefaultRetention;
        ArgumentOutOfRangeException.ThrowIfLessThan(Window, TimeSpan.FromSeconds(1), nameof(window));
    }

    /// <summary>The rolling window.</summary>
    public TimeSpan Window { get; }

    private long WindowMs => (long)Window.TotalMilliseconds;

    /// <summary>Records one validation of <paramref name="validatorId"/> that took <paramref name="durationMs"/>.</summary>
    /// <param name="validatorId">The validator.</param>
    /// <param name="durationMs">Its duration in ms (negative values count as 0).</param>
    /// <param name="timedOut">True when a coordinator stopped waiting for this validator's verdict.</param>
    /// <returns>The duration recorded (ms).</returns>
    /// <exception cref="InvalidIdException">The ID is invalid; nothing was written.</exception>
    public Task<long> RecordAsync(string validatorId, long durationMs, bool timedOut = false) =>
        RecordCoreAsync(validatorId, durationMs.ToString(CultureInfo.InvariantCulture), 0, timedOut);

    /// <summary>
    /// Records one validation that started at <paramref name="startedAtRedisMs"/> (Redis clock, e.g. the time its
    /// signal entered the inbox) and finished now (Redis clock), so no two machines' clocks are compared (D5).
    /// </summary>
    /// <returns>The duration recorded (ms).</returns>
    public Task<long> RecordSinceAsync(string validatorId, long startedAtRedisMs, bool timedOut = false) =>
        RecordCoreAsync(validatorId, "-", startedAtRedisMs, timedOut);

    private async Task<long> RecordCoreAsync(string validatorId, string duration, long startedAt, bool timedOut)
    {
        Ids.RequireName(validatorId, "validatorId");
        var result = await _redis.Database.ScriptEvaluateAsync(
            RedisScripts.ValidatorRecord,
            [Keys.ValidatorDurations(validatorId), Keys.Validators, Keys.ValidatorsSeen],
            [validatorId, duration, startedAt, timedOut ? "1" : "0", WindowMs, MaxEntriesPerValidator, Guid.NewGuid().ToString("N")[..12]])
            .ConfigureAwait(false);
        return (long)result;
    }

    /// <summary>
    /// The statistics of every validator seen within the window, by ID: average, 95th percentile (nearest rank),
    /// count and timeouts of the recorded durations (timeouts included, with the time waited), and when it was last seen.
    /// </summary>
    public async Task<ValidatorPerformanceReport> ReadAsync()
    {
        var database = _redis.Database;
        var now = await RedisTime.NowMsAsync(database).ConfigureAwait(false);
        var since = now - WindowMs;
        var seen = await database.SortedSetRangeByScoreWithScoresAsync(Keys.ValidatorsSeen, since, double.PositiveInfinity)
            .ConfigureAwait(false);
        var live = seen.Where(e => Ids.IsValidName(e.Element)).ToList();
        var reads = live.Select(e => database.SortedSetRangeByScoreAsync(
            Keys.ValidatorDurations((string)e.Element!), since, double.PositiveInfinity)).ToList();
        var members = await Task.WhenAll(reads).ConfigureAwait(false);
        var validators = new List<ValidatorStats>(live.Count);
        for (var i = 0; i < live.Count; i++)
        {
            validators.Add(Summarize((string)live[i].Element!, members[i], (long)live[i].Score));
        }

        validators.Sort((a, b) => string.CompareOrdinal(a.ValidatorId, b.ValidatorId));
        return new ValidatorPerformanceReport(validators, WindowMs);
    }

    /// <summary>Summarizes raw members <c>{durationMs}:{d|t}:{unique}</c>; malformed members are skipped.</summary>
    internal static ValidatorStats Summarize(string validatorId, RedisValue[] members, long lastSeen)
    {
        var durations = new List<long>(members.Length);
        var timeouts = 0;
        foreach (var member in members)
        {
            var text = (string?)member;
            var parts = text?.Split(':');
            if (parts is not { Length: 3 } ||
                !long.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var ms))
            {
                continue;
            }

            durations.Add(ms);
            if (parts[1] == "t")
            {
                timeouts++;
            }
        }

        durations.Sort();
        var average = durations.Count == 0 ? 0 : (long)Math.Round(durations.Average(d => (double)d));
        var p95 = durations.Count == 0 ? 0 : durations[(int)Math.Ceiling(0.95 * durations.Count) - 1];
        return new ValidatorStats(validatorId, average, p95, durations.Count, timeouts, lastSeen);
    }
}

/// <summary>The body of <c>GET /api/validators/performance</c>: <c>{ "validators": [ … ], "windowMs" }</c>.</summary>
/// <param name="Validators">One entry per validator seen within the window, by ID.</param>
/// <param name="WindowMs">The rolling window (ms).</param>
public sealed record ValidatorPerformanceReport(IReadOnlyList<ValidatorStats> Validators, long WindowMs);

/// <summary>One validator's statistics; every duration is in milliseconds (the runbook compares <c>avgDuration</c> to 300000).</summary>
/// <param name="ValidatorId">The validator.</param>
/// <param name="AvgDuration">Average duration (ms).</param>
/// <param name="P95Duration">95th percentile, nearest rank (ms).</param>
/// <param name="Count">Records in the window (timeouts included).</param>
/// <param name="Timeouts">Of which timeouts.</param>
/// <param name="LastSeen">Redis time (ms) of its last record or registration.</param>
public sealed record ValidatorStats(string ValidatorId, long AvgDuration, long P95Duration, int Count, int Timeouts, long LastSeen);
