using System.Text.Json;
using Cfn.Coordination.Acks;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Signals;
using Cfn.Coordination.Tests.Infrastructure;
using Cfn.Coordination.Validation;
using StackExchange.Redis;

namespace Cfn.Coordination.Tests.Validation;

[Collection(RedisCollection.Name)]
public sealed class ValidatorWorkerTests(RedisServer server)
{
    private static ValidatorOptions Instant(double failureRate, bool cache = false) => new()
    {
        DurationMedian = TimeSpan.FromMilliseconds(1),
        DurationP95 = TimeSpan.FromMilliseconds(1),
        FailureRate = failureRate,
        EnableCache = cache,
    };

    [Fact]
    public async Task Worker_RequesterGoneBeforeTheValidation_SkippedNoVerdictNoKeysForIt()
    {
        await using var h = Harness.Create(server);
        await using var world = ValidationWorld.Create(server, h);
        var coordinator = await world.StartAsync("coord", "swarm-v");
        var validatorId = TestIds.New("validator");
        await ValidationWorld.RequestAsync(coordinator, validatorId, TestIds.New("work"), new { n = 1 });
        await coordinator.StopAsync(); // stopped (or died and was cleaned up) before the validator got to it

        var validation = new CountingValidation();
        await using var validator = await Coordinator.StartAsync(world.Redis, h.Keys, validatorId, "validators", h.Metrics, runHeartbeatLoop: false);
        var worker = new ValidatorWorker(validator, validation, Instant(0), world.Performance);
        using var stop = new CancellationTokenSource();
        var running = Task.Run(() => worker.RunAsync(stop.Token));
        Assert.True(await EventuallyAsync(() => Task.FromResult(RecoveryKit.Lines(h, "Validation skipped: requester gone", coordinator.Id).Count == 1),
            TimeSpan.FromSeconds(15)));
        await stop.CancelAsync();
        await running;

        Assert.Equal(0, validation.Calls);
        Assert.Equal(0, worker.VerdictsSent);
        // No verdict recreated the gone coordinator's inbox or K2 view.
        Assert.False(await world.Redis.Database.KeyExistsAsync(Keys.Inbox(coordinator.Id)));
        Assert.False(await world.Redis.Database.KeyExistsAsync(Keys.Signal(coordinator.Id)));
    }

    [Fact]
    public async Task Worker_ValidationSignal_AckedThenAnsweredWithVerdictAndDurationRecorded()
    {
        await using var h = Harness.Create(server);
        await using var world = ValidationWorld.Create(server, h);
        var coordinator = await world.StartAsync("coord", "swarm-v");
        var worker = await world.StartValidatorAsync(new CountingValidation());
        var workId = TestIds.New("work");

        var sent = await ValidationWorld.RequestAsync(coordinator, worker.ValidatorId, workId, new { n = Guid.NewGuid() });
        var acks = await coordinator.Waiter.WaitForAcksAsync([worker.ValidatorId], sent.MessageId, TimeSpan.FromSeconds(15));
        var verdict = await ValidationWorld.NextVerdictAsync(coordinator);

        Assert.Equal(AckWaitStatus.Completed, acks.Status);
        Assert.Equal(workId, verdict.WorkId);
        Assert.Equal(worker.ValidatorId, verdict.ValidatorId);
        Assert.Equal(Verdicts.Pass, verdict.Verdict);
        Assert.False(verdict.Cached);
        Assert.True(verdict.DurationMs >= 0);
        var stats = (await world.Performance.ReadAsync()).Validators.Single(v => v.ValidatorId == worker.ValidatorId);
        Assert.Equal(1, stats.Count);
        Assert.Equal(0, stats.Timeouts);
        Assert.True(await world.Redis.Database.SortedSetScoreAsync(Keys.Validators, worker.ValidatorId) is not null);
    }

    [Theory]
    [InlineData(1.0, Verdicts.Fail)]
    [InlineData(0.0, Verdicts.Pass)]
    public async Task Worker_BuiltInFailureRate_GivesThatVerdict(double failureRate, string expected)
    {
        await using var h = Harness.Create(server);
        await using var world = ValidationWorld.Create(server, h);
        var coordinator = await world.StartAsync("coord", "swarm-v");
        var options = Instant(failureRate);
        var worker = await world.StartValidatorAsync(new BuiltInValidation(options), options);

        for (var i = 0; i < 3; i++)
        {
            await ValidationWorld.RequestAsync(coordinator, worker.ValidatorId, TestIds.New("work"), new { i, n = Guid.NewGuid() });
            var verdict = await ValidationWorld.NextVerdictAsync(coordinator);
            Assert.Equal(expected, verdict.Verdict);
            Assert.Equal(failureRate > 0, verdict.Reason is not null);
        }
    }

