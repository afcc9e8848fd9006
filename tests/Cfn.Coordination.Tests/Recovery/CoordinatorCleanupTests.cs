using System.Globalization;
using Cfn.Coordination.Identity;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;

using Cfn.Coordination.Tests.Infrastructure;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Cfn.Coordination.Tests.Recovery;

/// <summary>
/// Per-coordinator cleanup (SPEC §2.12, §3.1 #8, W36, W37, §7.7 item 5, §7.14 item 7): exact segments, never a
/// substring, counts from Redis's DEL replies, liveness re-checked unless forced.
/// </summary>
[Collection(RedisCollection.Name)]
public sealed class CoordinatorCleanupTests(RedisServer server)
{
    private static readonly TimeSpan Ttl = TimeSpan.FromMinutes(10);

    /// <summary>
    /// Writes one key of every family that belongs to <paramref name="id"/> (§2.12), returning key → category.
    /// <paramref name="peer"/> and <paramref name="third"/> are other coordinators named in signal IDs.
    /// </summary>
    internal static async Task<Dictionary<string, string>> SeedAsync(
        IDatabase db, string id, string peer, string third, string swarm, long heartbeatMs)
    {
        var keys = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            [$"blocking:heartbeat:{id}"] = KeyOwnership.Heartbeat,
            [$"blocking:ack:{id}:{peer}:{id}:completion:1:1001"] = KeyOwnership.Acks, // its own ACK of peer's signal
            [$"blocking:ack:{peer}:{id}:{peer}:completion:1:1002"] = KeyOwnership.Acks, // peer's ACK of its signal (sender)
            [$"blocking:ack:{peer}:{third}:{id}:completion:1:1003"] = KeyOwnership.Acks, // a signal naming it as receiver
            [$"blocking:idempotency:{id}:{peer}:completion:1:1004"] = KeyOwnership.Idempotency,
            [$"blocking:idempotency:{peer}:{id}:completion:1:1005"] = KeyOwnership.Idempotency,
            [$"blocking:signal:{id}"] = KeyOwnership.Signals,
            [$"blocking:inbox:{id}"] = KeyOwnership.Signals,
            [$"coordinator:activity:{id}"] = KeyOwnership.Activity,
            [$"blocking:unblock:{id}"] = KeyOwnership.Other,
            [$"blocking:warning:{id}"] = KeyOwnership.Other,
            [$"blocking:retry:{id}:{peer}:completion:1:1006:1"] = KeyOwnership.Other,
            [$"blocking:retry:failed:{peer}:{id}:completion:1:1007"] = KeyOwnership.Other,
            [$"swarm:{swarm}:blocking:{id}"] = KeyOwnership.Other,
        };
        var writes = new List<Task>();
        foreach (var key in keys.Keys)
        {
            if (key.StartsWith("blocking:inbox:", StringComparison.Ordinal))
            {
                writes.Add(db.StreamAddAsync(key, "signal", $"{{\"for\":\"{id}\"}}"));
                continue;
            }

            // K2 mirrors the inbox's newest entry, as cfn writes it (a K2 that does not is a TS signal, which cleanups keep).
            var value = key.StartsWith("blocking:heartbeat:", StringComparison.Ordinal)
                ? string.Create(CultureInfo.InvariantCulture,
                    $"{{\"coordinatorId\":\"{id}\",\"swarmId\":\"{swarm}\",\"timestamp\":{heartbeatMs},\"lastHeartbeat\":{heartbeatMs},\"sequence\":1}}")
                : key.StartsWith("blocking:signal:", StringComparison.Ordinal) ? $"{{\"for\":\"{id}\"}}" : $"{{\"key\":\"{key}\"}}";
            writes.Add(db.StringSetAsync(key, value, Ttl));
        }

