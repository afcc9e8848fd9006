using System.Diagnostics;
using System.Text.Json;
using Cfn.Coordination.Detection;
using Cfn.Coordination.Loop;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Tests.Infrastructure;
using Cfn.Coordination.Validation;
using Cfn.Coordination.Work;

namespace Cfn.Coordination.Tests.Validation;

/// <summary>
/// A validator that dies holding accepted work (ACKed, not yet validated): its coordinators already have their ACKs
/// and wait for verdicts, so each item must still end — with a verdict from the validator that takes its place (the
/// accepted signals stayed pending in its inbox and are handed over) or, when none comes, as a failure at the item's
/// timeout, never a hang. Real coordinators with work loops, the real heartbeat monitor and escalation, on database 46
/// (flushed: the monitor judges everything in it).
/// </summary>
[Collection(RedisCollection.Name)]
public sealed class ValidatorDeathTests(RedisServer server)
{
    private const int Db = 46;

    /// <summary>Stale after 1.5 s (live parts beat every 100 ms), dead three warnings later.</summary>
    private static RecoveryOptions Detection(bool escalate) => new()
    {
        HeartbeatStaleThreshold = TimeSpan.FromMilliseconds(1500),
        MonitorInterval = TimeSpan.FromMilliseconds(100),
        MaxWarnings = 3,
        EnableAutoEscalation = escalate,
    };

    [Fact]
    public async Task Validator_KilledHoldingThreeAcceptedValidations_ReplacementGetsThemAndEveryItemEndsWithItsVerdict()
    {
        await using var h = Harness.Create(server, o => o.HeartbeatInterval = TimeSpan.FromMilliseconds(100));
        await using var world = await DeathWorld.CreateAsync(server, h);
        var (validator, worker, stopWorker) = await world.StartHangingValidatorAsync();
        var coordinators = await world.StartCoordinatorsAsync(3, TimeSpan.FromSeconds(60));
        var workIds = await world.EnqueueAsync(3);
        await DeathWorld.AllAcceptedAsync(worker, workIds.Count);

        // The crash: no more heartbeats, nothing removed; its validations never finish.
        var killedAt = Stopwatch.GetTimestamp();
        var death = await world.KillAsync(validator, Detection(escalate: true));
        var newId = death.Escalation!.NewCoordinatorId!;
        Assert.Equal(3, death.Escalation.SignalsHandedOver);

        // What a host does for the spawn request in the validators' swarm: a validator under the new ID.
        var replacement = await world.Db.StartAsync(h, newId, Keys.ValidatorSwarm, heartbeatLoop: true);
        var answers = new CountingValidation();
        world.Run(new ValidatorWorker(replacement, answers, new ValidatorOptions(), world.Performance, world.Registry).RunAsync);

        foreach (var workId in workIds)
        {
            var item = await DeathWorld.CompletedAsync(workId, coordinators, TimeSpan.FromSeconds(30));
            var data = item.Data!.Value;
            Assert.Equal("pass", data.GetProperty("outcome").GetString());
            var verdict = Assert.Single(data.GetProperty("verdicts").EnumerateArray().ToList());
            Assert.Equal(newId, verdict.GetProperty("validatorId").GetString());
            // The verdict names the request the dead validator ACKed (sender:receiver:type:…): the slot it answers.
            var request = verdict.GetProperty("requestMessageId").GetString()!.Split(':');
            Assert.Equal([validator.Id, "validation"], request[1..3]);
        }

        // Well inside the items' 60 s timeout: the replacement answered, nothing waited for the timeout.
        Assert.True(Stopwatch.GetElapsedTime(killedAt) < TimeSpan.FromSeconds(45));
        Assert.Equal(3, answers.Calls);
        Assert.Equal(3, coordinators.Sum(c => c.Loop.State.ItemsCompleted));
        Assert.Equal(0, coordinators.Sum(c => c.Loop.State.ItemsFailed));
        await stopWorker();
    }

