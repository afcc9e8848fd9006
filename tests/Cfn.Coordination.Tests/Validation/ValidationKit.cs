using System.Text.Json;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Signals;
using Cfn.Coordination.Tests.Infrastructure;
using Cfn.Coordination.Validation;

namespace Cfn.Coordination.Tests.Validation;

/// <summary>
/// A world on database <see cref="DedicatedDatabase.ValidationTests"/> (never flushed: every key a test touches is its
/// own), with helpers to start validators and read verdicts.
/// </summary>
internal sealed class ValidationWorld : IAsyncDisposable
{
    private readonly List<Coordinator> _coordinators = [];
    private readonly List<(CancellationTokenSource Stop, Task Run)> _workers = [];

    private ValidationWorld(Harness h, RedisContext redis)
    {
        H = h;
        Redis = redis;
        Performance = new ValidatorPerformance(redis);
    }

    public Harness H { get; }

    public RedisContext Redis { get; }

    public ValidatorPerformance Performance { get; }

    /// <summary>A world whose parts run on <paramref name="time"/> (the system clock when null).</summary>
    public static ValidationWorld Create(RedisServer server, Harness h, TimeProvider? time = null) =>
        new(h, new RedisContext(server.Multiplexer, h.Options, database: DedicatedDatabase.ValidationTests, time: time, loggerFactory: h.LoggerFactory));

    public async Task<Coordinator> StartAsync(string prefix, string swarmId)
    {
        var coordinator = await Coordinator.StartAsync(Redis, H.Keys, TestIds.New(prefix), swarmId, H.Metrics, runHeartbeatLoop: false);
        _coordinators.Add(coordinator);
        return coordinator;
    }

    /// <summary>Starts a validator coordinator and its worker; the worker runs until the world is disposed.</summary>
    public async Task<ValidatorWorker> StartValidatorAsync(IValidation validation, ValidatorOptions? options = null)
    {
        var validator = await StartAsync("validator", "validators");
        var worker = new ValidatorWorker(validator, validation, options ?? new ValidatorOptions(), Performance);
        var stop = new CancellationTokenSource();
        _workers.Add((stop, Task.Run(() => worker.RunAsync(stop.Token))));
        return worker;
    }

    /// <summary>Sends a validation signal from <paramref name="coordinator"/> to <paramref name="validatorId"/>.</summary>
    public static async Task<SignalDeliveryResult> RequestAsync(Coordinator coordinator, string validatorId, string workId, object input, int iteration = 1) =>
        await coordinator.Signals.SendAsync(validatorId, SignalTypes.Validation, iteration, JsonSerializer.SerializeToElement(new
        {
            workId,
            input,
            requestedAt = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(),
        }));

    /// <summary>The next signal in <paramref name="coordinator"/>'s inbox (consumed), or null after <paramref name="timeout"/>.</summary>
    public static async Task<ReceivedSignal?> NextSignalAsync(Coordinator coordinator, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await foreach (var received in coordinator.Inbox.ReadAllAsync(cts.Token))
            {
                await coordinator.Inbox.CompleteAsync(received);
                return received;
            }
        }
        catch (OperationCanceledException)
        {
        }

        return null;
    }

    /// <summary>The next verdict sent to <paramref name="coordinator"/>; fails the test when none arrives in 15 s.</summary>
    public static async Task<ValidationCompletion> NextVerdictAsync(Coordinator coordinator)
    {
        var received = await NextSignalAsync(coordinator, TimeSpan.FromSeconds(15));
        Assert.NotNull(received);
        Assert.Equal(SignalTypes.Completion, received.Signal.Type);
        var verdict = received.Signal.Payload!.Value.Deserialize<ValidationCompletion>(Json.Options);
        Assert.NotNull(verdict);
        return verdict;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var (stop, run) in _workers)
        {
            await stop.CancelAsync();
            await run;
            stop.Dispose();
        }

        foreach (var coordinator in _coordinators)
        {
            await coordinator.DisposeAsync();
        }

        await Redis.DisposeAsync();
    }
}

/// <summary>A validation that counts its calls and answers as told.</summary>
internal sealed class CountingValidation(Func<ValidationRequest, ValidationVerdict>? decide = null) : IValidation
{
    private int _calls;

    public int Calls => Volatile.Read(ref _calls);

    public Task<ValidationVerdict> ValidateAsync(ValidationRequest request, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _calls);
        return Task.FromResult(decide?.Invoke(request) ?? ValidationVerdict.Pass);
    }
}