        await Task.WhenAll(writes);
        await db.KeyExpireAsync($"blocking:inbox:{id}", Ttl);
        await db.SortedSetAddAsync(Keys.Registry, id, heartbeatMs);
        await db.HashSetAsync(Keys.Swarms, id, swarm);
        await db.SortedSetAddAsync(Keys.Deadlines, id, heartbeatMs);
        return keys;
    }

    private static async Task<Dictionary<string, string>> SnapshotAsync(IDatabase db, IEnumerable<string> keys)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var key in keys)
        {
            var type = await db.KeyTypeAsync(key);
            values[key] = type switch
            {
                RedisType.String => "string:" + (string?)await db.StringGetAsync(key),
                RedisType.Stream => "stream:" + await db.StreamLengthAsync(key),
                RedisType.None => "none",
                _ => type.ToString(),
            };
        }

        return values;
    }

    private async Task<List<string>> ScanAsync(string pattern)
    {
        var found = new List<string>();
        await foreach (var key in server.Server.KeysAsync(pattern: pattern, pageSize: 1000))
        {
            found.Add(key!);
        }

        return found;
    }

    [Fact]
    public async Task CleanupAsync_ForcedCoordinator1_DeletesAllItsKeysAndNoneOfCoordinator10To19()
    {
        await using var h = Harness.Create(server);
        var recovery = new RecoveryMetrics(h.Registry);
        var cleanup = new CoordinatorCleanup(h.Redis, new RecoveryOptions(), recovery);
        var p = TestIds.New("cc");
        var target = $"{p}-1";
        var siblings = Enumerable.Range(10, 10).Select(i => $"{p}-{i}").ToList();
        var peer = TestIds.New("peer");
        var third = TestIds.New("third");
        var swarm = TestIds.New("swarm");
        var now = await RedisKit.NowAsync(h.Database);
        try
        {
            var mine = await SeedAsync(h.Database, target, peer, third, swarm, now);
            var theirs = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var sibling in siblings)
            {
                foreach (var (key, category) in await SeedAsync(h.Database, sibling, peer, third, swarm, now))
                {
                    theirs[key] = category;
                }
            }

            var theirsBefore = await SnapshotAsync(h.Database, theirs.Keys);

            var result = await cleanup.CleanupAsync(target, force: true);

            Assert.False(result.Refused);
            Assert.Equal(target, result.CoordinatorId);
            Assert.Equal(mine.Count, result.KeysDeleted);
            foreach (var category in KeyOwnership.Categories)
            {
                Assert.Equal(mine.Values.Count(c => c == category), result.Categories[category]);
            }

            Assert.Equal(1, result.Categories[KeyOwnership.Heartbeat]);
            Assert.Equal(3, result.Categories[KeyOwnership.Acks]);
            Assert.Equal(2, result.Categories[KeyOwnership.Signals]);
            Assert.Equal(2, result.Categories[KeyOwnership.Idempotency]);
            Assert.Equal(1, result.Categories[KeyOwnership.Activity]);
            Assert.Equal(5, result.Categories[KeyOwnership.Other]);
            Assert.Equal(mine.Count, recovery.CleanupKeysDeleted.Value);
            foreach (var key in mine.Keys)
            {
                Assert.False(await h.Database.KeyExistsAsync(key), $"{key} survived the cleanup");
            }

            Assert.Null(await h.Database.SortedSetScoreAsync(Keys.Registry, target));
            Assert.Null(await h.Database.SortedSetScoreAsync(Keys.Deadlines, target));
            Assert.False(await h.Database.HashExistsAsync(Keys.Swarms, target));

            // coordinator-10 … coordinator-19 are untouched, indexes included.
            Assert.Equal(theirsBefore, await SnapshotAsync(h.Database, theirs.Keys));
            foreach (var sibling in siblings)
            {
                Assert.NotNull(await h.Database.SortedSetScoreAsync(Keys.Registry, sibling));
                Assert.True(await h.Database.HashExistsAsync(Keys.Swarms, sibling));
            }

            // The runbook's check (#85) now finds only keys of the -1x coordinators, none of -1's.
            var scanned = await ScanAsync($"blocking:*{target}*");
            var expected = theirs.Keys.Where(k => k.StartsWith("blocking:", StringComparison.Ordinal)).ToHashSet(StringComparer.Ordinal);
            Assert.Equal(expected.Order(StringComparer.Ordinal), scanned.Order(StringComparer.Ordinal));

            var line = Assert.Single(RecoveryKit.Lines(h, "Dead coordinator cleanup complete", $"coordinator={target} "));
            Assert.Contains($"keysDeleted={mine.Count}", line.Message, StringComparison.Ordinal);

            // Idempotent: a second run finds nothing.
            var again = await cleanup.CleanupAsync(target, force: true);
            Assert.Equal(0, again.KeysDeleted);
            Assert.All(KeyOwnership.Categories, c => Assert.Equal(0, again.Categories[c]));
            Assert.Equal(theirsBefore, await SnapshotAsync(h.Database, theirs.Keys));
        }
        finally
        {
            foreach (var sibling in siblings)
            {
                await cleanup.CleanupAsync(sibling, force: true);
            }

            await RecoveryKit.ForgetAsync(h.Database, [target, .. siblings]);
        }
    }

    [Fact]
    public async Task CleanupAsync_UnforcedFreshHeartbeat_RefusedAndNothingDeleted()
    {
        await using var h = Harness.Create(server);
        var recovery = new RecoveryMetrics(h.Registry);
        var cleanup = new CoordinatorCleanup(h.Redis, new RecoveryOptions(), recovery);
        var c = await h.StartAsync(swarmId: TestIds.New("swarm"));
        var peer = TestIds.New("peer");
        await h.Database.StringSetAsync(Keys.Unblock(c.Id), "1", Ttl);
        await h.Database.StringSetAsync($"blocking:idempotency:{c.Id}:{peer}:completion:1:5", "1", Ttl);
        var keys = new[] { (string)Keys.Heartbeat(c.Id)!, (string)Keys.Activity(c.Id)!, (string)Keys.Unblock(c.Id)!,
            $"blocking:idempotency:{c.Id}:{peer}:completion:1:5" };
        var before = await SnapshotAsync(h.Database, keys);

        var result = await cleanup.CleanupAsync(c.Id);

        Assert.True(result.Refused);
        Assert.Equal(0, result.KeysDeleted);
        Assert.NotNull(result.HeartbeatAgeMs);
        Assert.InRange(result.HeartbeatAgeMs!.Value, 0, 120_000);
        Assert.All(before.Values, v => Assert.NotEqual("none", v));
        Assert.Equal(before, await SnapshotAsync(h.Database, keys));
        Assert.NotNull(await h.Database.SortedSetScoreAsync(Keys.Registry, c.Id));
        Assert.Equal(0, recovery.CleanupKeysDeleted.Value);
        Assert.Single(RecoveryKit.Lines(h, "Cleanup refused", $"coordinator={c.Id} "));
        Assert.Empty(RecoveryKit.Lines(h, "Dead coordinator cleanup complete", $"coordinator={c.Id} "));
    }

    [Fact]
    public async Task CleanupAsync_ForcedFreshHeartbeat_DeletesAndWarns()
    {
        await using var h = Harness.Create(server);
        var cleanup = new CoordinatorCleanup(h.Redis, new RecoveryOptions(), new RecoveryMetrics(h.Registry));
        var c = await h.StartAsync(swarmId: TestIds.New("swarm"));

        var result = await cleanup.CleanupAsync(c.Id, force: true);

        Assert.False(result.Refused);
        Assert.Equal(1, result.Categories[KeyOwnership.Heartbeat]);
        Assert.Equal(1, result.Categories[KeyOwnership.Activity]);
        Assert.False(await h.Database.KeyExistsAsync(Keys.Heartbeat(c.Id)));
        Assert.Null(await h.Database.SortedSetScoreAsync(Keys.Registry, c.Id));
        var warn = Assert.Single(RecoveryKit.Lines(h, "Forced cleanup of a coordinator whose heartbeat is fresh", c.Id));
        Assert.Equal(LogLevel.Warning, warn.Level);
    }

    [Fact]
    public async Task CleanupAsync_UnforcedStaleCoordinator_DeletesEverything()
    {
        await using var h = Harness.Create(server);
        var cleanup = new CoordinatorCleanup(h.Redis, new RecoveryOptions(), new RecoveryMetrics(h.Registry));
        var id = TestIds.New("coord");
        var now = await RedisKit.NowAsync(h.Database);
        try
        {
            var keys = await SeedAsync(h.Database, id, TestIds.New("peer"), TestIds.New("third"), TestIds.New("swarm"), now - 200_000);
            await h.Database.SortedSetAddAsync(Keys.Validators, id, now - 200_000); // it was a validator
            var swarm = (string)(await h.Database.HashGetAsync(Keys.Swarms, id))!;
            await h.Database.ListRightPushAsync(Keys.SwarmTaken(swarm, id), "{\"workId\":\"taken-1\",\"input\":1,\"enqueuedAt\":1}");

            var result = await cleanup.CleanupAsync(id);

            Assert.False(result.Refused);
            Assert.Equal(keys.Count, result.KeysDeleted);
            Assert.Empty(await ScanAsync($"blocking:*{id}*"));
            Assert.False(await h.Database.KeyExistsAsync(Keys.Activity(id)));
            Assert.Null(await h.Database.SortedSetScoreAsync(Keys.Registry, id));
            Assert.Null(await h.Database.SortedSetScoreAsync(Keys.Validators, id)); // no coordinator picks a dead validator
            // What it took from its swarm's queue and never recorded is back in the queue.
            Assert.Equal(0, await h.Database.ListLengthAsync(Keys.SwarmTaken(swarm, id)));
            Assert.Contains("taken-1", (string?)await h.Database.ListGetByIndexAsync(Keys.SwarmQueue(swarm), 0), StringComparison.Ordinal);
        }
        finally
        {
            await RecoveryKit.ForgetAsync(h.Database, id);
        }
    }

    [Theory]
    [InlineData("")]
    [InlineData("a*")]
    [InlineData("*")]
    [InlineData("coord:1")]
    [InlineData("coord 1")]
    [InlineData("c?1")]
    [InlineData("coord[1]")]
    [InlineData("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")] // 65 characters
    public async Task CleanupAsync_InvalidId_ThrowsInvalidIdExceptionAndDeletesNothing(string id)
    {
        await using var h = Harness.Create(server);
        var cleanup = new CoordinatorCleanup(h.Redis, new RecoveryOptions(), new RecoveryMetrics(h.Registry));
        var victim = $"blocking:unblock:{TestIds.New("a-victim")}";
        await h.Database.StringSetAsync(victim, "1", Ttl);

        var error = await Assert.ThrowsAsync<InvalidIdException>(() => cleanup.CleanupAsync(id, force: true));
        await Assert.ThrowsAsync<InvalidIdException>(() => cleanup.EnumerateKeysAsync(id));

        Assert.Equal("coordinatorId", error.Field);
        Assert.True(await h.Database.KeyExistsAsync(victim));
        await h.Database.KeyDeleteAsync(victim);
    }

    [Fact]
    public async Task CleanupAsync_NullId_ThrowsInvalidIdException()
    {
        await using var h = Harness.Create(server);
        var cleanup = new CoordinatorCleanup(h.Redis, new RecoveryOptions(), new RecoveryMetrics(h.Registry));

        await Assert.ThrowsAsync<InvalidIdException>(() => cleanup.CleanupAsync(null!));
    }
}
