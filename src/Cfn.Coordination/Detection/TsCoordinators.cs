using System.Text.Json;
using Cfn.Coordination.Identity;
using Cfn.Coordination.Redis;
using StackExchange.Redis;

namespace Cfn.Coordination.Detection;

/// <summary>
/// The watch over the original TypeScript coordinators of a mixed fleet (<c>CFN_TS_COMPAT</c>, SPEC D13). A TS
/// coordinator heartbeats K1 as <c>{"coordinatorId","lastHeartbeat","sequence",…}</c> on its own clock and never writes
/// the registry, so without this watch one that dies is never detected. It must not join the registry either: there
/// membership means a cfn coordinator that publishes its ACK wake-ups. So the watch keeps two keys of its own:
/// <see cref="Keys.TsHeartbeats"/> (what was last seen of each watched K1: <c>lastHeartbeat:sequence</c>) and
/// <see cref="Keys.TsCoordinators"/> (the Redis ms when that was seen to change). The monitor samples K1 at the start of
/// each pass and judges the sample times, never <c>lastHeartbeat</c> (D5): a skewed TS clock can neither cause nor hide
/// a death. The price is resolution: a change is scored when a pass sees it, at most one monitor pass after it
/// happened, so a death is declared at most one pass later than for a cfn coordinator, never earlier.
/// IDs come in from traffic (<see cref="DiscoverAsync"/>) and from a slow scan of K1 (<see cref="DiscoverByScanAsync"/>);
/// one found but never seen heartbeating is not judged (a TS process without heartbeats must not be declared dead).
/// Everything here is called only when <see cref="CoordinationOptions.TsCompat"/> is on.
/// </summary>
internal static class TsCoordinators
{
    /// <summary>IDs per MGET and per script call: no single command grows with the fleet.</summary>
    internal const int Batch = 500;

    /// <summary>What a K1 value is.</summary>
    internal enum Shape
    {
        /// <summary>Missing, not JSON, or neither kind of heartbeat.</summary>
        None,

        /// <summary>A TS heartbeat: a numeric <c>lastHeartbeat</c>, no <c>instanceId</c>, no <c>timestamp</c>.</summary>
        Ts,

        /// <summary>A cfn heartbeat: it has an <c>instanceId</c> or a <c>timestamp</c> (Redis clock, D5).</summary>
        Cfn,
    }

    /// <summary>What a refresh left: the IDs still watched, and how many changes it recorded and IDs it let go.</summary>
    internal sealed record RefreshResult(IReadOnlySet<string> Watched, int Changed, int Left);

