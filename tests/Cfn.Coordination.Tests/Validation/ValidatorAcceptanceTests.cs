using System.Collections;
using System.Diagnostics;
using System.Text.Json;
using Cfn.Coordination.Acks;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Signals;
using Cfn.Coordination.Tests.Infrastructure;
using Cfn.Coordination.Validation;
using StackExchange.Redis;

namespace Cfn.Coordination.Tests.Validation;

/// <summary>
/// A validator ACKs a validation signal when it arrives, not when its turn to be validated comes (SPEC §2.2: the ACK
/// means "received"), holds what it accepted pending in its inbox until the verdict is sent, and accepts no more than
/// its concurrency plus its queue capacity. On database 45, flushed: the tests count inbox entries and ACK keys.
/// </summary>
[Collection(RedisCollection.Name)]
public sealed class ValidatorAcceptanceTests(RedisServer server)
{
    private const int Db = 45;

    [Fact]
    public async Task Worker_ThreeRequestsAtOnceSlowValidation_AllAckedWellUnderOneValidationAndAllAnswered()
    {
        await using var h = Harness.Create(server);
        await using var world = await DedicatedDatabase.CreateAsync(server, h, Db);
        var coordinator = await world.StartAsync(h, TestIds.New("coord"), "swarm-ack");
        var validator = await world.StartAsync(h, TestIds.New("validator"), "validators");
        var duration = TimeSpan.FromMilliseconds(2500);
        var validation = new SlowValidation(duration);
        var worker = new ValidatorWorker(validator, validation, new ValidatorOptions { Concurrency = 1, QueueCapacity = 8 },
            new ValidatorPerformance(world.Redis));
        using var stop = new CancellationTokenSource();
        var run = Task.Run(() => worker.RunAsync(stop.Token));
        try
        {
            // Three requests at once; each one's ACK is awaited from the moment it was sent, as its coordinator would.
            var sent = await Task.WhenAll(Enumerable.Range(0, 3).Select(i => RequestAsync(coordinator, validator.Id, $"w-{i}")));
            var started = Stopwatch.GetTimestamp();
            var acks = await Task.WhenAll(sent.Select(async s =>
            {
                var result = await coordinator.Waiter.WaitForAcksAsync([validator.Id], s.MessageId, TimeSpan.FromSeconds(15));
                return (result, Elapsed: Stopwatch.GetElapsedTime(started));
            }));

            // Validated one at a time (concurrency 1), the third ACK came after two validations before; now every ACK
            // comes well under one validation's duration.
            Assert.All(acks, a => Assert.Equal(AckWaitStatus.Completed, a.result.Status));
            var slowest = acks.Max(a => a.Elapsed);
            Assert.True(slowest < duration / 2, $"slowest ACK after {slowest.TotalMilliseconds:0} ms, one validation takes {duration.TotalMilliseconds:0} ms");
            // The queue depth: one validating, two accepted and waiting (counted just after the inbox ACKed the last),
            // all three delivered and still pending in the inbox.
            Assert.True(await EventuallyAsync(() => Task.FromResult(worker.Validating == 1 && worker.Queued == 2), TimeSpan.FromSeconds(2)),
                $"validating {worker.Validating}, queued {worker.Queued}");
            Assert.Equal(3, await PendingAsync(world.Database, validator.Id));

            var verdicts = new List<ValidationCompletion>();
            for (var i = 0; i < 3; i++)
            {
                verdicts.Add(await ValidationWorld.NextVerdictAsync(coordinator));
            }

            // Each verdict answers its own request, and every request was validated once.
            Assert.Equal(sent.Select(s => s.MessageId).Order(), verdicts.Select(v => v.RequestMessageId!).Order());
            Assert.Equal(["w-0", "w-1", "w-2"], verdicts.Select(v => v.WorkId).Order());
            Assert.All(verdicts, v => Assert.Equal(Verdicts.Pass, v.Verdict));
            Assert.Equal(3, validation.Calls);
            Assert.True(await EventuallyAsync(async () => await world.Database.StreamLengthAsync(Keys.Inbox(validator.Id)) == 0, TimeSpan.FromSeconds(5)),
                "answered signals are consumed from the inbox");
            Assert.Equal(0, worker.Queued);
        }
        finally
        {
            await stop.CancelAsync();
            await run;
        }
    }

