using System.Collections;
using System.ComponentModel.DataAnnotations;
using System.Diagnostics;
using System.Text.Json;
using Cfn.Coordination.Loop;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Tests.Infrastructure;

namespace Cfn.Coordination.Tests.Loop;

[Collection(RedisCollection.Name)]
public sealed class WorkQueueTests(RedisServer server)
{
    [Fact]
    public async Task Enqueue_BeyondMaxLength_RefusedAndNothingWritten()
    {
        await using var h = Harness.Create(server);
        await using var queue = new WorkQueue(h.Redis, maxLength: 2);
        var swarm = TestIds.New("swarm");

        await queue.EnqueueAsync(swarm, "a", JsonSerializer.SerializeToElement(1));
        await queue.EnqueueAsync(swarm, null, JsonSerializer.SerializeToElement(2));
        var error = await Assert.ThrowsAsync<WorkQueueFullException>(() => queue.EnqueueAsync(swarm, "c", JsonSerializer.SerializeToElement(3)));

        Assert.Contains("full", error.Message, StringComparison.Ordinal);
        Assert.Equal(2, await queue.LengthAsync(swarm));
        Assert.Equal("a", (await queue.TryTakeAsync(swarm))!.WorkId);
        Assert.StartsWith("work-", (await queue.TryTakeAsync(swarm))!.WorkId, StringComparison.Ordinal);
        Assert.Null(await queue.TryTakeAsync(swarm));
    }

    [Fact]
    public async Task TakeWithTaker_ItemKeptInTheTakenListUntilRecorded_RequeuedInOrderWhenNeverRecorded()
    {
        await using var h = Harness.Create(server);
        await using var queue = new WorkQueue(h.Redis);
        var swarm = TestIds.New("swarm");
        var taker = TestIds.New("coordinator");
        foreach (var id in new[] { "w1", "w2", "w3" })
        {
            await queue.EnqueueAsync(swarm, id, JsonSerializer.SerializeToElement(id));
        }

        var first = (await queue.TryTakeAsync(swarm, taker))!;
        var second = (await queue.TryTakeAsync(swarm, taker))!;
        Assert.Equal(2, await h.Database.ListLengthAsync(Keys.SwarmTaken(swarm, taker)));

        await queue.RecordedAsync(swarm, taker, first);
        Assert.Equal(1, await h.Database.ListLengthAsync(Keys.SwarmTaken(swarm, taker)));

        // The taker "crashes" before recording w2: it goes back to the front, ahead of w3.
        Assert.Equal(1, await queue.RequeueTakenAsync(swarm, taker));
        Assert.Equal(0, await h.Database.ListLengthAsync(Keys.SwarmTaken(swarm, taker)));
        Assert.Equal(second.WorkId, (await queue.TryTakeAsync(swarm))!.WorkId);
        Assert.Equal("w3", (await queue.TryTakeAsync(swarm))!.WorkId);
        Assert.Equal(0, await queue.RequeueTakenAsync(swarm, taker));
    }

    [Fact]
    public async Task Enqueue_BadIdOrOversizedInput_RefusedNamingTheField()
    {
        await using var h = Harness.Create(server);
        await using var queue = new WorkQueue(h.Redis);
        var swarm = TestIds.New("swarm");

        var badId = await Assert.ThrowsAsync<Cfn.Coordination.Identity.InvalidIdException>(() => queue.EnqueueAsync(swarm, "no spaces", JsonSerializer.SerializeToElement(1)));
        var badSwarm = await Assert.ThrowsAsync<Cfn.Coordination.Identity.InvalidIdException>(() => queue.EnqueueAsync("a:b", "w", JsonSerializer.SerializeToElement(1)));
        var big = JsonSerializer.SerializeToElement(new string('x', queue.MaxInputBytes + 1));
        var tooBig = await Assert.ThrowsAsync<ArgumentException>(() => queue.EnqueueAsync(swarm, "w", big));

        Assert.Equal("workId", badId.Field);
        Assert.Equal("swarmId", badSwarm.Field);
        Assert.Equal("input", tooBig.ParamName);
        Assert.Equal(0, await queue.LengthAsync(swarm));
    }

