using System.Text.Json;
using Cfn.Coordination.Loop;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Tests.Infrastructure;
using Cfn.Coordination.Tests.Loop;
using Cfn.Coordination.Work;
using Microsoft.Extensions.Logging;

namespace Cfn.Coordination.Tests.Work;

/// <summary>
/// Work followed to its result (database 40, flushed): the record of a work ID (<c>swarm:{swarm}:work:{workId}</c>) through
/// every transition a user can see — queued, taken, given back, claimed, transferred on a coordinator's death, adopted,
/// completed or failed —, written by the script of each transition and by nothing else, and its expiry.
/// </summary>
[Collection(RedisCollection.Name)]
public sealed class WorkRecordTests(RedisServer server)
{
    private const int Db = 40;

    private static JsonElement Input(int n) => JsonSerializer.SerializeToElement(new { n });

    private static JsonElement Data(int n) => JsonSerializer.SerializeToElement(new { input = new { n } });

    private static List<string> Events(WorkRecord record) => record.History.Select(e => e.Event).ToList();

    [Fact]
    public async Task WaitForFinishAsync_ItemValidatedByTheLoop_WokenByTheNoticeWithVerdictsAndResultWithoutInput()
    {
        await using var h = Harness.Create(server);
        await using var world = await SwarmWorld.CreateAsync(server, h, Db);
        // Its fallback read comes after the test's timeout: only the completion notice can end this wait in time.
        await using var follower = new WorkQueue(world.Db.Redis, fallbackPoll: TimeSpan.FromMinutes(5));
        await world.StartValidatorAsync("validator-w1");
        await world.StartCoordinatorAsync("coordinator-w1", "swarm-w1",
            new LoopOptions { ValidatorsPerItem = 1, ValidationTimeout = TimeSpan.FromSeconds(20) });

        var queued = await world.Queue.EnqueueAsync("swarm-w1", "item-w1", JsonSerializer.SerializeToElement(new { n = 1, text = new string('x', 2000) }));
        var record = await follower.WaitForFinishAsync("swarm-w1", queued.WorkId, TimeSpan.FromSeconds(30));

        Assert.NotNull(record);
        Assert.True(record.IsFinished, $"the wait ended {record.Status}, not finished: the notice never woke it");
        Assert.Equal("completed", record.Status);
        Assert.Equal("coordinator-w1", record.Owner);
        Assert.Equal(["queued", "taken", "completed"], Events(record));
        Assert.Equal([null, "coordinator-w1", "coordinator-w1"], record.History.Select(e => e.Owner));
        var verdict = Assert.Single(record.Verdicts!.Value.EnumerateArray());
        Assert.Equal("validator-w1", verdict.GetProperty("validatorId").GetString());
        Assert.Equal("pass", verdict.GetProperty("verdict").GetString());
        Assert.Equal("pass", record.Result!.Value.GetProperty("outcome").GetString());
        Assert.False(record.Result.Value.TryGetProperty("input", out _)); // the record stays small (SPEC D23)
        Assert.False(record.Result.Value.TryGetProperty("verdicts", out _)); // kept once, apart
        Assert.InRange(record.FinishedAt!.Value, record.EnqueuedAt!.Value, record.UpdatedAt);
        var stored = await world.Db.Database.HashGetAllAsync(Keys.WorkRecord("swarm-w1", "item-w1"));
        Assert.True(stored.Sum(e => e.Value.Length()) < 1500, "the finished record holds more than its result and verdicts");
        var ttl = await world.Db.Database.KeyTimeToLiveAsync(Keys.WorkRecord("swarm-w1", "item-w1"));
        Assert.InRange(ttl!.Value.TotalSeconds, 800, 900); // WorkResultTtlSeconds, 900 by default
        Assert.Equal("completed", (await world.Queue.GetRecordAsync("swarm-w1", "item-w1"))!.Status);
    }