    [Fact]
    public async Task Worker_CacheOn_IdenticalInputValidatedOnceDifferentInputAgain()
    {
        await using var h = Harness.Create(server);
        await using var world = ValidationWorld.Create(server, h);
        var coordinator = await world.StartAsync("coord", "swarm-v");
        var validation = new CountingValidation(_ => ValidationVerdict.Fail("too short"));
        var worker = await world.StartValidatorAsync(validation, Instant(0, cache: true));
        var unique = Guid.NewGuid().ToString("N");

        await ValidationWorld.RequestAsync(coordinator, worker.ValidatorId, "w1", JsonDocument.Parse($$"""{"a":1,"b":"{{unique}}"}""").RootElement);
        var first = await ValidationWorld.NextVerdictAsync(coordinator);
        // Same input, other member order and spacing: the same canonical input.
        await ValidationWorld.RequestAsync(coordinator, worker.ValidatorId, "w2", JsonDocument.Parse($$"""{ "b" : "{{unique}}", "a" : 1 }""").RootElement);
        var second = await ValidationWorld.NextVerdictAsync(coordinator);
        await ValidationWorld.RequestAsync(coordinator, worker.ValidatorId, "w3", JsonDocument.Parse($$"""{"a":2,"b":"{{unique}}"}""").RootElement);
        var third = await ValidationWorld.NextVerdictAsync(coordinator);

        Assert.Equal(2, validation.Calls);
        Assert.Equal(1, worker.CacheHits);
        Assert.False(first.Cached);
        Assert.True(second.Cached);
        Assert.Equal(Verdicts.Fail, second.Verdict);
        Assert.Equal("too short", second.Reason);
        Assert.Equal("w2", second.WorkId);
        Assert.False(third.Cached);
        var key = Keys.ValidationCache(CanonicalJson.Sha256Hex(JsonDocument.Parse($$"""{"a":1,"b":"{{unique}}"}""").RootElement));
        var ttl = await world.Redis.Database.KeyTimeToLiveAsync(key);
        Assert.NotNull(ttl);
        Assert.InRange(ttl.Value.TotalSeconds, 3000, 3600);
    }

    [Fact]
    public async Task Worker_CacheOff_EveryIdenticalInputValidated()
    {
        await using var h = Harness.Create(server);
        await using var world = ValidationWorld.Create(server, h);
        var coordinator = await world.StartAsync("coord", "swarm-v");
        var validation = new CountingValidation();
        var worker = await world.StartValidatorAsync(validation, Instant(0, cache: false));
        var input = new { same = Guid.NewGuid() };

        for (var i = 0; i < 3; i++)
        {
            await ValidationWorld.RequestAsync(coordinator, worker.ValidatorId, $"w{i}", input);
            Assert.False((await ValidationWorld.NextVerdictAsync(coordinator)).Cached);
        }

        Assert.Equal(3, validation.Calls);
        Assert.Equal(0, worker.CacheHits);
        Assert.False(await world.Redis.Database.KeyExistsAsync(
            Keys.ValidationCache(CanonicalJson.Sha256Hex(JsonSerializer.SerializeToElement(input)))));
    }

    [Fact]
    public async Task Worker_MalformedPayloads_LoggedCountedSkippedAndNextOneAnswered()
    {
        await using var h = Harness.Create(server);
        await using var world = ValidationWorld.Create(server, h);
        var coordinator = await world.StartAsync("coord", "swarm-v");
        var validation = new CountingValidation();
        var worker = await world.StartValidatorAsync(validation);

        await coordinator.Signals.SendAsync(worker.ValidatorId, SignalTypes.Validation, 1, JsonSerializer.SerializeToElement(new { foo = 1 }));
        await coordinator.Signals.SendAsync(worker.ValidatorId, SignalTypes.Validation, 1,
            JsonSerializer.SerializeToElement(new { workId = "bad id!", input = 1, requestedAt = 1 }));
        await coordinator.Signals.SendAsync(worker.ValidatorId, SignalTypes.Validation, 1, JsonSerializer.SerializeToElement("just a string"));
        await ValidationWorld.RequestAsync(coordinator, worker.ValidatorId, "good", new { ok = true });
        var verdict = await ValidationWorld.NextVerdictAsync(coordinator);

        Assert.Equal("good", verdict.WorkId);
        Assert.Equal(3, worker.Malformed);
        Assert.Equal(1, validation.Calls);
        Assert.Equal(3, h.Metrics.SignalsIgnored.WithLabels(worker.ValidatorId, "malformed_payload").Value);
        Assert.Equal(3, h.Messages.Count(m => m.Contains("Malformed validation signal skipped", StringComparison.Ordinal)));
        Assert.Null(await ValidationWorld.NextSignalAsync(coordinator, TimeSpan.FromMilliseconds(300)));
    }

