using System.Collections.Concurrent;
using System.Diagnostics;
using Cfn.Coordination.Detection;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Tests.Infrastructure;
using Cfn.Coordination.Tests.Validation;
using Cfn.Coordination.Validation;
using Xunit.Abstractions;

namespace Cfn.Coordination.Tests.Faults;

/// <summary>
/// A validator in a process of its own (tests/Cfn.TestHost in the swarm <c>validators</c>) killed with SIGKILL: it wrote
/// only its own heartbeat key <c>validator:heartbeat:{id}</c> (so runbook #2's <c>blocking:heartbeat:*</c> counts the
/// coordinators alone), and is still declared dead, escalated, cleaned up and replaced by a validator that answers the
/// validation handed over to it.
/// </summary>
[Collection(FaultsCollection.Name)]
public sealed class ValidatorProcessFaultTests(ITestOutputHelper output)
{
    private static readonly RecoveryOptions FastDetection = new()
    {
        HeartbeatStaleThreshold = TimeSpan.FromSeconds(1),
        MonitorInterval = TimeSpan.FromMilliseconds(200),
        MaxWarnings = 3,
    };

    [Fact]
    public async Task Sigkill_Validator_OwnHeartbeatKeyOnly_DeclaredDeadCleanedAndReplacedByAValidatorThatAnswersTheHandedOverValidation()
    {
        await using var redis = await PrivateRedisServer.StartAsync();
        await using var inspect = await redis.ConnectAsync();
        var database = inspect.GetDatabase();
        // This process's coordinators beat as often as the test host's, well inside the 1 s stale threshold.
        await using var world = await FaultWorld.ConnectAsync(redis.Endpoint, o => o.HeartbeatInterval = TimeSpan.FromMilliseconds(100));
        // A free-form ID: nothing may infer the kind from it.
        var validatorId = TestIds.New("checker");
        await using var process = HostProcess.Start("validator", "--redis", redis.Endpoint, "--id", validatorId, "--swarm", Keys.ValidatorSwarm,
            "--secret", Harness.Secret, "--heartbeat-ms", "100", "--progress-ms", "50");
        await process.WaitForLineAsync(l => l == "ready", TimeSpan.FromSeconds(60), "ready");
        var coordinator = await world.StartAsync(TestIds.New("coord"), TestIds.New("swarm"), heartbeatLoop: true);
        // The live-validator list, as the validator's worker keeps it (the test host runs no worker).
        var validators = new ValidatorRegistry(world.Redis);
        await validators.RegisterAsync(validatorId);

        // Runbook #2 counts the one coordinator; the validator has its own key and is monitored through the registry.
        Assert.Equal(["blocking:heartbeat:" + coordinator.Id], await inspect.ScanAsync("blocking:heartbeat:*"));
        Assert.Equal(["validator:heartbeat:" + validatorId], await inspect.ScanAsync("validator:heartbeat:*"));
        Assert.NotNull(await database.SortedSetScoreAsync(Keys.Registry, validatorId));
        Assert.Equal(Keys.ValidatorSwarm, (string?)await database.HashGetAsync(Keys.Swarms, validatorId));

        // A validation the validator never gets to answer.
        await ValidationWorld.RequestAsync(coordinator, validatorId, "w-handed-over", new { n = 7 });

        var handler = world.NewHandler(FastDetection, "handler-validator-kill");
        var deaths = new ConcurrentQueue<CoordinatorDeath>();
        handler.Monitor.CoordinatorDied += deaths.Enqueue;
        handler.Start();
        // Alive (heartbeating to its own key), it is not declared dead: the time a silent one takes to die, and some. A
        // negative check on the Redis clock, which the monitor judges by: no event marks "not declared dead".
        await Task.Delay(FastDetection.DeathAfter + TimeSpan.FromMilliseconds(500));
        Assert.Empty(deaths);

        process.Kill();
        Assert.Equal(128 + 9, await process.WaitForExitAsync(TimeSpan.FromSeconds(10)));
        var killedAt = Stopwatch.GetTimestamp();
        await EventuallyAsync(() => !deaths.IsEmpty, "the SIGKILLed validator was never declared dead", FastDetection.DeathAfter + TimeSpan.FromSeconds(15), pollMs: 10);
        var death = Assert.Single(deaths);
        output.WriteLine($"validator declared dead {Stopwatch.GetElapsedTime(killedAt).TotalMilliseconds:0} ms after the SIGKILL (heartbeat age {death.StaleForMs} ms)");
        Assert.Equal(validatorId, death.CoordinatorId);
        Assert.Equal(Keys.ValidatorSwarm, death.SwarmId);
        var escalation = death.Escalation!;
        Assert.Equal(EscalationOutcome.Escalated, escalation.Outcome);
        Assert.Equal(1, escalation.SignalsHandedOver);
        var newId = escalation.NewCoordinatorId!;
        // The replacement is asked for in the validators' swarm, which is what makes a host start it as a validator.
        var spawn = await database.ReadJsonAsync("coordinator:spawn:" + newId);
        Assert.Equal(Keys.ValidatorSwarm, spawn.Str("swarmId"));
        Assert.Equal(validatorId, spawn.Str("replacesCoordinatorId"));

        // Every key of the dead validator is gone (runbook #85's check is empty), and coordinators no longer pick it.
        Assert.Empty(await inspect.ScanAsync($"blocking:*{validatorId}*"));
        Assert.Empty(await inspect.ScanAsync($"validator:heartbeat:{validatorId}"));
        Assert.Null(await database.SortedSetScoreAsync(Keys.Registry, validatorId));
        Assert.False(await database.HashExistsAsync(Keys.Swarms, validatorId));
        Assert.DoesNotContain(validatorId, await validators.LiveAsync(TimeSpan.FromHours(1)));

        // The replacement, started as a validator (what the coordinator host does for the swarm validators), answers the
        // validation that was handed over, and heartbeats to its own key too.
        var replacement = await world.StartAsync(newId, Keys.ValidatorSwarm, heartbeatLoop: true);
        var worker = new ValidatorWorker(replacement, new CountingValidation(), new ValidatorOptions(), new ValidatorPerformance(world.Redis), validators);
        using var stop = new CancellationTokenSource();
        var running = Task.Run(() => worker.RunAsync(stop.Token));
        try
        {
            var verdict = await ValidationWorld.NextVerdictAsync(coordinator);
            Assert.Equal("w-handed-over", verdict.WorkId);
            Assert.Equal(newId, verdict.ValidatorId);
            Assert.Equal(["blocking:heartbeat:" + coordinator.Id], await inspect.ScanAsync("blocking:heartbeat:*"));
            Assert.Equal(["validator:heartbeat:" + newId], await inspect.ScanAsync("validator:heartbeat:*"));
            Assert.Contains(newId, await validators.LiveAsync(TimeSpan.FromMinutes(1)));
        }
        finally
        {
            await stop.CancelAsync();
            await running;
        }
    }
}