    [Fact]
    public async Task Record_OwnerDiesTransferAdoptComplete_HistoryNamesBothOwnersAndTheZombieWritesNothing()
    {
        await using var h = Harness.Create(server);
        await using var db = await DedicatedDatabase.CreateAsync(server, h, Db);
        await using var queue = new WorkQueue(db.Redis);
        var first = await db.StartAsync(h, "coordinator-wa", "swarm-w2");
        await queue.EnqueueAsync("swarm-w2", "item-w2", Input(2));
        Assert.Equal("queued", (await queue.GetRecordAsync("swarm-w2", "item-w2"))!.Status);

        var taken = await queue.TryTakeAsync("swarm-w2", first.Id);
        var created = await first.Work.CreateAsync(taken!.WorkId, Data(2));
        var inProgress = (await queue.GetRecordAsync("swarm-w2", "item-w2"))!;
        Assert.Equal(("in-progress", "coordinator-wa"), (inProgress.Status, inProgress.Owner));

        // A progress write (validation state) is not a change of hands: the record is left alone.
        var progressed = await first.Work.ProgressAsync(created.Item!, Data(2));
        Assert.True(progressed.Succeeded);
        Assert.Equal(inProgress.History.Count, (await queue.GetRecordAsync("swarm-w2", "item-w2"))!.History.Count);

        // The owner dies: the monitor moves its epoch on (the fence), and the escalation transfers its work to the
        // replacement it names, hands its signals over and asks for the replacement to be started.
        var lastBeat = first.Heartbeats.LastSentAt;
        var fence = await db.Database.StringIncrementAsync(Keys.Epoch(first.Id));
        var recovery = new RecoveryOptions();
        var metrics = new RecoveryMetrics(h.Registry);
        var escalation = new EscalationService(db.Redis, h.Keys, recovery, metrics, new CoordinatorCleanup(db.Redis, recovery, metrics));
        var escalated = await escalation.EscalateAsync(first.Id, "swarm-w2", fence, lastBeat, "handler-w");
        Assert.Equal(EscalationOutcome.Escalated, escalated.Outcome);
        Assert.Equal(1, escalated.Work!.Transferred);
        var replacementId = escalated.NewCoordinatorId!;
        var transferred = (await queue.GetRecordAsync("swarm-w2", "item-w2"))!;
        Assert.Equal(("transferred", replacementId), (transferred.Status, transferred.Owner));
        Assert.Equal("coordinator-wa", transferred.History[^1].From);

        // The dead instance, still running somewhere, tries to complete it: fenced, and the record does not move.
        var zombie = await first.Work.CompleteAsync(progressed.Item!, JsonSerializer.SerializeToElement(new { outcome = "pass" }));
        Assert.Equal(WorkWriteOutcome.Fenced, zombie.Outcome);
        Assert.Equal(transferred.History, (await queue.GetRecordAsync("swarm-w2", "item-w2"))!.History);
        Assert.Equal("transferred", (await queue.GetRecordAsync("swarm-w2", "item-w2"))!.Status);

        var replacement = await db.StartAsync(h, replacementId, "swarm-w2");
        Assert.Single(await replacement.Work.AdoptableAsync());
        var adopted = await replacement.Work.AdoptAsync("item-w2");
        var adoptedRecord = (await queue.GetRecordAsync("swarm-w2", "item-w2"))!;
        Assert.Equal(("adopted", replacementId), (adoptedRecord.Status, adoptedRecord.Owner));

        var result = JsonSerializer.SerializeToElement(new
        {
            input = new { n = 2 },
            outcome = "fail",
            verdicts = new[] { new { workId = "item-w2", validatorId = "validator-x", verdict = "fail" } },
            missing = Array.Empty<string>(),
        });
        Assert.True((await replacement.Work.CompleteAsync(adopted.Item!, result)).Succeeded);

        var done = (await queue.GetRecordAsync("swarm-w2", "item-w2"))!;
        Assert.Equal("completed", done.Status); // every verdict came in: the work is done, its outcome is fail
        Assert.Equal(replacementId, done.Owner);
        Assert.Equal(["queued", "taken", "transferred", "adopted", "completed"], Events(done));
        Assert.Equal([null, "coordinator-wa", replacementId, replacementId, replacementId], done.History.Select(e => e.Owner));
        Assert.Equal([null, null, "coordinator-wa", "coordinator-wa", null], done.History.Select(e => e.From));
        Assert.Equal("fail", done.Result!.Value.GetProperty("outcome").GetString());
        Assert.False(done.Result.Value.TryGetProperty("input", out _));
        Assert.Equal("validator-x", Assert.Single(done.Verdicts!.Value.EnumerateArray()).GetProperty("validatorId").GetString());
    }

