using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;

using Cfn.Coordination.Tests.Infrastructure;
using StackExchange.Redis;
using Xunit.Abstractions;

namespace Cfn.Coordination.Tests.Recovery;

/// <summary>
/// The batch cleanup that replaces the legacy Lua/bash scripts (SPEC §2.12, D14, L19, W42–W46, §7.9, §7.14 item 10).
/// Runs alone and in a database of its own: its summary counts every coordinator it can see, and its slow-log check
/// reads the server-wide SLOWLOG.
/// </summary>
[Collection(IsolatedRedisCollection.Name)]
public sealed partial class BatchCleanupTests(RedisServer server, ITestOutputHelper output)
{
    private const int StaleThresholdSeconds = 600;

    private static RecoveryOptions Options() => new() { CleanupStaleThresholdSeconds = StaleThresholdSeconds };

    private sealed class World : IAsyncDisposable
    {
        private World(Harness h, DedicatedDatabase db, RecoveryMetrics metrics, BatchCleanup batch)
        {
            H = h;
            Db = db;
            Metrics = metrics;
            Batch = batch;
        }

        public Harness H { get; }

        public DedicatedDatabase Db { get; }

        public IDatabase Database => Db.Database;

        public RecoveryMetrics Metrics { get; }

        public BatchCleanup Batch { get; }

        public ConcurrentQueue<CleanupLine> Lines { get; } = new();

        public List<string> Messages => Lines.Select(l => l.Message).ToList();

        public static async Task<World> CreateAsync(RedisServer server)
        {
            var h = Harness.Create(server);
            var db = await DedicatedDatabase.CreateAsync(server, h, DedicatedDatabase.BatchCleanupTests);
            var metrics = new RecoveryMetrics(h.Registry);
            var options = Options();
            var batch = new BatchCleanup(db.Redis, options, metrics, new CoordinatorCleanup(db.Redis, options, metrics));
            return new World(h, db, metrics, batch);
        }

        public Task<BatchCleanupReport> RunAsync(bool dryRun) => Batch.RunAsync(dryRun, Lines.Enqueue);

        public async ValueTask DisposeAsync()
        {
            await Db.DisposeAsync();
            await H.DisposeAsync();
        }
    }

    /// <summary>
    /// A coordinator as the batch sees it: a registry entry and/or a K1 carrying <paramref name="heartbeatMs"/>, plus its
    /// signal, activity, one ACK and one idempotency record. Returns every key written (the registry excluded).
    /// </summary>
    private static List<string> Seed(IBatch batch, List<Task> writes, string id, long heartbeatMs, bool registry = true, bool heartbeatKey = true)
    {
        var keys = new List<string>();
        if (heartbeatKey)
        {
            var k1 = string.Create(CultureInfo.InvariantCulture,
                $"{{\"coordinatorId\":\"{id}\",\"swarmId\":\"swarm-b\",\"timestamp\":{heartbeatMs},\"lastHeartbeat\":{heartbeatMs},\"sequence\":1}}");
            keys.Add($"blocking:heartbeat:{id}");
            writes.Add(batch.StringSetAsync(keys[^1], k1));
        }

        // A pending signal as cfn keeps it: the inbox entry, and K2 mirroring it (a K2 without one is a TS signal, kept).
        keys.Add($"blocking:inbox:{id}");
        writes.Add(batch.StreamAddAsync(keys[^1], "signal", $"{{\"receiverId\":\"{id}\"}}"));
        keys.Add($"blocking:signal:{id}");
        writes.Add(batch.StringSetAsync(keys[^1], $"{{\"receiverId\":\"{id}\"}}"));
        keys.Add($"coordinator:activity:{id}");
        writes.Add(batch.StringSetAsync(keys[^1], $"{{\"coordinatorId\":\"{id}\"}}"));
        keys.Add($"blocking:ack:{id}:peer-b:{id}:completion:1:1");
        writes.Add(batch.StringSetAsync(keys[^1], "{}"));
        keys.Add($"blocking:idempotency:peer-b:{id}:completion:1:2");
        writes.Add(batch.StringSetAsync(keys[^1], "1"));
        if (registry)
        {
            writes.Add(batch.SortedSetAddAsync(Keys.Registry, id, heartbeatMs));
        }

        return keys;
    }

    private static async Task<List<string>> SeedAsync(IDatabase db, string id, long heartbeatMs, bool registry = true, bool heartbeatKey = true)
    {
        var writes = new List<Task>();
        var batch = db.CreateBatch();
        var keys = Seed(batch, writes, id, heartbeatMs, registry, heartbeatKey);
        batch.Execute();
        await Task.WhenAll(writes);
        return keys;
    }