    [Fact]
    public async Task Worker_MoreRequestsThanConcurrencyPlusQueue_AcceptsOnlyThatManyRestWaitUnackedUntilRoom()
    {
        await using var h = Harness.Create(server);
        await using var world = await DedicatedDatabase.CreateAsync(server, h, Db);
        var coordinator = await world.StartAsync(h, TestIds.New("coord"), "swarm-bound");
        var validator = await world.StartAsync(h, TestIds.New("validator"), "validators");
        var gate = new GatedValidation();
        // Bound: 1 validating + 2 queued = 3 held ACKed and unanswered.
        var options = ValidatorOptions.FromEnvironment(new Hashtable { ["VALIDATOR_CONCURRENCY"] = "1", ["VALIDATOR_QUEUE_CAPACITY"] = "2" });
        var worker = new ValidatorWorker(validator, gate, options, new ValidatorPerformance(world.Redis));
        using var stop = new CancellationTokenSource();
        var run = Task.Run(() => worker.RunAsync(stop.Token));
        try
        {
            var sent = new List<SignalDeliveryResult>();
            for (var i = 0; i < 5; i++)
            {
                sent.Add(await RequestAsync(coordinator, validator.Id, $"b-{i}"));
            }

            var first = await coordinator.Waiter.WaitForAcksAsync(sent.Take(3).Select(s => KeyValuePair.Create(validator.Id, s.MessageId)), TimeSpan.FromSeconds(10));
            Assert.Equal(AckWaitStatus.Completed, first.Status);
            // The other two stay un-ACKed while the room is full: a wait for them times out.
            var rest = await coordinator.Waiter.WaitForAcksAsync([validator.Id], sent[3].MessageId, TimeSpan.FromMilliseconds(800));
            Assert.Equal(AckWaitStatus.Timeout, rest.Status);
            Assert.False(await world.Database.KeyExistsAsync(Keys.Ack(validator.Id, sent[4].MessageId)));
            Assert.Equal(1, worker.Validating);
            Assert.Equal(2, worker.Queued);
            Assert.Equal(1, gate.Started);
            // Nothing accepted is consumed before its verdict: all five are still in the inbox.
            Assert.Equal(5, await world.Database.StreamLengthAsync(Keys.Inbox(validator.Id)));

            // One verdict frees one place: exactly one more signal is accepted (ACKed), and the bound holds again.
            gate.Release(1);
            var fourth = await coordinator.Waiter.WaitForAcksAsync([validator.Id], sent[3].MessageId, TimeSpan.FromSeconds(10));
            Assert.Equal(AckWaitStatus.Completed, fourth.Status);
            await ValidationWorld.NextVerdictAsync(coordinator);
            Assert.True(await EventuallyAsync(() => Task.FromResult(gate.Started == 2), TimeSpan.FromSeconds(10)), "the next queued validation starts");
            Assert.False(await world.Database.KeyExistsAsync(Keys.Ack(validator.Id, sent[4].MessageId)));
            Assert.Equal(4, await world.Database.StreamLengthAsync(Keys.Inbox(validator.Id)));

            gate.Release(4);
            var verdicts = new List<ValidationCompletion>();
            for (var i = 0; i < 4; i++)
            {
                verdicts.Add(await ValidationWorld.NextVerdictAsync(coordinator));
            }

            Assert.Equal(["b-1", "b-2", "b-3", "b-4"], verdicts.Select(v => v.WorkId).Order());
            Assert.True(await world.Database.KeyExistsAsync(Keys.Ack(validator.Id, sent[4].MessageId)));
            Assert.True(gate.MostAtOnce <= 1, $"validations ran {gate.MostAtOnce} at once with concurrency 1");
        }
        finally
        {
            gate.Release(100);
            await stop.CancelAsync();
            await run;
        }
    }