    [Fact]
    public async Task Record_GivenBackClaimedRequeuedThenTimedOut_QueuedAgainEachTimeAndFailed()
    {
        await using var h = Harness.Create(server);
        await using var db = await DedicatedDatabase.CreateAsync(server, h, Db);
        await using var queue = new WorkQueue(db.Redis);
        var first = await db.StartAsync(h, "coordinator-wc", "swarm-w3");
        var second = await db.StartAsync(h, "coordinator-wd", "swarm-w3");
        await queue.EnqueueAsync("swarm-w3", "item-w3", Input(3));
        var taken = (await queue.TryTakeAsync("swarm-w3", first.Id))!;
        var created = await first.Work.CreateAsync(taken.WorkId, Data(3));
        await queue.RecordedAsync("swarm-w3", first.Id, taken);

        // A stopping owner releases the item, then puts it back at the front of the queue (two steps: two honest states).
        await first.Work.ReleaseAsync(created.Item!);
        var released = (await queue.GetRecordAsync("swarm-w3", "item-w3"))!;
        Assert.Equal(("released", "coordinator-wc"), (released.Status, released.Owner));
        await queue.ReturnAsync("swarm-w3", taken, first.Id);
        var requeued = (await queue.GetRecordAsync("swarm-w3", "item-w3"))!;
        Assert.Equal("queued", requeued.Status);
        Assert.Null(requeued.Owner);

        var again = (await queue.TryTakeAsync("swarm-w3", second.Id))!;
        var claimed = await second.Work.ClaimAsync(again.ReleasedBy!, again.WorkId);
        Assert.True(claimed.Succeeded);
        Assert.Equal(("in-progress", "coordinator-wd"), ((await queue.GetRecordAsync("swarm-w3", "item-w3"))!.Status, (await queue.GetRecordAsync("swarm-w3", "item-w3"))!.Owner));

        // Nobody will finish it (the owner died and no replacement comes): back to the queue in the same script.
        var transfer = new WorkTransfer(db.Redis, new RecoveryMetrics(h.Registry), h.LoggerFactory.CreateLogger("transfer"));
        Assert.Equal(1, await transfer.RequeueAllAsync("swarm-w3", second.Id, "owner_dead_no_replacement"));
        var back = (await queue.GetRecordAsync("swarm-w3", "item-w3"))!;
        Assert.Equal("queued", back.Status);
        Assert.Equal(("requeued", "coordinator-wd", "owner_dead_no_replacement"), (back.History[^1].Event, back.History[^1].From, back.History[^1].Reason));

        var last = (await queue.TryTakeAsync("swarm-w3", first.Id))!;
        var reclaimed = await first.Work.ClaimAsync(last.ReleasedBy!, last.WorkId);
        var timedOut = JsonSerializer.SerializeToElement(new { outcome = "timeout", verdicts = Array.Empty<object>(), missing = new[] { "validator-y" } });
        Assert.True((await first.Work.CompleteAsync(reclaimed.Item!, timedOut)).Succeeded);

        var failed = (await queue.GetRecordAsync("swarm-w3", "item-w3"))!;
        Assert.Equal("failed", failed.Status); // not every verdict came in
        Assert.True(failed.IsFinished);
        Assert.Equal(["queued", "taken", "released", "requeued", "claimed", "requeued", "claimed", "failed"], Events(failed));
        Assert.Equal("validator-y", Assert.Single(failed.Result!.Value.GetProperty("missing").EnumerateArray()).GetString());
    }

    [Fact]
    public async Task Record_FinishedWithResultTtlOneSecond_ExpiresWhileTheWorkItemStays()
    {
        await using var h = Harness.Create(server, o => o.WorkResultTtlSeconds = 1);
        await using var db = await DedicatedDatabase.CreateAsync(server, h, Db);
        await using var queue = new WorkQueue(db.Redis);
        var owner = await db.StartAsync(h, "coordinator-we", "swarm-w4");
        await queue.EnqueueAsync("swarm-w4", "item-w4", Input(4));
        var unfinishedTtl = await db.Database.KeyTimeToLiveAsync(Keys.WorkRecord("swarm-w4", "item-w4"));
        Assert.InRange(unfinishedTtl!.Value.TotalDays, 6.99, 7); // an item may wait long in a deep queue

        var created = await owner.Work.CreateAsync("item-w4", Data(4));
        await owner.Work.CompleteAsync(created.Item!, JsonSerializer.SerializeToElement(new { outcome = "pass" }));
        Assert.Equal("completed", (await queue.GetRecordAsync("swarm-w4", "item-w4"))!.Status);
        Assert.InRange((await db.Database.KeyTimeToLiveAsync(Keys.WorkRecord("swarm-w4", "item-w4")))!.Value.TotalMilliseconds, 1, 1000);

        Assert.True(await EventuallyAsync(async () => await queue.GetRecordAsync("swarm-w4", "item-w4") is null, TimeSpan.FromSeconds(10)),
            "the finished record outlived WorkResultTtlSeconds");
        Assert.NotNull(await owner.Work.GetAsync("item-w4")); // the K10 item has its own TTL (WorkTtlSeconds)
        Assert.Null(await queue.WaitForFinishAsync("swarm-w4", "item-w4", TimeSpan.FromSeconds(5)));
    }