    private static async Task<bool> AllExistAsync(IDatabase db, IEnumerable<string> keys)
    {
        foreach (var key in keys)
        {
            if (!await db.KeyExistsAsync(key))
            {
                return false;
            }
        }

        return true;
    }

    private static async Task<bool> NoneExistAsync(IDatabase db, IEnumerable<string> keys)
    {
        foreach (var key in keys)
        {
            if (await db.KeyExistsAsync(key))
            {
                return false;
            }
        }

        return true;
    }

    [Fact]
    public async Task RunAsync_DryRun_PrintsWouldDeleteLinesAndDeletesNothing()
    {
        await using var w = await World.CreateAsync(server);
        var now = await RedisKit.NowAsync(w.Database);
        var stale1 = await SeedAsync(w.Database, "stale-1", now - 700_000);
        var stale2 = await SeedAsync(w.Database, "stale-2", now - 800_000);
        var fresh = await SeedAsync(w.Database, "fresh-1", now - 1_000);
        var sizeBefore = await w.Db.Redis.Multiplexer.GetServers()[0].DatabaseSizeAsync(w.Db.Index);

        var report = await w.RunAsync(dryRun: true);

        Assert.Equal(0, report.ExitCode);
        Assert.Equal(3, report.CoordinatorsChecked);
        Assert.Equal(2, report.StaleFound);
        Assert.Equal(0, report.KeysDeleted);
        Assert.Equal(["stale-1", "stale-2"], report.StaleCoordinatorIds);
        var messages = w.Messages;
        Assert.Contains("[DRY-RUN] Would delete 6 keys for coordinator stale-1", messages);
        Assert.Contains("[DRY-RUN] Would delete 6 keys for coordinator stale-2", messages);
        foreach (var key in stale1.Concat(stale2))
        {
            Assert.Contains($"[DRY-RUN] Would delete: {key}", messages);
        }

        Assert.DoesNotContain(messages, m => m.StartsWith("[DRY-RUN] Would delete", StringComparison.Ordinal) && m.Contains("fresh-1", StringComparison.Ordinal));
        Assert.Contains(messages, m => m.StartsWith("Coordinator active: fresh-1", StringComparison.Ordinal));
        Assert.Contains(messages, m => m.StartsWith("Stale coordinator detected: stale-1", StringComparison.Ordinal));
        Assert.Contains("Scanning for blocking coordinator heartbeats...", messages);
        Assert.Contains("Keys deleted: 0", messages);
        Assert.True(await AllExistAsync(w.Database, stale1.Concat(stale2).Concat(fresh)), "a dry run deleted something");
        Assert.Equal(sizeBefore, await w.Db.Redis.Multiplexer.GetServers()[0].DatabaseSizeAsync(w.Db.Index));
        Assert.Equal(3, await w.Database.SortedSetLengthAsync(Keys.Registry));
    }