    /// <summary>
    /// Classifies a K1 value; for a TS heartbeat, <paramref name="seen"/> is its <c>lastHeartbeat:sequence</c> (the
    /// raw JSON numbers, sequence empty when absent): two samples differ exactly when the TS process wrote again.
    /// </summary>
    internal static Shape Classify(string? raw, out string seen)
    {
        seen = "";
        if (string.IsNullOrEmpty(raw))
        {
            return Shape.None;
        }

        try
        {
            using var document = JsonDocument.Parse(raw);
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                return Shape.None;
            }

            if (root.TryGetProperty("instanceId", out _) || root.TryGetProperty("timestamp", out _))
            {
                return Shape.Cfn;
            }

            if (!root.TryGetProperty("lastHeartbeat", out var last) || last.ValueKind != JsonValueKind.Number)
            {
                return Shape.None;
            }

            var sequence = root.TryGetProperty("sequence", out var s) && s.ValueKind == JsonValueKind.Number ? s.GetRawText() : "";
            seen = last.GetRawText() + ":" + sequence;
            return Shape.Ts;
        }
        catch (JsonException)
        {
            return Shape.None; // a forged or truncated value is no heartbeat
        }
    }

    /// <summary>
    /// Puts the valid IDs among <paramref name="ids"/> that are not in the registry under watch (and records a given
    /// swarm when none is known yet), in one round trip. Called from traffic: a TS signal's sender, a wait's TS peer.
    /// Returns how many were new to the watch.
    /// </summary>
    public static async Task<int> DiscoverAsync(IDatabase db, IEnumerable<(string Id, string? SwarmId)> ids)
    {
        ArgumentNullException.ThrowIfNull(db);
        ArgumentNullException.ThrowIfNull(ids);
        var args = new List<RedisValue>();
        foreach (var (id, swarm) in ids)
        {
            if (Ids.IsValidName(id))
            {
                args.Add(id);
                args.Add(Ids.IsValidName(swarm) ? swarm : "");
            }
        }

        if (args.Count == 0)
        {
            return 0;
        }

        return (int)await db.ScriptEvaluateAsync(RedisScripts.TsDiscover, [Keys.Registry, Keys.TsHeartbeats, Keys.Swarms], [.. args])
            .ConfigureAwait(false);
    }

    /// <summary>
    /// The start of a monitor pass: samples every watched K1 (one MGET per <see cref="Batch"/>, with the registry
    /// scores in the same round trip) and records each TS heartbeat that changed since the last sample, scored with
    /// the Redis clock now. An ID whose K1 turned into a cfn heartbeat, or that joined the registry, leaves the watch
    /// (it migrated to cfn; the registry judges it). A missing or unreadable K1 changes nothing: a TS coordinator seen
    /// before goes stale from its last seen change, and one never seen heartbeating stays unjudged.
    /// </summary>
    public static async Task<RefreshResult> RefreshAsync(IDatabase db)
    {
        ArgumentNullException.ThrowIfNull(db);
        var entries = await db.HashGetAllAsync(Keys.TsHeartbeats).ConfigureAwait(false);
        var watched = new HashSet<string>(StringComparer.Ordinal);
        if (entries.Length == 0)
        {
            return new RefreshResult(watched, 0, 0);
        }

        var leave = new List<string>();
        var valid = new List<(string Id, string Seen)>(entries.Length);
        foreach (var entry in entries)
        {
            var id = (string?)entry.Name;
            if (Ids.IsValidName(id))
            {
                valid.Add((id!, (string?)entry.Value ?? ""));
            }
            else
            {
                leave.Add(id ?? ""); // written by hand: no key can be built for it
            }
        }

        // Every batch's reads are sent before any reply is awaited: one round trip in all.
        var reads = new List<(int Start, Task<RedisValue[]> Values, Task<double?[]> Registered)>();
        for (var start = 0; start < valid.Count; start += Batch)
        {
            var batch = valid.Skip(start).Take(Batch).ToList();
            reads.Add((start,
                db.StringGetAsync([.. batch.Select(e => Keys.Heartbeat(e.Id))]),
                db.SortedSetScoresAsync(Keys.Registry, [.. batch.Select(e => (RedisValue)e.Id)])));
        }

        var changes = new List<(string Id, string Old, string New)>();
        foreach (var (start, valuesTask, registeredTask) in reads)
        {
            var values = await valuesTask.ConfigureAwait(false);
            var registered = await registeredTask.ConfigureAwait(false);
            for (var i = 0; i < values.Length; i++)
            {
                var (id, old) = valid[start + i];
                var shape = Classify((string?)values[i], out var seen);
                // Also let go: an ID traffic named (a wait's peer outside the registry may be a dead cfn coordinator) that has
                // no K1 and was never seen heartbeating. Nothing would ever judge it, and the hash must not grow with such
                // peers; traffic or the scan puts it back once it heartbeats.
                if (registered[i] is not null || shape == Shape.Cfn || (old.Length == 0 && values[i].IsNull))
                {
                    leave.Add(id);
                    continue;
                }

                watched.Add(id);
                if (shape == Shape.Ts && !string.Equals(seen, old, StringComparison.Ordinal))
                {
                    changes.Add((id, old, seen));
                }
            }
        }

        var changed = 0;
        if (leave.Count > 0 || changes.Count > 0)
        {
            var writes = new List<Task<RedisResult>>();
            for (var start = 0; start < Math.Max(leave.Count, changes.Count); start += Batch)
            {
                var gone = leave.Skip(start).Take(Batch).ToList();
                RedisValue[] args =
                [
                    gone.Count, .. gone.Select(id => (RedisValue)id),
                    .. changes.Skip(start).Take(Batch).SelectMany(c => new RedisValue[] { c.Id, c.Old, c.New }),
                ];
                writes.Add(db.ScriptEvaluateAsync(RedisScripts.TsRefresh, [Keys.TsCoordinators, Keys.TsHeartbeats], args));
            }

            foreach (var write in writes)
            {
                changed += (int)await write.ConfigureAwait(false);
            }
        }

        return new RefreshResult(watched, changed, leave.Count);
    }

    /// <summary>
    /// The slow discovery: one <c>SCAN MATCH blocking:heartbeat:*</c> (pages of 1000, never <c>KEYS</c>) on the primary,
    /// values read in MGET batches, and every TS heartbeat whose ID is not in the registry put under watch. Finds TS
    /// coordinators that no traffic named. Returns how many were new to the watch.
    /// </summary>
    public static async Task<int> DiscoverByScanAsync(RedisContext redis)
    {
        ArgumentNullException.ThrowIfNull(redis);
        var db = redis.Database;
        var added = 0;
        var keys = new List<RedisKey>(Batch);
        foreach (var server in redis.Multiplexer.GetServers().Where(s => !s.IsReplica && s.IsConnected))
        {
            await foreach (var key in server.KeysAsync(db.Database, Keys.HeartbeatPrefix + "*", pageSize: 1000).ConfigureAwait(false))
            {
                keys.Add(key);
                if (keys.Count == Batch)
                {
                    added += await DiscoverBatchAsync(db, keys).ConfigureAwait(false);
                    keys.Clear();
                }
            }
        }

        if (keys.Count > 0)
        {
            added += await DiscoverBatchAsync(db, keys).ConfigureAwait(false);
        }

        return added;
    }

    private static async Task<int> DiscoverBatchAsync(IDatabase db, List<RedisKey> keys)
    {
        var values = await db.StringGetAsync([.. keys]).ConfigureAwait(false);
        var found = new List<(string, string?)>();
        for (var i = 0; i < keys.Count; i++)
        {
            var id = Keys.HeartbeatOwner((string)keys[i]!);
            if (Ids.IsValidName(id) && Classify((string?)values[i], out _) == Shape.Ts)
            {
                found.Add((id!, null)); // a TS K1 names no swarm
            }
        }

        return await DiscoverAsync(db, found).ConfigureAwait(false);
    }

    /// <summary>
    /// A TS coordinator whose death was handled without the cleanup (no replacement is coming) leaves the watch, as a
    /// cfn one leaves the registry; its K1 is deleted when it still holds the heartbeat last seen (TS's own dead-
    /// coordinator cleanup deletes K1 too), so the slow scan does not find the dead one again and judge it once more.
    /// A K1 that changed since is a TS process writing again: kept, and found again by the scan.
    /// </summary>
    public static async Task ForgetAsync(IDatabase db, string id)
    {
        ArgumentNullException.ThrowIfNull(db);
        var heartbeat = Keys.Heartbeat(id);
        var seenTask = db.HashGetAsync(Keys.TsHeartbeats, id);
        RedisValue raw;
        try
        {
            raw = await db.StringGetAsync(heartbeat).ConfigureAwait(false);
        }
        catch (RedisServerException)
        {
            raw = RedisValue.Null; // not a string: no heartbeat to delete
        }

        var seen = (string?)await seenTask.ConfigureAwait(false);
        if (Classify((string?)raw, out var now) == Shape.Ts && !string.IsNullOrEmpty(seen) && string.Equals(now, seen, StringComparison.Ordinal))
        {
            // Compare-and-delete: a write that lands between the read and here is kept.
            await db.ScriptEvaluateAsync(RedisScripts.CompareAndDelete, [heartbeat], [raw]).ConfigureAwait(false);
        }

        var removeTask = db.SortedSetRemoveAsync(Keys.TsCoordinators, id);
        await db.HashDeleteAsync(Keys.TsHeartbeats, id).ConfigureAwait(false);
        await removeTask.ConfigureAwait(false);
    }
}
