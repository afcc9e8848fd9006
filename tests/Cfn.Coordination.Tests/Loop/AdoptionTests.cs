using System.Text.Json;
using Cfn.Coordination.Loop;
using Cfn.Coordination.Tests.Infrastructure;
using Cfn.Coordination.Validation;
using Cfn.Coordination.Work;

namespace Cfn.Coordination.Tests.Loop;

/// <summary>
/// D16 in the work loop: a coordinator that crashes in the middle of an item's validation and comes back under its ID
/// (a new instance, as a StatefulSet pod does) adopts the item before taking new work and resumes it: the validator,
/// which had ACKed the request, is not asked again, its verdict reaches the new instance, and the item is completed once.
/// </summary>
[Collection(RedisCollection.Name)]
public sealed class AdoptionTests(RedisServer server)
{
    [Fact]
    public async Task CrashMidValidation_RestartUnderSameId_AdoptsResumesWithoutAskingAgainCompletesOnce()
    {
        await using var h = Harness.Create(server);
        await using var world = await SwarmWorld.CreateAsync(server, h);
        var gate = new GatedValidation();
        await world.StartValidatorAsync("validator-a", gate);
        var options = new LoopOptions { ValidatorsPerItem = 1, ValidationTimeout = TimeSpan.FromSeconds(30) };
        var (first, _) = await world.StartCoordinatorAsync("coordinator-r", "swarm-r", options);
        await world.Queue.EnqueueAsync("swarm-r", "item-r", JsonSerializer.SerializeToElement(new { n = 1 }));

        // Mid-validation: the validator has it and the coordinator recorded the ACK in the item.
        Assert.True(await EventuallyAsync(async () =>
            (await first.Work.GetAsync("item-r"))?.Data?.GetRawText().Contains("\"acked\":true", StringComparison.Ordinal) == true,
            TimeSpan.FromSeconds(20), pollMs: 20), "the item never recorded its validator's ACK");
        Assert.Equal(1, gate.Started);
        await first.AbandonAsync(); // a crash: no stop, nothing removed

        var (second, loop) = await world.StartCoordinatorAsync("coordinator-r", "swarm-r", options);
        Assert.True(second.Epoch > first.Epoch);
        Assert.True(await EventuallyAsync(() => Task.FromResult(loop.State.ItemsAdopted == 1), TimeSpan.FromSeconds(20), pollMs: 20),
            "the restarted instance did not adopt the item");
        Assert.Equal(["item-r"], loop.State.AdoptedWorkIds);
        gate.Release();

        Assert.True(await EventuallyAsync(async () => (await second.Work.GetAsync("item-r"))?.Status == WorkStatus.Completed,
            TimeSpan.FromSeconds(20), pollMs: 20), "the adopted item was not completed");
        var item = (await second.Work.GetAsync("item-r"))!;
        Assert.Equal(second.Epoch, item.OwnerEpoch);
        Assert.Equal("pass", item.Data!.Value.GetProperty("outcome").GetString());
        Assert.True(item.Data.Value.GetProperty("adopted").GetBoolean());
        Assert.Equal(1, gate.Started); // the ACKed request was not sent again
        Assert.Single(RecoveryKit.Lines(h, "Work item complete workId=item-r"));
        Assert.Equal(0, await world.Queue.LengthAsync("swarm-r"));
    }

    /// <summary>A validation that passes once released, counting how many times it was asked.</summary>
    private sealed class GatedValidation : IValidation
    {
        private readonly TaskCompletionSource _released = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _started;

        public int Started => Volatile.Read(ref _started);

        public void Release() => _released.TrySetResult();

        public async Task<ValidationVerdict> ValidateAsync(ValidationRequest request, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _started);
            await _released.Task.WaitAsync(cancellationToken);
            return ValidationVerdict.Pass;
        }
    }
}