    [Fact]
    public async Task History_FortyEvents_KeepsTheLast32InOrder()
    {
        await using var h = Harness.Create(server);
        await using var db = await DedicatedDatabase.CreateAsync(server, h, Db);
        await using var queue = new WorkQueue(db.Redis);
        var owner = await db.StartAsync(h, "coordinator-wg", "swarm-w6");
        await queue.EnqueueAsync("swarm-w6", "item-w6", Input(6));
        var created = await owner.Work.CreateAsync("item-w6", Data(6));
        for (var i = 0; i < 38; i++)
        {
            await queue.EnqueueAsync("swarm-w6", "item-w6", Input(6)); // the same ID submitted again and again
        }

        await owner.Work.CompleteAsync(created.Item!, JsonSerializer.SerializeToElement(new { outcome = "pass" }));

        var record = (await queue.GetRecordAsync("swarm-w6", "item-w6"))!;
        Assert.Equal(32, record.History.Count);
        Assert.Equal("completed", record.History[^1].Event);
        Assert.All(record.History.Take(31), e => Assert.Equal("queued", e.Event)); // the first queued and the taken were dropped
        Assert.True(record.History.Zip(record.History.Skip(1)).All(p => p.First.At <= p.Second.At), "the history is not oldest first");
        Assert.Equal(32, (int)await db.Database.HashGetAsync(Keys.WorkRecord("swarm-w6", "item-w6"), "events"));
    }

    [Fact]
    public async Task Enqueue_FullQueueOrSameIdAgain_NoRecordForRefusedWorkAndAFinishedResultStands()
    {
        await using var h = Harness.Create(server);
        await using var db = await DedicatedDatabase.CreateAsync(server, h, Db);
        await using var queue = new WorkQueue(db.Redis, maxLength: 1, fallbackPoll: TimeSpan.FromMilliseconds(200));
        var owner = await db.StartAsync(h, "coordinator-wf", "swarm-w5");
        await queue.EnqueueAsync("swarm-w5", "item-w5", Input(5));

        await Assert.ThrowsAsync<WorkQueueFullException>(() => queue.EnqueueAsync("swarm-w5", "item-w5b", Input(6)));
        Assert.Null(await queue.GetRecordAsync("swarm-w5", "item-w5b"));
        Assert.False(await db.Database.KeyExistsAsync(Keys.WorkRecord("swarm-w5", "item-w5b")));

        // An unfinished item's wait ends at its timeout with the record as it stands.
        var waiting = await queue.WaitForFinishAsync("swarm-w5", "item-w5", TimeSpan.FromMilliseconds(500));
        Assert.Equal("queued", waiting!.Status);
        Assert.False(waiting.IsFinished);

        var taken = (await queue.TryTakeAsync("swarm-w5", owner.Id))!;
        var created = await owner.Work.CreateAsync(taken.WorkId, Data(5));
        await owner.Work.CompleteAsync(created.Item!, JsonSerializer.SerializeToElement(new { outcome = "pass" }));
        await queue.EnqueueAsync("swarm-w5", "item-w5", Input(5));

        var record = (await queue.GetRecordAsync("swarm-w5", "item-w5"))!;
        Assert.Equal("completed", record.Status); // queued again, but not taken again: the result stands
        Assert.Equal(["queued", "taken", "completed", "queued"], Events(record));
        Assert.InRange((await db.Database.KeyTimeToLiveAsync(Keys.WorkRecord("swarm-w5", "item-w5")))!.Value.TotalSeconds, 800, 900); // WorkResultTtlSeconds, 900 by default
        Assert.Null(await queue.GetRecordAsync("swarm-w5", "item-unknown"));
        await Assert.ThrowsAsync<Cfn.Coordination.Identity.InvalidIdException>(() => queue.GetRecordAsync("swarm-w5", "bad id"));
    }
}
