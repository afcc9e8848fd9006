using Cfn.Coordination;
using Cfn.Coordination.Acks;
using Cfn.Coordination.Metrics;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Signals;

namespace Cfn.Examples;

/// <summary>
/// The README's "Using the library" sample: a coordinator signals a validator and blocks until its ACK, while a timeout
/// handler watches both. The lines between the README markers are the README's code block, character for character
/// (a test compares them).
/// </summary>
public static class QuickStart
{
    /// <summary>Runs the sample against <paramref name="redisConfiguration"/>; returns the wait's result.</summary>
    public static async Task<AckWaitResult> RunAsync(string redisConfiguration, CancellationToken ct = default)
    {
        // README:begin
        await using var redis = await RedisContext.ConnectAsync(redisConfiguration, new CoordinationOptions());
        var keys = SigningKeys.FromEnvironment();                 // BLOCKING_COORDINATION_SECRET (≥ 32 chars)
        await using var parent = await Coordinator.StartAsync(redis, keys, "coordinator-1", "swarm-1");
        await using var validator = await Coordinator.StartAsync(redis, keys, "validator-1", "swarm-1");

        // the validator reads its durable inbox: each signal arrives verified and already ACKed
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var reading = Task.Run(async () =>
        {
            await foreach (var signal in validator.Inbox.ReadAllAsync(stop.Token))
            {
                Console.WriteLine($"{signal.Signal.ReceiverId} got {signal.Signal.Type} #{signal.Signal.Iteration} from {signal.Signal.SenderId}");
            }
        }, stop.Token);

        // the coordinator signals and blocks until the ACK (push wake-up; a fallback check covers a lost message)
        var sent = await parent.Signals.SendAsync("validator-1", SignalTypes.Validation, iteration: 3, idempotencyKey: "loop-3");
        var result = await parent.Waiter.WaitForAcksAsync(["validator-1"], sent.MessageId, TimeSpan.FromSeconds(30), ct);
        Console.WriteLine($"wait {result.StatusLabel} in {result.Duration.TotalMilliseconds:F1} ms");   // completed | timeout | …

        // the timeout handler (any number of replicas): dead coordinators, escalation, stuck waits, deadlocks, cleanup
        await using var handler = new TimeoutHandler(redis, keys, RecoveryOptions.FromEnvironment(), CoordinationMetrics.Default,
            new RecoveryMetrics(Prometheus.Metrics.DefaultRegistry), "timeout-handler-1");
        handler.Start();
        // README:end

        await stop.CancelAsync();
        try
        {
            await reading;
        }
        catch (OperationCanceledException)
        {
            // the reader ends with the token
        }

        return result;
    }
}