    [Fact]
    public async Task RunAsync_Execute_DeletesOnlyStaleCoordinatorsAndPrintsSummary()
    {
        await using var w = await World.CreateAsync(server);
        var now = await RedisKit.NowAsync(w.Database);
        var stale1 = await SeedAsync(w.Database, "stale-1", now - 700_000);                        // registry and K1 old
        var stale2 = await SeedAsync(w.Database, "stale-2", now - 900_000, heartbeatKey: false);   // K1 expired, registry old
        var stale3 = await SeedAsync(w.Database, "stale-3", now - 650_000, registry: false);       // K1 old, no registry entry
        var fresh1 = await SeedAsync(w.Database, "fresh-1", now - 1_000);
        var fresh2 = await SeedAsync(w.Database, "fresh-2", now - 590_000);                        // under the threshold
        await w.Database.SortedSetAddAsync(Keys.Registry, "fresh-3", now - 900_000);                // registry old ...
        var fresh3 = await SeedAsync(w.Database, "fresh-3", now - 2_000, registry: false);         // ... but K1 fresh

        var report = await w.RunAsync(dryRun: false);

        var staleKeys = stale1.Concat(stale2).Concat(stale3).ToList();
        Assert.Equal(0, report.ExitCode);
        Assert.Equal(0, report.Errors);
        Assert.Equal(6, report.CoordinatorsChecked);
        Assert.Equal(3, report.StaleFound);
        Assert.Equal(staleKeys.Count, report.KeysDeleted);
        Assert.Equal(["stale-1", "stale-2", "stale-3"], report.StaleCoordinatorIds);
        Assert.True(await NoneExistAsync(w.Database, staleKeys), "a stale coordinator's key survived");
        Assert.True(await AllExistAsync(w.Database, fresh1.Concat(fresh2).Concat(fresh3)), "a fresh coordinator lost a key");
        Assert.Equal(["fresh-1", "fresh-2", "fresh-3"],
            (await w.Database.SortedSetRangeByRankAsync(Keys.Registry)).Select(v => (string)v!).Order(StringComparer.Ordinal));
        Assert.False(await w.Database.KeyExistsAsync(Keys.CleanupLock), "the lock was not released");
        Assert.Equal(staleKeys.Count, w.Metrics.CleanupKeysDeleted.Value);
        Assert.Equal(1, w.Metrics.CleanupRuns.WithLabels("success").Value);

        var messages = w.Messages;
        Assert.Contains("Deleted 6 keys for coordinator stale-1", messages);
        Assert.Contains("Deleted 5 keys for coordinator stale-2", messages);
        Assert.Contains(messages, m => m.StartsWith("Coordinator active: fresh-2", StringComparison.Ordinal));
        Assert.Contains(messages, m => m.StartsWith("Coordinator active: fresh-3", StringComparison.Ordinal));
        Assert.Contains("Total coordinators checked: 6", messages);
        Assert.Contains("Stale coordinators found: 3", messages);
        Assert.Contains($"Keys deleted: {staleKeys.Count}", messages);
        Assert.Contains("Cleanup errors: 0", messages);
        Assert.Contains(messages, m => ExecutionTime().IsMatch(m));
        Assert.Contains(messages, m => Performance().IsMatch(m));
        Assert.Equal("Cleanup completed successfully", messages[^1]);
        var order = new[] { "Total coordinators checked:", "Stale coordinators found:", "Keys deleted:", "Cleanup errors:", "Execution time:", "Performance:", "Cleanup completed successfully" }
            .Select(prefix => messages.FindIndex(m => m.StartsWith(prefix, StringComparison.Ordinal))).ToList();
        Assert.Equal(order.Order(), order);
    }

    [Fact]
    public async Task RunAsync_NothingRegistered_SaysNothingToDoAndExitsZero()
    {
        await using var w = await World.CreateAsync(server);

        var report = await w.RunAsync(dryRun: false);

        Assert.Equal(0, report.ExitCode);
        Assert.Equal(0, report.CoordinatorsChecked);
        Assert.Equal(0, report.StaleFound);
        Assert.Equal(0, report.KeysDeleted);
        Assert.Contains("No coordinator heartbeats found", w.Messages);
        Assert.Contains("Cleanup complete (nothing to do)", w.Messages);
        Assert.False(await w.Database.KeyExistsAsync(Keys.CleanupLock));
    }

    [Fact]
    public async Task RunAsync_LockHeld_DoesNothingExitsZeroAndLeavesTheLock()
    {
        await using var w = await World.CreateAsync(server);
        var now = await RedisKit.NowAsync(w.Database);
        var stale = await SeedAsync(w.Database, "stale-1", now - 700_000);
        await w.Database.StringSetAsync(Keys.CleanupLock, "x");

        var report = await w.RunAsync(dryRun: false);

        Assert.Equal(0, report.ExitCode);
        Assert.Equal(0, report.StaleFound);
        Assert.Equal(0, report.KeysDeleted);
        Assert.True(await AllExistAsync(w.Database, stale), "a locked run deleted something");
        Assert.Equal("x", (string?)await w.Database.StringGetAsync(Keys.CleanupLock));
        Assert.Null(await w.Database.KeyTimeToLiveAsync(Keys.CleanupLock));
        Assert.Contains(w.Messages, m => m.Contains("Cleanup already running", StringComparison.Ordinal));
        Assert.DoesNotContain(w.Messages, m => m.StartsWith("Stale coordinator detected", StringComparison.Ordinal));
        Assert.Equal(1, w.Metrics.CleanupRuns.WithLabels("locked").Value);
    }

    [Fact]
    public async Task RunAsync_InvalidHeartbeatJson_ReportedAndOthersStillCleaned()
    {
        await using var w = await World.CreateAsync(server);
        var now = await RedisKit.NowAsync(w.Database);
        await w.Database.StringSetAsync("blocking:heartbeat:broken-1", "{not json");
        var stale = await SeedAsync(w.Database, "stale-1", now - 700_000);

        var report = await w.RunAsync(dryRun: false);

        Assert.Equal(0, report.ExitCode);
        Assert.Equal(1, report.StaleFound);
        Assert.Contains("Invalid or missing heartbeat for coordinator: broken-1", w.Messages);
        Assert.True(await NoneExistAsync(w.Database, stale));
        Assert.True(await w.Database.KeyExistsAsync("blocking:heartbeat:broken-1"), "an unreadable heartbeat is not proof of death");
    }