    [Fact]
    public async Task Validator_KilledHoldingAcceptedValidationsNoReplacement_AnotherLiveValidatorAnswersEachBeforeTheTimeout()
    {
        await using var h = Harness.Create(server, o => o.HeartbeatInterval = TimeSpan.FromMilliseconds(100));
        await using var world = await DeathWorld.CreateAsync(server, h);
        var (validator, worker, stopWorker) = await world.StartHangingValidatorAsync();
        var coordinators = await world.StartCoordinatorsAsync(2, TimeSpan.FromSeconds(60));
        var workIds = await world.EnqueueAsync(2);
        await DeathWorld.AllAcceptedAsync(worker, workIds.Count);
        // Another validator comes up only now, so every request went to the one that dies.
        var other = await world.Db.StartAsync(h, TestIds.New("validator"), Keys.ValidatorSwarm, heartbeatLoop: true);
        var answers = new CountingValidation();
        world.Run(new ValidatorWorker(other, answers, new ValidatorOptions(), world.Performance, world.Registry).RunAsync);

        // Auto-escalation off: declared dead, nobody takes over its inbox; the death notice says so.
        var killedAt = Stopwatch.GetTimestamp();
        await world.KillAsync(validator, Detection(escalate: false));

        foreach (var workId in workIds)
        {
            var item = await DeathWorld.CompletedAsync(workId, coordinators, TimeSpan.FromSeconds(30));
            var data = item.Data!.Value;
            Assert.Equal("pass", data.GetProperty("outcome").GetString());
            var verdict = Assert.Single(data.GetProperty("verdicts").EnumerateArray().ToList());
            Assert.Equal(other.Id, verdict.GetProperty("validatorId").GetString());
        }

        Assert.True(Stopwatch.GetElapsedTime(killedAt) < TimeSpan.FromSeconds(45), "answered by the other validator, not ended by the 60 s timeout");
        Assert.Equal(2, answers.Calls);
        Assert.Equal(2, RecoveryKit.Lines(h, "Validators died after ACK with no replacement, asking others", validator.Id).Count);
        await stopWorker();
    }

    [Fact]
    public async Task Validator_StoppedGracefullyHoldingAcceptedValidations_AnotherLiveValidatorAnswersEachBeforeTheTimeout()
    {
        // A rolling update of the validator Deployment: the pod stops (SIGTERM) with requests it ACKed and never
        // answered, and no pod ever starts under its name again. It is not dead, so nothing is escalated.
        await using var h = Harness.Create(server, o => o.HeartbeatInterval = TimeSpan.FromMilliseconds(100));
        await using var world = await DeathWorld.CreateAsync(server, h);
        var (validator, worker, stopWorker) = await world.StartHangingValidatorAsync();
        var coordinators = await world.StartCoordinatorsAsync(2, TimeSpan.FromSeconds(60));
        var workIds = await world.EnqueueAsync(2);
        await DeathWorld.AllAcceptedAsync(worker, workIds.Count);
        var other = await world.Db.StartAsync(h, TestIds.New("validator"), Keys.ValidatorSwarm, heartbeatLoop: true);
        var answers = new CountingValidation();
        world.Run(new ValidatorWorker(other, answers, new ValidatorOptions(), world.Performance, world.Registry).RunAsync);

        var stoppedAt = Stopwatch.GetTimestamp();
        await stopWorker();
        await validator.StopAsync();
        Assert.Single(RecoveryKit.Lines(h, "Validator stopped with requests unanswered", validator.Id));

        foreach (var workId in workIds)
        {
            var item = await DeathWorld.CompletedAsync(workId, coordinators, TimeSpan.FromSeconds(30));
            var data = item.Data!.Value;
            Assert.Equal("pass", data.GetProperty("outcome").GetString());
            var verdict = Assert.Single(data.GetProperty("verdicts").EnumerateArray().ToList());
            Assert.Equal(other.Id, verdict.GetProperty("validatorId").GetString());
        }

        Assert.True(Stopwatch.GetElapsedTime(stoppedAt) < TimeSpan.FromSeconds(20), "answered by the other validator, not ended by the 60 s timeout");
        Assert.Equal(2, answers.Calls);
        Assert.Equal(0, coordinators.Sum(c => c.Loop.State.ItemsFailed));
        // Not a death: nothing was escalated for it.
        Assert.False(await world.Db.Database.KeyExistsAsync(Keys.Escalation(validator.Id)));
    }

