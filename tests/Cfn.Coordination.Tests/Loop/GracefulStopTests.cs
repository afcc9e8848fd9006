using System.Text.Json;
using Cfn.Coordination.Loop;
using Cfn.Coordination.Tests.Infrastructure;
using Cfn.Coordination.Validation;
using Cfn.Coordination.Work;

namespace Cfn.Coordination.Tests.Loop;

/// <summary>
/// A coordinator that stops gracefully gives back what it owns and will not finish. A graceful stop removes its
/// heartbeat, so it is never declared dead and nothing would transfer its work: an item listed as its own but never
/// adopted (left by an earlier instance under the ID, or transferred to a replacement that stopped right after its start)
/// would stay owned until its TTL. Found by the 10-minute chaos run (a replacement started as its host stopped).
/// </summary>
[Collection(RedisCollection.Name)]
public sealed class GracefulStopTests(RedisServer server)
{
    [Fact]
    public async Task ItemLeftByCrashedInstance_NewInstanceStopsBeforeAdopting_ItemRequeuedAndCompletedOnceElsewhere()
    {
        await using var h = Harness.Create(server);
        await using var world = await SwarmWorld.CreateAsync(server, h);
        var options = new LoopOptions { ValidatorsPerItem = 1, ValidationTimeout = TimeSpan.FromSeconds(30) };

        // The first instance takes the item and is mid-validation when it crashes.
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var gatedValidator = await world.Db.StartAsync(h, "validator-held", "validators");
        var held = new HeldValidation(gate.Task);
        var gatedWorker = new ValidatorWorker(gatedValidator, held, SwarmWorld.FastValidators(), world.Performance, world.Registry);
        var (gatedStop, gatedRun) = world.Run(gatedWorker.RunAsync);
        var (first, _) = await world.StartCoordinatorAsync("coordinator-g", "swarm-g", options);
        await world.Queue.EnqueueAsync("swarm-g", "item-g", JsonSerializer.SerializeToElement(new { n = 1 }));
        Assert.True(await EventuallyAsync(async () => (await first.Work.GetAsync("item-g"))?.Status == WorkStatus.InProgress,
            TimeSpan.FromSeconds(20)), "the first instance never took the item");
        await held.Asked.WaitAsync(TimeSpan.FromSeconds(20)); // its validation request is out
        await first.AbandonAsync();

        // The next instance claims the ID before the validator leaves. The crashed instance's loop still runs in this
        // process (a real crash would have ended it): once its validator is gone it tries to give the item back, and
        // that write must be fenced as a dead process's would never happen, or the item is released before the test
        // reaches the stop it is about.
        var (second, secondLoop) = await world.StartCoordinatorAsync("coordinator-g", "swarm-g", options, run: false);

        // No validator is live now, so the next instance waits before adopting anything.
        await gatedStop.CancelAsync();
        await gatedRun;
        Assert.Empty(await world.Registry.LiveAsync(TimeSpan.FromSeconds(30)));
        var (secondStop, secondRun) = world.Run(secondLoop.RunAsync);
        Assert.True(await EventuallyAsync(() => Task.FromResult(secondLoop.State.Phase == "waiting-for-validators"),
            TimeSpan.FromSeconds(20)), "the second instance did not wait for validators");
        await secondStop.CancelAsync(); // graceful stop, before it adopted the item
        await secondRun;
        await second.StopAsync();
        Assert.Equal(0, secondLoop.State.ItemsAdopted);

        var released = await second.Work.GetAsync("item-g");
        Assert.Equal(WorkStatus.Released, released?.Status);
        Assert.Equal(1, await world.Queue.LengthAsync("swarm-g"));
        Assert.Single(RecoveryKit.Lines(h, "Work item requeued workId=item-g", "reason=owner_stopped"));

        // Another coordinator claims it and completes it, once.
        await world.StartValidatorAsync("validator-free");
        var (other, _) = await world.StartCoordinatorAsync("coordinator-o", "swarm-g", options);
        Assert.True(await EventuallyAsync(async () => (await other.Work.GetAsync("item-g"))?.Status == WorkStatus.Completed,
            TimeSpan.FromSeconds(20)), "the requeued item was not completed by another coordinator");
        Assert.Equal("coordinator-g", (await other.Work.GetAsync("item-g"))!.TransferredFrom);
        // The line follows the completed write: wait for it, then check there is exactly one.
        Assert.True(await EventuallyAsync(() => Task.FromResult(RecoveryKit.Lines(h, "Work item complete workId=item-g").Count > 0),
            TimeSpan.FromSeconds(10)), "no completion line");
        Assert.Single(RecoveryKit.Lines(h, "Work item complete workId=item-g"));
        Assert.Equal(0, await world.Queue.LengthAsync("swarm-g"));
        gate.TrySetResult();
    }

    /// <summary>A validation that never answers until released (the stopped validator's request stays unanswered).</summary>
    private sealed class HeldValidation(Task released) : IValidation
    {
        private readonly TaskCompletionSource _asked = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task Asked => _asked.Task;

        public async Task<ValidationVerdict> ValidateAsync(ValidationRequest request, CancellationToken cancellationToken)
        {
            _asked.TrySetResult();
            await released.WaitAsync(cancellationToken);
            return ValidationVerdict.Pass;
        }
    }
}