    [Fact]
    public async Task Worker_ValidationThrows_FailVerdictNamingIt()
    {
        await using var h = Harness.Create(server);
        await using var world = ValidationWorld.Create(server, h);
        var coordinator = await world.StartAsync("coord", "swarm-v");
        var worker = await world.StartValidatorAsync(new CountingValidation(_ => throw new InvalidOperationException("plug-in broke")));

        await ValidationWorld.RequestAsync(coordinator, worker.ValidatorId, "w", new { x = 1 });
        var verdict = await ValidationWorld.NextVerdictAsync(coordinator);

        Assert.Equal(Verdicts.Fail, verdict.Verdict);
        Assert.Contains("plug-in broke", verdict.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Worker_RedeliveredValidation_ValidatedAgainButVerdictDeliveredOnce()
    {
        await using var h = Harness.Create(server);
        await using var world = ValidationWorld.Create(server, h);
        var coordinator = await world.StartAsync("coord", "swarm-v");
        var validator = await world.StartAsync("validator", "validators");
        var sent = await ValidationWorld.RequestAsync(coordinator, validator.Id, "w-redo", new { x = Guid.NewGuid() });
        // The entry as it sits in the inbox: re-adding it later is exactly what a redelivery after a crash hands out.
        var entry = (await world.Redis.Database.StreamRangeAsync(Keys.Inbox(validator.Id))).Single();
        var validation = new CountingValidation();
        var worker = new ValidatorWorker(validator, validation, new ValidatorOptions(), world.Performance);
        using var stop = new CancellationTokenSource();
        var run = Task.Run(() => worker.RunAsync(stop.Token));
        try
        {
            var first = await ValidationWorld.NextVerdictAsync(coordinator);
            Assert.Equal("w-redo", first.WorkId);
            await world.Redis.Database.StreamAddAsync(Keys.Inbox(validator.Id), entry.Values);
            await world.Redis.Database.PublishAsync(Keys.Events(validator.Id), "signal again"); // as the send script does
            Assert.True(await EventuallyAsync(() => Task.FromResult(worker.VerdictsSent == 2), TimeSpan.FromSeconds(10)));

            Assert.Equal(2, validation.Calls);
            Assert.Null(await ValidationWorld.NextSignalAsync(coordinator, TimeSpan.FromMilliseconds(500)));
            Assert.Contains(h.Messages, m => m.Contains("Duplicate signal detected, skipping", StringComparison.Ordinal) &&
                m.Contains(Cfn.Coordination.Signals.SignalSender.ReplyKey(sent.MessageId), StringComparison.Ordinal));
        }
        finally
        {
            await stop.CancelAsync();
            await run;
        }
    }

    [Fact]
    public async Task Worker_Stopped_LeavesRegistryAndAnUnfinishedValidationStaysPending()
    {
        await using var h = Harness.Create(server);
        await using var world = ValidationWorld.Create(server, h);
        var coordinator = await world.StartAsync("coord", "swarm-v");
        var validator = await world.StartAsync("validator", "validators");
        var blocked = new TaskCompletionSource();
        var worker = new ValidatorWorker(validator, new BlockingValidation(blocked), new ValidatorOptions(), world.Performance);
        using var stop = new CancellationTokenSource();
        var run = Task.Run(() => worker.RunAsync(stop.Token));
        await ValidationWorld.RequestAsync(coordinator, validator.Id, "w-crash", new { x = 1 });
        await blocked.Task.WaitAsync(TimeSpan.FromSeconds(10));

        await stop.CancelAsync();
        await run;

        Assert.Null(await world.Redis.Database.SortedSetScoreAsync(Keys.Validators, validator.Id));
        Assert.Equal(1, await world.Redis.Database.StreamLengthAsync(Keys.Inbox(validator.Id)));
        var again = new ValidatorWorker(validator, new CountingValidation(), new ValidatorOptions(), world.Performance);
        using var stop2 = new CancellationTokenSource();
        var run2 = Task.Run(() => again.RunAsync(stop2.Token));
        var verdict = await ValidationWorld.NextVerdictAsync(coordinator);
        await stop2.CancelAsync();
        await run2;
        Assert.Equal("w-crash", verdict.WorkId);
    }

    private sealed class BlockingValidation(TaskCompletionSource started) : IValidation
    {
        public async Task<ValidationVerdict> ValidateAsync(ValidationRequest request, CancellationToken cancellationToken)
        {
            started.TrySetResult();
            await Task.Delay(Timeout.InfiniteTimeSpan, cancellationToken);
            return ValidationVerdict.Pass;
        }
    }
}