    [Fact]
    public async Task Validator_KilledHoldingAcceptedValidationsNoReplacement_EveryItemEndsFailedAtItsTimeoutNamingIt()
    {
        await using var h = Harness.Create(server, o => o.HeartbeatInterval = TimeSpan.FromMilliseconds(100));
        await using var world = await DeathWorld.CreateAsync(server, h);
        var (validator, worker, stopWorker) = await world.StartHangingValidatorAsync();
        var timeout = TimeSpan.FromSeconds(8);
        var coordinators = await world.StartCoordinatorsAsync(2, timeout);
        var workIds = await world.EnqueueAsync(2);
        await DeathWorld.AllAcceptedAsync(worker, workIds.Count);

        // Auto-escalation off: declared dead, nobody takes over its inbox, and no other validator is live to ask.
        await world.KillAsync(validator, Detection(escalate: false));

        foreach (var workId in workIds)
        {
            var item = await DeathWorld.CompletedAsync(workId, coordinators, timeout + TimeSpan.FromSeconds(20));
            var data = item.Data!.Value;
            Assert.Equal("timeout", data.GetProperty("outcome").GetString());
            Assert.Equal([validator.Id], data.GetProperty("missing").EnumerateArray().Select(m => m.GetString()!).ToArray());
            Assert.Equal(0, data.GetProperty("verdicts").GetArrayLength());
        }

        Assert.Equal(2, coordinators.Sum(c => c.Loop.State.ItemsFailed));
        Assert.Equal(2, RecoveryKit.Lines(h, "Validators died after ACK with no replacement and none other live", validator.Id).Count);
        await stopWorker();
    }

    /// <summary>One test's swarm on database 46: coordinators with loops, validators, the recovery side.</summary>
    private sealed class DeathWorld : IAsyncDisposable
    {
        private readonly List<(CancellationTokenSource Stop, Task Run)> _running = [];

        private DeathWorld(Harness h, DedicatedDatabase db)
        {
            H = h;
            Db = db;
            Queue = new WorkQueue(db.Redis, maxLength: 100, fallbackPoll: TimeSpan.FromSeconds(1));
            Registry = new ValidatorRegistry(db.Redis);
            Performance = new ValidatorPerformance(db.Redis);
        }

        public Harness H { get; }

        public DedicatedDatabase Db { get; }

        public WorkQueue Queue { get; }

        public ValidatorRegistry Registry { get; }

        public ValidatorPerformance Performance { get; }

        public string Swarm { get; } = TestIds.New("swarm");

        public static async Task<DeathWorld> CreateAsync(RedisServer server, Harness h) =>
            new(h, await DedicatedDatabase.CreateAsync(server, h, ValidatorDeathTests.Db));

        /// <summary>A live validator whose validations never finish (until the test stops its worker).</summary>
        public async Task<(Coordinator Validator, ValidatorWorker Worker, Func<Task> Stop)> StartHangingValidatorAsync()
        {
            var validator = await Db.StartAsync(H, TestIds.New("validator"), Keys.ValidatorSwarm, heartbeatLoop: true);
            var worker = new ValidatorWorker(validator, new HangingValidation(), new ValidatorOptions { Concurrency = 1, QueueCapacity = 4 },
                Performance, Registry);
            var (stop, run) = Run(worker.RunAsync);
            return (validator, worker, async () =>
            {
                await stop.CancelAsync();
                await run;
            });
        }

        public async Task<List<(Coordinator Coordinator, CoordinatorLoop Loop)>> StartCoordinatorsAsync(int count, TimeSpan timeout)
        {
            var options = new LoopOptions { ValidatorsPerItem = 1, ValidationTimeout = timeout };
            var started = new List<(Coordinator, CoordinatorLoop)>();
            for (var i = 0; i < count; i++)
            {
                var coordinator = await Db.StartAsync(H, TestIds.New("coord"), Swarm, heartbeatLoop: true);
                var loop = new CoordinatorLoop(coordinator, Queue, options, Registry, Performance);
                Run(loop.RunAsync);
                started.Add((coordinator, loop));
            }

            return started;
        }