    [Fact]
    public async Task Worker_ConcurrencyTwo_ValidatesTwoAtOnceNeverMore()
    {
        await using var h = Harness.Create(server);
        await using var world = await DedicatedDatabase.CreateAsync(server, h, Db);
        var coordinator = await world.StartAsync(h, TestIds.New("coord"), "swarm-two");
        var validator = await world.StartAsync(h, TestIds.New("validator"), "validators");
        var gate = new GatedValidation();
        var options = ValidatorOptions.FromEnvironment(new Hashtable { ["VALIDATOR_CONCURRENCY"] = "2", ["VALIDATOR_QUEUE_CAPACITY"] = "4" });
        var worker = new ValidatorWorker(validator, gate, options, new ValidatorPerformance(world.Redis));
        using var stop = new CancellationTokenSource();
        var run = Task.Run(() => worker.RunAsync(stop.Token));
        try
        {
            for (var i = 0; i < 4; i++)
            {
                await RequestAsync(coordinator, validator.Id, $"c-{i}");
            }

            Assert.True(await EventuallyAsync(() => Task.FromResult(gate.Started == 2 && worker.Queued == 2), TimeSpan.FromSeconds(10)),
                $"two validations running and two queued (started {gate.Started}, queued {worker.Queued})");
            Assert.Equal(2, worker.Validating);
            gate.Release(4);
            for (var i = 0; i < 4; i++)
            {
                await ValidationWorld.NextVerdictAsync(coordinator);
            }

            Assert.Equal(2, gate.MostAtOnce);
        }
        finally
        {
            gate.Release(100);
            await stop.CancelAsync();
            await run;
        }
    }

    [Fact]
    public async Task Worker_StoppedWithAcceptedWork_AllOfItStaysPendingAndTheNextStartAnswersIt()
    {
        await using var h = Harness.Create(server);
        await using var world = await DedicatedDatabase.CreateAsync(server, h, Db);
        var coordinator = await world.StartAsync(h, TestIds.New("coord"), "swarm-stop");
        var validator = await world.StartAsync(h, TestIds.New("validator"), "validators");
        var gate = new GatedValidation();
        var worker = new ValidatorWorker(validator, gate, new ValidatorOptions { Concurrency = 1, QueueCapacity = 4 }, new ValidatorPerformance(world.Redis));
        using var stop = new CancellationTokenSource();
        var run = Task.Run(() => worker.RunAsync(stop.Token));
        var sent = new List<SignalDeliveryResult>();
        for (var i = 0; i < 3; i++)
        {
            sent.Add(await RequestAsync(coordinator, validator.Id, $"s-{i}"));
        }

        var acks = await coordinator.Waiter.WaitForAcksAsync(sent.Select(s => KeyValuePair.Create(validator.Id, s.MessageId)), TimeSpan.FromSeconds(10));
        Assert.Equal(AckWaitStatus.Completed, acks.Status);

        await stop.CancelAsync();
        await run;

        // Accepted and unanswered: none consumed, all three handed out again to the next reader of the inbox.
        Assert.Equal(3, await world.Database.StreamLengthAsync(Keys.Inbox(validator.Id)));
        var again = new ValidatorWorker(validator, new CountingValidation(), new ValidatorOptions(), new ValidatorPerformance(world.Redis));
        using var stop2 = new CancellationTokenSource();
        var run2 = Task.Run(() => again.RunAsync(stop2.Token));
        try
        {
            var verdicts = new List<ValidationCompletion>();
            for (var i = 0; i < 3; i++)
            {
                verdicts.Add(await ValidationWorld.NextVerdictAsync(coordinator));
            }

            Assert.Equal(["s-0", "s-1", "s-2"], verdicts.Select(v => v.WorkId).Order());
        }
        finally
        {
            await stop2.CancelAsync();
            await run2;
        }
    }

