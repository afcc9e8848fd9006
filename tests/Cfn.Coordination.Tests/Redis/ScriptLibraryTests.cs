using Cfn.Coordination.Redis;
using Cfn.Coordination.Signals;
using Cfn.Coordination.Tests.Infrastructure;
using StackExchange.Redis;

namespace Cfn.Coordination.Tests.Redis;

/// <summary>
/// The shared Lua functions (<c>lib_common.lua</c>, <c>lib_inbox.lua</c>) through the scripts that use them: every fenced
/// script answers in one shape, so whichever write finds an instance superseded reports the epoch that replaced it;
/// and a signal handed over from a dead inbox leaves that inbox's K2 view truthful.
/// </summary>
/// <remarks>Each test runs on database <see cref="DedicatedDatabase.ScriptLibraryTests"/>: other tests sweep database 0.</remarks>
[Collection(RedisCollection.Name)]
public sealed class ScriptLibraryTests(RedisServer server)
{
    [Fact]
    public async Task EveryFencedWrite_NewerEpochExists_SupersededNamingTheCurrentEpochNothingWritten()
    {
        await using var h = Harness.Create(server);
        await using var db = await DedicatedDatabase.CreateAsync(server, h, DedicatedDatabase.ScriptLibraryTests);
        var receiver = await db.StartAsync(h, TestIds.New("recv"), "swarm-s");
        var writes = new (string Name, Func<Coordinator, Task> Write)[]
        {
            ("activity", c => c.Activity.RecordAsync()),
            ("send", c => c.Signals.SendAsync(receiver.Id, SignalTypes.Completion, 1, idempotencyKey: "fence")),
            ("ack", c => c.Acks.AcknowledgeAsync($"{receiver.Id}:{c.Id}:validation:1:fence", receiver.Id, SignalTypes.Validation, null, 1)),
        };

        foreach (var (name, write) in writes)
        {
            var stale = await db.StartAsync(h, TestIds.New("stale"), "swarm-s");
            var current = await db.Database.StringIncrementAsync(Keys.Epoch(stale.Id)); // a newer instance of the ID started
            var keysBefore = await CountKeysAsync(db, stale.Id);

            var superseded = await Assert.ThrowsAsync<CoordinatorSupersededException>(() => write(stale));

            Assert.Contains($"(current epoch {current})", superseded.Message, StringComparison.Ordinal);
            Assert.True(stale.IsSuperseded, name);
            Assert.Equal(keysBefore, await CountKeysAsync(db, stale.Id));
        }

        Assert.False(await db.Database.KeyExistsAsync(Keys.Inbox(receiver.Id)));
    }

    [Fact]
    public async Task Heartbeat_NewerEpochExists_MarksSupersededWithTheCurrentEpochAndWritesNothing()
    {
        await using var h = Harness.Create(server);
        await using var db = await DedicatedDatabase.CreateAsync(server, h, DedicatedDatabase.ScriptLibraryTests);
        var stale = await db.StartAsync(h, TestIds.New("stale"), "swarm-s");
        var lastBeat = (string?)await db.Database.StringGetAsync(stale.HeartbeatKey);
        var current = await db.Database.StringIncrementAsync(Keys.Epoch(stale.Id));

        Assert.False(await stale.Heartbeats.BeatAsync());

        Assert.True(stale.IsSuperseded);
        Assert.Equal(lastBeat, (string?)await db.Database.StringGetAsync(stale.HeartbeatKey));
        Assert.Contains(h.Messages, m => m.Contains("Coordinator superseded", StringComparison.Ordinal) &&
                                         m.Contains($"currentEpoch={current} ", StringComparison.Ordinal));
    }

    [Fact]
    public async Task MoveSignal_NewestOfTwoHandedOver_DeadViewShowsTheOneStillThere()
    {
        await using var h = Harness.Create(server);
        await using var db = await DedicatedDatabase.CreateAsync(server, h, DedicatedDatabase.ScriptLibraryTests);
        var database = db.Database;
        var sender = await db.StartAsync(h, TestIds.New("sender"), "swarm-s");
        var dead = TestIds.New("dead");
        var replacement = TestIds.New("repl");
        var first = await sender.Signals.SendAsync(dead, SignalTypes.Validation, 1, idempotencyKey: "one");
        var second = await sender.Signals.SendAsync(dead, SignalTypes.Validation, 1, idempotencyKey: "two");
        var entries = await database.StreamRangeAsync(Keys.Inbox(dead));
        Assert.Equal(2, entries.Length);
        Assert.Contains(second.MessageId, (string?)await database.StringGetAsync(Keys.Signal(dead)), StringComparison.Ordinal);

        // The hand-over moves the newest first and stops there (its handler died, say): the dead inbox keeps the older.
        var moved = "{\"messageId\":\"moved\"}";
        var result = (long)await database.ScriptEvaluateAsync(RedisScripts.MoveSignal,
            [Keys.Inbox(dead), Keys.Inbox(replacement), Keys.Signal(replacement), Keys.Signal(dead), Keys.Idempotency("moved-id")],
            [entries[1].Id, moved, "moved-id", Keys.InboxGroup, 600, Keys.Events(replacement).ToString(), 600]);

        Assert.Equal(1, result);
        Assert.Equal(1, await database.StreamLengthAsync(Keys.Inbox(dead)));
        var view = (string?)await database.StringGetAsync(Keys.Signal(dead));
        Assert.Contains(first.MessageId, view, StringComparison.Ordinal); // before, K2 kept showing the moved signal
        Assert.Equal(moved, (string?)await database.StringGetAsync(Keys.Signal(replacement)));
        Assert.Equal(1, await database.StreamLengthAsync(Keys.Inbox(replacement)));
    }

    private async Task<int> CountKeysAsync(DedicatedDatabase db, string id)
    {
        var count = 0;
        await foreach (var _ in server.Server.KeysAsync(db.Index, $"*{id}*"))
        {
            count++;
        }

        return count;
    }
}
