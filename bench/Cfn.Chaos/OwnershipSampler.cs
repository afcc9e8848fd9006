using System.Text.Json;
using StackExchange.Redis;

namespace Cfn.Chaos;

/// <summary>A work item seen owned by two live coordinators in one atomic snapshot.</summary>
public sealed record DoubleOwnership(string WorkId, DateTimeOffset At, IReadOnlyList<string> Records)
{
    /// <summary>How many samples saw this work ID owned twice.</summary>
    public int Samples { get; set; } = 1;
}

/// <summary>
/// Samples K10 (<c>coordinator:work:{swarm}:{coordinator}:{workId}</c>) every ~200 ms while the run goes on, and flags a
/// work ID owned by two live coordinators at the same moment.
/// <para>
/// How the sampling works, and why a flag is a true double ownership: a SCAN is not atomic, so an item that moves from
/// one key to another during the scan (a claim, a transfer) can show up under both keys. The scan only nominates work
/// IDs seen under two or more keys; for those, one Lua script reads, atomically (nothing else runs in Redis meanwhile),
/// every nominated record, Redis's TIME and the heartbeat registry score of each record's owner. A work ID is flagged
/// only when, in that one snapshot, two records are owned (status <c>in-progress</c> or <c>transferred</c>, not
/// <c>completed</c> or <c>released</c>) and both owners heartbeated within the stale threshold (live instances).
/// Two owned records where one owner is silent (dead, not yet declared) are counted apart, as a figure, not a violation.
/// A double ownership shorter than one sampling period can be missed; the completion counts catch its consequence.
/// </para>
/// </summary>
internal sealed class OwnershipSampler(IConnectionMultiplexer redis, int staleThresholdMs)
{
    private const string SnapshotScript = """
        local t = redis.call('TIME')
        local out = { tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) }
        for i = 1, #KEYS do out[#out + 1] = redis.call('GET', KEYS[i]) or false end
        for i = 1, #ARGV do out[#out + 1] = redis.call('ZSCORE', 'blocking:coordinators', ARGV[i]) or false end
        return out
        """;

    private readonly Dictionary<string, DoubleOwnership> _violations = new(StringComparer.Ordinal);
    private readonly HashSet<string> _silentOwner = new(StringComparer.Ordinal);

    public int Samples { get; private set; }

    public int SamplesFailed { get; private set; }

    public int Nominated { get; private set; }

    public IReadOnlyList<DoubleOwnership> Violations => [.. _violations.Values];

    /// <summary>Work IDs seen owned twice while one owner had stopped heartbeating (not a violation).</summary>
    public IReadOnlyCollection<string> OwnedTwiceWithSilentOwner => _silentOwner;

    public async Task RunAsync(CancellationToken stop)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(200));
        try
        {
            while (await timer.WaitForNextTickAsync(stop))
            {
                try
                {
                    await SampleAsync();
                    Samples++;
                }
                catch (Exception e) when (e is RedisException or TimeoutException or JsonException)
                {
                    SamplesFailed++; // Redis restarting: the next tick samples again
                }
            }
        }
        catch (OperationCanceledException)
        {
            // stopped
        }
    }

    public async Task SampleAsync()
    {
        var server = redis.GetServers()[0];
        var byWork = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        await foreach (var key in server.KeysAsync(pattern: "coordinator:work:*", pageSize: 1000))
        {
            var parts = ((string)key!).Split(':');
            if (parts.Length == 5)
            {
                (byWork.TryGetValue(parts[4], out var keys) ? keys : byWork[parts[4]] = []).Add(key!);
            }
        }

        foreach (var (workId, keys) in byWork.Where(g => g.Value.Count >= 2))
        {
            Nominated++;
            var owners = keys.Select(k => k.Split(':')[3]).ToArray();
            var reply = (RedisResult[])(await redis.GetDatabase().ScriptEvaluateAsync(SnapshotScript,
                [.. keys.Select(k => (RedisKey)k)], [.. owners.Select(o => (RedisValue)o)]))!;
            var now = (long)reply[0];
            var owned = new List<string>();
            var live = 0;
            for (var i = 0; i < keys.Count; i++)
            {
                var json = (string?)reply[1 + i];
                var score = (string?)reply[1 + keys.Count + i];
                if (json is null)
                {
                    continue;
                }

                using var record = JsonDocument.Parse(json);
                var status = record.RootElement.TryGetProperty("status", out var s) ? s.GetString() : null;
                if (status is not ("in-progress" or "transferred"))
                {
                    continue;
                }

                var ageMs = score is null ? (long?)null : now - (long)double.Parse(score, System.Globalization.CultureInfo.InvariantCulture);
                var isLive = ageMs is not null && ageMs <= staleThresholdMs;
                live += isLive ? 1 : 0;
                owned.Add($"{keys[i]} status={status} ownerHeartbeatAgeMs={(ageMs?.ToString() ?? "none")} live={isLive} record={json}");
            }

            if (owned.Count < 2)
            {
                continue;
            }

            if (live >= 2)
            {
                if (_violations.TryGetValue(workId, out var seen))
                {
                    seen.Samples++;
                }
                else
                {
                    _violations[workId] = new DoubleOwnership(workId, DateTimeOffset.FromUnixTimeMilliseconds(now), owned);
                }
            }
            else
            {
                _silentOwner.Add(workId);
            }
        }
    }
}