    [Theory]
    [InlineData("VALIDATOR_CONCURRENCY", "0", "VALIDATOR_CONCURRENCY must be a positive integer")]
    [InlineData("VALIDATOR_CONCURRENCY", "65", "VALIDATOR_CONCURRENCY must be from 1 to 64")]
    [InlineData("VALIDATOR_CONCURRENCY", "two", "VALIDATOR_CONCURRENCY must be a positive integer")]
    [InlineData("VALIDATOR_QUEUE_CAPACITY", "-1", "VALIDATOR_QUEUE_CAPACITY must be a whole number from 0")]
    [InlineData("VALIDATOR_QUEUE_CAPACITY", "10001", "VALIDATOR_QUEUE_CAPACITY must be from 0 to 10000")]
    public void FromEnvironment_BadConcurrencyOrQueueCapacity_RefusedNamingTheVariable(string name, string value, string message)
    {
        var error = Assert.Throws<System.ComponentModel.DataAnnotations.ValidationException>(
            () => ValidatorOptions.FromEnvironment(new Dictionary<string, string> { [name] = value }));
        Assert.StartsWith(message, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void FromEnvironment_ConcurrencyAndQueueCapacity_ReadWithTheirDefaults()
    {
        var defaults = ValidatorOptions.FromEnvironment(new Dictionary<string, string>());
        Assert.Equal(1, defaults.Concurrency);
        Assert.Equal(8, defaults.QueueCapacity);
        var set = ValidatorOptions.FromEnvironment(new Dictionary<string, string> { ["VALIDATOR_CONCURRENCY"] = "3", ["VALIDATOR_QUEUE_CAPACITY"] = "0" });
        Assert.Equal(3, set.Concurrency);
        Assert.Equal(0, set.QueueCapacity);
    }

    private static Task<SignalDeliveryResult> RequestAsync(Coordinator coordinator, string validatorId, string workId) =>
        ValidationWorld.RequestAsync(coordinator, validatorId, workId, new { workId, nonce = Guid.NewGuid() });

    /// <summary>Entries of the validator's inbox delivered to it and not consumed.</summary>
    private static async Task<long> PendingAsync(IDatabase database, string validatorId) =>
        (await database.StreamPendingAsync(Keys.Inbox(validatorId), Keys.InboxGroup)).PendingMessageCount;

    /// <summary>A validation that takes <paramref name="duration"/>.</summary>
    private sealed class SlowValidation(TimeSpan duration) : IValidation
    {
        private int _calls;

        public int Calls => Volatile.Read(ref _calls);

        public async Task<ValidationVerdict> ValidateAsync(ValidationRequest request, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _calls);
            await Task.Delay(duration, cancellationToken);
            return ValidationVerdict.Pass;
        }
    }

    /// <summary>A validation that passes once the test lets it through, counting how many ran at once.</summary>
    private sealed class GatedValidation : IValidation
    {
        private readonly SemaphoreSlim _through = new(0);
        private int _started;
        private int _running;
        private int _mostAtOnce;

        public int Started => Volatile.Read(ref _started);

        public int MostAtOnce => Volatile.Read(ref _mostAtOnce);

        public void Release(int count) => _through.Release(count);

        public async Task<ValidationVerdict> ValidateAsync(ValidationRequest request, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _started);
            var running = Interlocked.Increment(ref _running);
            int most;
            while (running > (most = Volatile.Read(ref _mostAtOnce)) && Interlocked.CompareExchange(ref _mostAtOnce, running, most) != most)
            {
            }

            try
            {
                await _through.WaitAsync(cancellationToken);
                return ValidationVerdict.Pass;
            }
            finally
            {
                Interlocked.Decrement(ref _running);
            }
        }
    }
}