        public async Task<List<string>> EnqueueAsync(int count)
        {
            var workIds = new List<string>();
            for (var i = 0; i < count; i++)
            {
                workIds.Add((await Queue.EnqueueAsync(Swarm, $"item-{i}", JsonSerializer.SerializeToElement(new { i }))).WorkId);
            }

            return workIds;
        }

        /// <summary>Waits until the validator holds <paramref name="count"/> accepted requests: one validating, the rest queued.</summary>
        public static Task AllAcceptedAsync(ValidatorWorker worker, int count) => EventuallyAsync(
            () => worker.Validating == 1 && worker.Queued == count - 1,
            $"the validator never held {count} accepted requests (validating {worker.Validating}, queued {worker.Queued})", TimeSpan.FromSeconds(20));

        /// <summary>Crashes <paramref name="validator"/> and runs the real monitor (and escalation) until it is declared dead.</summary>
        public async Task<CoordinatorDeath> KillAsync(Coordinator validator, RecoveryOptions options)
        {
            await validator.AbandonAsync();
            var recovery = new RecoveryMetrics(H.Registry);
            var escalation = new EscalationService(Db.Redis, H.Keys, options, recovery, new CoordinatorCleanup(Db.Redis, options, recovery));
            await using var monitor = new HeartbeatMonitor(Db.Redis, options, H.Metrics, recovery,
                options.EnableAutoEscalation ? escalation : null, TestIds.New("monitor"));
            CoordinatorDeath? death = null;
            await EventuallyAsync(async () => (death = (await monitor.RunOnceAsync()).Deaths.FirstOrDefault(d => d.CoordinatorId == validator.Id)) is not null,
                $"{validator.Id} was not declared dead", TimeSpan.FromSeconds(30));
            Assert.Equal(Keys.ValidatorSwarm, death!.SwarmId);
            if (options.EnableAutoEscalation)
            {
                Assert.Equal(EscalationOutcome.Escalated, death.Escalation?.Outcome);
            }

            return death;
        }

        /// <summary>The completed K10 item of <paramref name="workId"/>; fails the test when it is not completed in time.</summary>
        public static async Task<WorkItem> CompletedAsync(string workId, List<(Coordinator Coordinator, CoordinatorLoop Loop)> coordinators, TimeSpan timeout)
        {
            WorkItem? found = null;
            await EventuallyAsync(async () =>
            {
                foreach (var (coordinator, _) in coordinators)
                {
                    if (await coordinator.Work.GetAsync(workId) is { Status: WorkStatus.Completed } item)
                    {
                        found = item;
                        return true;
                    }
                }

                return false;
            }, $"{workId} never completed", timeout, pollMs: 100);
            return found!;
        }

        public (CancellationTokenSource Stop, Task Run) Run(Func<CancellationToken, Task> body)
        {
            var stop = new CancellationTokenSource();
            var entry = (stop, Task.Run(() => body(stop.Token)));
            _running.Add(entry);
            return entry;
        }

        public async ValueTask DisposeAsync()
        {
            foreach (var (stop, _) in _running)
            {
                await stop.CancelAsync();
            }

            foreach (var (stop, run) in _running)
            {
                await run;
                stop.Dispose();
            }

            await Queue.DisposeAsync();
            await Db.DisposeAsync();
        }
    }

    /// <summary>A validation that never finishes on its own: the validator dies before it does.</summary>
    private sealed class HangingValidation : IValidation
    {
        public async Task<ValidationVerdict> ValidateAsync(ValidationRequest request, CancellationToken cancellationToken)
        {
            await Task.Delay(Timeout.InfiniteTimeSpan, cancellationToken);
            return ValidationVerdict.Pass;
        }
    }
}
