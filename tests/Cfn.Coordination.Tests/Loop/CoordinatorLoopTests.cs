using System.Text.Json;
using Cfn.Coordination.Loop;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Tests.Infrastructure;
using Cfn.Coordination.Tests.Resilience;
using Cfn.Coordination.Validation;
using Cfn.Coordination.Work;

namespace Cfn.Coordination.Tests.Loop;

[Collection(RedisCollection.Name)]
public sealed class CoordinatorLoopTests(RedisServer server)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Swarm_TwoCoordinatorsThreeValidators_CompletesEveryItemWithKVerdicts()
    {
        await using var h = Harness.Create(server);
        await using var world = await SwarmWorld.CreateAsync(server, h);
        string[] validators = ["validator-0", "validator-1", "validator-2"];
        foreach (var id in validators)
        {
            await world.StartValidatorAsync(id);
        }

        var options = new LoopOptions { ValidatorsPerItem = 2, ValidationTimeout = TimeSpan.FromSeconds(20) };
        var (c1, loop1) = await world.StartCoordinatorAsync("coordinator-1", "swarm-a", options);
        var (c2, loop2) = await world.StartCoordinatorAsync("coordinator-2", "swarm-a", options);
        var workIds = new List<string>();
        for (var i = 0; i < 8; i++)
        {
            workIds.Add((await world.Queue.EnqueueAsync("swarm-a", $"item-{i}", JsonSerializer.SerializeToElement(new { i }))).WorkId);
        }

        Assert.True(await EventuallyAsync(async () =>
        {
            foreach (var workId in workIds)
            {
                if (await SwarmWorld.FindAsync(workId, c1, c2) is not { Status: WorkStatus.Completed })
                {
                    return false;
                }
            }

            return true;
        }, Patience, pollMs: 100), "every item completed");

        foreach (var workId in workIds)
        {
            var item = (await SwarmWorld.FindAsync(workId, c1, c2))!;
            var data = item.Data!.Value;
            Assert.Equal("pass", data.GetProperty("outcome").GetString());
            var verdicts = data.GetProperty("verdicts").EnumerateArray().ToList();
            Assert.Equal(2, verdicts.Count);
            Assert.All(verdicts, v => Assert.Equal(workId, v.GetProperty("workId").GetString()));
            Assert.All(verdicts, v => Assert.Contains(v.GetProperty("validatorId").GetString(), validators));
            Assert.NotEqual(verdicts[0].GetProperty("validatorId").GetString(), verdicts[1].GetProperty("validatorId").GetString());
            Assert.Equal(0, data.GetProperty("missing").GetArrayLength());
        }

        Assert.Equal(8, loop1.State.ItemsCompleted + loop2.State.ItemsCompleted);
        Assert.Equal(0, loop1.State.ItemsFailed + loop2.State.ItemsFailed);
        Assert.Equal(0, await world.Queue.LengthAsync("swarm-a"));
        // One ACK wait per item, naming both validators asked in one line.
        var waits = RecoveryKit.Lines(h, "Waiting for ACKs", "coordinators=");
        Assert.Equal(8, waits.Count);
        Assert.All(waits, line =>
        {
            var asked = line.Message.Split(' ').Single(t => t.StartsWith("coordinators=", StringComparison.Ordinal))["coordinators=".Length..].Split(',');
            Assert.Equal(2, asked.Length);
            Assert.All(asked, a => Assert.Contains(a, validators));
        });
        var stats = (await world.Performance.ReadAsync()).Validators;
        Assert.Equal(16, stats.Where(s => validators.Contains(s.ValidatorId)).Sum(s => s.Count));
    }

    [Fact]
    public async Task Loop_ValidatorsNeverAck_TimesOutRecordsTimeoutsAndCompletesItemAsFailed()
    {
        await using var h = Harness.Create(server);
        await using var world = await SwarmWorld.CreateAsync(server, h);
        // Registered but not running: they never ACK (stopped validators).
        await world.Registry.RegisterAsync("validator-dead-1");
        await world.Registry.RegisterAsync("validator-dead-2");
        var options = new LoopOptions { ValidatorsPerItem = 2, ValidationTimeout = TimeSpan.FromMilliseconds(800) };
        var (c1, loop) = await world.StartCoordinatorAsync("coordinator-1", "swarm-t", options);

        await world.Queue.EnqueueAsync("swarm-t", "item-t", JsonSerializer.SerializeToElement(new { t = 1 }));

        Assert.True(await EventuallyAsync(
            async () => await c1.Work.GetAsync("item-t") is { Status: WorkStatus.Completed }, Patience, pollMs: 50));
        var data = (await c1.Work.GetAsync("item-t"))!.Data!.Value;
        Assert.Equal("timeout", data.GetProperty("outcome").GetString());
        Assert.Equal(2, data.GetProperty("missing").GetArrayLength());
        Assert.Equal(0, data.GetProperty("verdicts").GetArrayLength());
        Assert.True(await EventuallyAsync(async () =>
        {
            var stats = (await world.Performance.ReadAsync()).Validators;
            return stats.Count(s => s.ValidatorId.StartsWith("validator-dead-", StringComparison.Ordinal) && s.Timeouts == 1) == 2;
        }, TimeSpan.FromSeconds(5)));
        var dead = (await world.Performance.ReadAsync()).Validators.First(s => s.ValidatorId == "validator-dead-1");
        Assert.InRange(dead.AvgDuration, 700, 30_000);
        Assert.Single(RecoveryKit.Lines(h, "ACK wait timeout", "validator-dead-1", "validator-dead-2"));
        Assert.Equal(1, loop.State.ItemsFailed);
        Assert.Equal(2, loop.State.ValidatorTimeouts);
        Assert.Contains("validation timeout", loop.State.LastError, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Loop_CancelledMidItem_ReleasesAndRequeuesItAndAnotherCoordinatorClaimsIt()
    {
        await using var h = Harness.Create(server);
        await using var world = await SwarmWorld.CreateAsync(server, h);
        await world.Registry.RegisterAsync("validator-silent");
        var options = new LoopOptions { ValidatorsPerItem = 1, ValidationTimeout = TimeSpan.FromMinutes(2) };
        var (c1, loop1) = await world.StartCoordinatorAsync("coordinator-1", "swarm-c", options, run: false);
        var (stop, run) = world.Run(loop1.RunAsync);
        await world.Queue.EnqueueAsync("swarm-c", "item-c", JsonSerializer.SerializeToElement(new { c = 1 }));
        Assert.True(await EventuallyAsync(
            () => Task.FromResult(loop1.State is { Phase: "validation", CurrentWorkId: "item-c" }), Patience));
        Assert.True(await EventuallyAsync(() => Task.FromResult(c1.Activity.RunningWaits == 1), Patience));

        await stop.CancelAsync();
        await run.WaitAsync(Patience);

        var released = await c1.Work.GetAsync("item-c");
        Assert.Equal(WorkStatus.Released, released!.Status);
        Assert.Equal(1, loop1.State.ItemsReleased);
        Assert.Equal("stopped", loop1.State.Phase);
        Assert.Equal(1, await world.Queue.LengthAsync("swarm-c"));

        // A live validator now, and another coordinator: it claims the released item (moved under its key) and completes it.
        await world.Registry.UnregisterAsync("validator-silent");
        await world.StartValidatorAsync("validator-live");
        var (c2, _) = await world.StartCoordinatorAsync("coordinator-2", "swarm-c", options);
        Assert.True(await EventuallyAsync(
            async () => await c2.Work.GetAsync("item-c") is { Status: WorkStatus.Completed }, Patience, pollMs: 50));
        var item = (await c2.Work.GetAsync("item-c"))!;
        Assert.Equal("coordinator-1", item.TransferredFrom);
        Assert.Null(await c1.Work.GetAsync("item-c"));
    }

    [Fact]
    public async Task Loop_PreviousInstanceCrashedBetweenTakeAndRecord_ItemRequeuedAndCompleted()
    {
        await using var h = Harness.Create(server);
        await using var world = await SwarmWorld.CreateAsync(server, h);
        await world.StartValidatorAsync("validator-r");
        await world.Queue.EnqueueAsync("swarm-r", "item-r", JsonSerializer.SerializeToElement(new { r = 1 }));
        // An earlier coordinator-r took it and died before writing its K10 item: the item is only in its taken list.
        Assert.NotNull(await world.Queue.TryTakeAsync("swarm-r", "coordinator-r"));
        Assert.Equal(0, await world.Queue.LengthAsync("swarm-r"));

        var (c, loop) = await world.StartCoordinatorAsync("coordinator-r", "swarm-r", new LoopOptions { ValidatorsPerItem = 1 });

        Assert.True(await EventuallyAsync(async () => await c.Work.GetAsync("item-r") is { Status: WorkStatus.Completed }, Patience, pollMs: 50));
        Assert.Equal(0, await world.Db.Database.ListLengthAsync(Keys.SwarmTaken("swarm-r", "coordinator-r")));
        Assert.Single(RecoveryKit.Lines(h, "Work taken but never recorded put back in the queue", "coordinator-r"));
    }

    [Fact]
    public async Task Loop_ExternalApiConfigured_CallsThroughHandlerWithCurlableUrlAsLastToken()
    {
        await using var h = Harness.Create(server);
        await using var world = await SwarmWorld.CreateAsync(server, h);
        await using var api = new LoopbackHttpServer((_, _) => Task.FromResult(200));
        await world.StartValidatorAsync("validator-ext");
        var url = api.BaseUrl + "/health";
        var options = new LoopOptions { ValidatorsPerItem = 1, ValidationTimeout = TimeSpan.FromSeconds(20), ExternalApiUrl = new Uri(url), ExternalCallRate = 1 };
        var (c1, _) = await world.StartCoordinatorAsync("coordinator-1", "swarm-e", options);

        await world.Queue.EnqueueAsync("swarm-e", "item-e", JsonSerializer.SerializeToElement(new { e = 1 }));

        Assert.True(await EventuallyAsync(
            async () => await c1.Work.GetAsync("item-e") is { Status: WorkStatus.Completed }, Patience, pollMs: 50));
        Assert.True(api.Hits >= 1);
        var line = Assert.Single(RecoveryKit.Lines(h, "Calling external API GET"));
        Assert.Equal(url, line.Message.Split(' ', StringSplitOptions.RemoveEmptyEntries)[^1]);
        var external = (await c1.Work.GetAsync("item-e"))!.Data!.Value.GetProperty("external");
        Assert.Equal(200, external.GetProperty("status").GetInt32());
        Assert.Equal(url, external.GetProperty("url").GetString());
    }

    [Fact]
    public async Task Loop_NoLiveValidator_TakesNoWork()
    {
        await using var h = Harness.Create(server);
        await using var world = await SwarmWorld.CreateAsync(server, h);
        var options = new LoopOptions { NoValidatorsRetryInterval = TimeSpan.FromMilliseconds(100) };
        var (_, loop) = await world.StartCoordinatorAsync("coordinator-1", "swarm-n", options);
        await world.Queue.EnqueueAsync("swarm-n", "item-n", JsonSerializer.SerializeToElement(1));

        Assert.True(await EventuallyAsync(() => Task.FromResult(loop.State.Phase == "waiting-for-validators"), Patience));
        // Shows the item stays queued and the line is logged once: three of the loop's retries without validators. A
        // negative check: no event marks an item not taken or a line not logged again.
        await Task.Delay(3 * options.NoValidatorsRetryInterval);

        Assert.Equal(1, await world.Queue.LengthAsync("swarm-n"));
        Assert.Single(RecoveryKit.Lines(h, "No live validators"));
    }
}