    [Fact]
    public async Task Take_ItemQueuedLater_WokenByPubSubNotByFallbackPoll()
    {
        await using var h = Harness.Create(server);
        await using var queue = new WorkQueue(h.Redis, fallbackPoll: TimeSpan.FromMinutes(10));
        var swarm = TestIds.New("swarm");
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var taking = queue.TakeAsync(swarm, cts.Token);
        // A negative check: the take must still be waiting (no item yet); nothing marks "still waiting".
        await Task.Delay(300);
        Assert.False(taking.IsCompleted);

        var clock = Stopwatch.StartNew();
        await queue.EnqueueAsync(swarm, "late", JsonSerializer.SerializeToElement(new { x = 1 }));
        var item = await taking.WaitAsync(TimeSpan.FromSeconds(10));

        Assert.Equal("late", item.WorkId);
        Assert.Equal(1, item.Input.GetProperty("x").GetInt32());
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task Take_Cancelled_Throws()
    {
        await using var h = Harness.Create(server);
        await using var queue = new WorkQueue(h.Redis);
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => queue.TakeAsync(TestIds.New("swarm"), cts.Token));
    }

    [Fact]
    public async Task Return_GoesToTheFrontMarkedReleasedEvenWhenFull()
    {
        await using var h = Harness.Create(server);
        await using var queue = new WorkQueue(h.Redis, maxLength: 1);
        var swarm = TestIds.New("swarm");
        await queue.EnqueueAsync(swarm, "first", JsonSerializer.SerializeToElement(1));
        var taken = (await queue.TryTakeAsync(swarm))!;
        await queue.EnqueueAsync(swarm, "second", JsonSerializer.SerializeToElement(2));

        await queue.ReturnAsync(swarm, taken, "coordinator-9");

        var again = (await queue.TryTakeAsync(swarm))!;
        Assert.Equal("first", again.WorkId);
        Assert.Equal("coordinator-9", again.ReleasedBy);
        Assert.Equal(1, again.Returns);
    }

    [Fact]
    public async Task Take_MalformedEntry_DroppedAndCounted()
    {
        await using var h = Harness.Create(server);
        await using var queue = new WorkQueue(h.Redis);
        var swarm = TestIds.New("swarm");
        await h.Database.ListRightPushAsync(Keys.SwarmQueue(swarm), "{not json");
        await h.Database.ListRightPushAsync(Keys.SwarmQueue(swarm), """{"workId":"bad id","input":1,"enqueuedAt":1}""");
        await queue.EnqueueAsync(swarm, "ok", JsonSerializer.SerializeToElement(1));

        var item = await queue.TryTakeAsync(swarm);

        Assert.Equal("ok", item!.WorkId);
        Assert.Equal(2, queue.Malformed);
    }

    [Fact]
    public async Task Generator_TopUp_FillsEachSwarmToTarget()
    {
        await using var h = Harness.Create(server);
        await using var queue = new WorkQueue(h.Redis);
        string[] swarms = [TestIds.New("swarm"), TestIds.New("swarm")];
        var generator = new WorkGenerator(queue, swarms, new WorkGeneratorOptions { TargetLength = 3 }, random: new Random(3));

        Assert.Equal(6, await generator.TopUpAsync());
        await queue.TryTakeAsync(swarms[0]);
        Assert.Equal(1, await generator.TopUpAsync());

        Assert.Equal(3, await queue.LengthAsync(swarms[0]));
        Assert.Equal(3, await queue.LengthAsync(swarms[1]));
        Assert.Equal(7, generator.Generated);
    }

    [Fact]
    public void LoopOptions_FromEnvironment_ReadsAndRefusesBadValuesNamingThem()
    {
        var o = LoopOptions.FromEnvironment(new Hashtable
        {
            ["VALIDATORS_PER_ITEM"] = "3",
            ["EXTERNAL_API_URL"] = "http://api.example.com/health",
            ["EXTERNAL_CALL_RATE"] = "0.5",
        });
        Assert.Equal(3, o.ValidatorsPerItem);
        Assert.Equal(new Uri("http://api.example.com/health"), o.ExternalApiUrl);
        Assert.Equal(0.5, o.ExternalCallRate);
        Assert.Null(LoopOptions.FromEnvironment(new Hashtable()).ExternalApiUrl);

        foreach (var (name, value) in new[]
        {
            ("VALIDATORS_PER_ITEM", "0"), ("VALIDATORS_PER_ITEM", "101"), ("EXTERNAL_API_URL", "not a url"),
            ("EXTERNAL_API_URL", "ftp://x/y"), ("EXTERNAL_CALL_RATE", "2"),
        })
        {
            var error = Assert.Throws<ValidationException>(() => LoopOptions.FromEnvironment(new Hashtable { [name] = value }));
            Assert.Contains(name, error.Message, StringComparison.Ordinal);
        }
    }
}
