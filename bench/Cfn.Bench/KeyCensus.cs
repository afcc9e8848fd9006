using Cfn.Coordination.Redis;
using StackExchange.Redis;

namespace Cfn.Bench;

/// <summary>
/// The keys of the bench's database by family (row h): every key from SCAN, grouped by prefix, and a measured sample
/// of each group (MEMORY USAGE with every nested element counted, PTTL).
/// </summary>
internal static class KeyCensus
{
    public const string WorkRecords = "swarm:*:work:";
    public const string OtherCoordinator = "coordinator:* (other)";
    public const string OtherBlocking = "blocking:* (other)";
    public const string Other = "other";

    /// <summary>The families in report order; a key belongs to the first that matches it.</summary>
    public static readonly string[] Families =
    [
        Keys.IdempotencyPrefix, Keys.AckPrefix, Keys.InboxPrefix, Keys.SignalPrefix, Keys.WorkPrefix, WorkRecords,
        OtherCoordinator, OtherBlocking, Other,
    ];

    public static string FamilyOf(string key)
    {
        foreach (var prefix in (ReadOnlySpan<string>)[Keys.IdempotencyPrefix, Keys.AckPrefix, Keys.InboxPrefix, Keys.SignalPrefix, Keys.WorkPrefix])
        {
            if (key.StartsWith(prefix, StringComparison.Ordinal))
            {
                return prefix;
            }
        }

        // swarm:{swarmId}:work:{workId}: swarm IDs hold no colon.
        if (key.StartsWith(Keys.SwarmPrefix, StringComparison.Ordinal))
        {
            var colon = key.IndexOf(':', Keys.SwarmPrefix.Length);
            if (colon > 0 && key.AsSpan(colon + 1).StartsWith("work:", StringComparison.Ordinal))
            {
                return WorkRecords;
            }
        }

        return key.StartsWith("coordinator:", StringComparison.Ordinal) ? OtherCoordinator
            : key.StartsWith("blocking:", StringComparison.Ordinal) ? OtherBlocking
            : Other;
    }

    /// <summary>
    /// The first two segments (<c>coordinator:work-owner:</c>; for swarm keys the swarm ID's and the next,
    /// <c>swarm:*:queue</c>): what the catch-all families are made of.
    /// </summary>
    public static string SubPrefixOf(string key)
    {
        if (key.StartsWith(Keys.SwarmPrefix, StringComparison.Ordinal))
        {
            var swarmEnd = key.IndexOf(':', Keys.SwarmPrefix.Length);
            var next = swarmEnd < 0 ? -1 : key.IndexOf(':', swarmEnd + 1);
            return swarmEnd < 0 ? key : "swarm:*" + (next < 0 ? key[swarmEnd..] : key[swarmEnd..(next + 1)]);
        }

        var first = key.IndexOf(':', StringComparison.Ordinal);
        var second = first < 0 ? -1 : key.IndexOf(':', first + 1);
        return second < 0 ? key : key[..(second + 1)];
    }

    public static async Task<List<string>> AllKeysAsync(BenchContext ctx)
    {
        var keys = new List<string>();
        await foreach (var key in ctx.Server.KeysAsync(ctx.DatabaseIndex, "*", pageSize: 1000))
        {
            keys.Add(key!);
        }

        return keys;
    }

    /// <summary>Bytes (null: gone) and PTTL in ms (-1: no TTL) of each key, pipelined.</summary>
    public static async Task<List<KeyMeasure>> MeasureAsync(IDatabase db, IEnumerable<string> keys)
    {
        var measures = new List<KeyMeasure>();
        foreach (var chunk in keys.Chunk(500))
        {
            var usage = chunk.Select(k => db.ExecuteAsync("MEMORY", "USAGE", (RedisKey)k, "SAMPLES", "0")).ToArray();
            var pttl = chunk.Select(k => db.ExecuteAsync("PTTL", (RedisKey)k)).ToArray();
            await Task.WhenAll(usage.Concat(pttl));
            for (var i = 0; i < chunk.Length; i++)
            {
                var bytes = usage[i].Result;
                var ttl = (long)pttl[i].Result;
                if (!bytes.IsNull && ttl != -2)
                {
                    measures.Add(new KeyMeasure(chunk[i], (long)bytes, ttl));
                }
            }
        }

        return measures;
    }

    /// <summary>Up to <paramref name="size"/> items chosen uniformly (reservoir sampling, fixed seed).</summary>
    public static List<T> Sample<T>(IEnumerable<T> items, int size, Random random)
    {
        var sample = new List<T>(size);
        var seen = 0;
        foreach (var item in items)
        {
            seen++;
            if (sample.Count < size)
            {
                sample.Add(item);
            }
            else if (random.Next(seen) is var j && j < size)
            {
                sample[j] = item;
            }
        }

        return sample;
    }
}

/// <summary>One key's MEMORY USAGE and PTTL (ms, -1 without TTL).</summary>
internal sealed record KeyMeasure(string Key, long Bytes, long PttlMs);