    [Fact]
    public async Task RunAsync_TenThousandStaleCoordinators_AllCleanedNoSlowCommandFreshKept()
    {
        const int stale = 10_000;
        const int fresh = 10;
        await using var w = await World.CreateAsync(server);
        var db = w.Database;
        var now = await RedisKit.NowAsync(db);
        var freshKeys = new List<string>();
        for (var start = 0; start < stale; start += 1000)
        {
            var writes = new List<Task>();
            var batch = db.CreateBatch();
            for (var i = start; i < start + 1000; i++)
            {
                Seed(batch, writes, $"stale-{i:D5}", now - 700_000 - i);
            }

            batch.Execute();
            await Task.WhenAll(writes);
        }

        for (var i = 0; i < fresh; i++)
        {
            freshKeys.AddRange(await SeedAsync(db, $"fresh-{i}", now - 1_000));
        }

        var admin = server.Server;
        Assert.Equal(stale * 6 + fresh * 6 + 1, await admin.DatabaseSizeAsync(w.Db.Index));
        var previous = (await admin.ConfigGetAsync("slowlog-log-slower-than")).Single().Value;
        BatchCleanupReport report;
        CommandTrace[] slow;
        var watch = Stopwatch.StartNew();
        try
        {
            await admin.ConfigSetAsync("slowlog-log-slower-than", "50000");
            await admin.SlowlogResetAsync();
            watch.Restart();
            report = await w.RunAsync(dryRun: false);
            watch.Stop();
            slow = await admin.SlowlogGetAsync(128);
        }
        finally
        {
            await admin.ConfigSetAsync("slowlog-log-slower-than", previous);
        }

        output.WriteLine($"batch cleanup of {stale} stale + {fresh} fresh coordinators: report {report.ElapsedMs} ms, wall {watch.ElapsedMilliseconds} ms");
        var offenders = slow
            .Where(t => t.Arguments.Length > 0 && !new[] { "CONFIG", "SLOWLOG", "DEBUG" }.Contains(((string?)t.Arguments[0])?.ToUpperInvariant()))
            .Select(t => $"{string.Join(' ', t.Arguments.Take(4).Select(a => (string?)a))} took {t.Duration.TotalMilliseconds} ms")
            .ToList();
        Assert.True(offenders.Count == 0, "commands over 50 ms: " + string.Join("; ", offenders));
        Assert.Equal(0, report.ExitCode);
        Assert.Equal(0, report.Errors);
        Assert.Equal(stale + fresh, report.CoordinatorsChecked);
        Assert.Equal(stale, report.StaleFound);
        Assert.Equal(stale * 6, report.KeysDeleted);
        // Left: the fresh coordinators' keys and the registry with their entries.
        Assert.Equal(fresh * 6 + 1, await admin.DatabaseSizeAsync(w.Db.Index));
        Assert.Equal(fresh, await db.SortedSetLengthAsync(Keys.Registry));
        Assert.True(await AllExistAsync(db, freshKeys));
        var leftover = new List<string>();
        await foreach (var key in admin.KeysAsync(w.Db.Index, "*stale-*", pageSize: 1000))
        {
            leftover.Add(key!);
        }

        Assert.Empty(leftover);
    }

    [Fact]
    public async Task RunAsync_RedisUnreachable_ConnectionFailedCleanupAbortedExitOne()
    {
        await using var unreachable = await ConnectionMultiplexer.ConnectAsync(
            "127.0.0.1:1,abortConnect=false,connectTimeout=300,connectRetry=0,syncTimeout=1000,asyncTimeout=1000");
        await using var redis = new RedisContext(unreachable, new CoordinationOptions());
        var metrics = new RecoveryMetrics(Prometheus.Metrics.NewCustomRegistry());
        var batch = new BatchCleanup(redis, Options(), metrics, new CoordinatorCleanup(redis, Options(), metrics));
        var lines = new List<CleanupLine>();

        var report = await batch.RunAsync(dryRun: false, lines.Add);

        Assert.Equal(1, report.ExitCode);
        Assert.Contains(lines, l => l.Level == "ERROR"
                                    && l.Message.StartsWith("Redis connection failed (host: 127.0.0.1, port: 1)", StringComparison.Ordinal));
        Assert.Equal("Cleanup aborted", lines[^1].Message);
        Assert.Equal("ERROR", lines[^1].Level);
        Assert.Equal(1, metrics.CleanupRuns.WithLabels("aborted").Value);
    }

    [GeneratedRegex(@"^Execution time: \d+ms$")]
    private static partial Regex ExecutionTime();

    [GeneratedRegex(@"^Performance: \d+(\.\d+)? coordinators/sec$")]
    private static partial Regex Performance();
}
