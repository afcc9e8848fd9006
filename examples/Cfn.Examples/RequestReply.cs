using System.Text.Json;
using Cfn.Coordination;
using Cfn.Coordination.Signals;

namespace Cfn.Examples;

/// <summary>
/// docs/agents.md's C# example: a validator answers a coordinator's request with a verdict bound to it. The lines
/// between the agents.md markers are that page's code block, character for character (a test compares them).
/// </summary>
public static class RequestReply
{
    /// <summary>Runs the example against <paramref name="redisConfiguration"/>; returns the verdict the coordinator received.</summary>
    public static async Task<string> RunAsync(string redisConfiguration, CancellationToken ct = default)
    {
        // agents.md:begin
        await using var redis = await RedisContext.ConnectAsync(redisConfiguration, new CoordinationOptions());
        var keys = SigningKeys.FromEnvironment();                 // BLOCKING_COORDINATION_SECRET, as every agent has it
        await using var validator = await Coordinator.StartAsync(redis, keys, "val-cs", Coordinator.ValidatorSwarmId);
        await using var coordinator = await Coordinator.StartAsync(redis, keys, "coordinator-cs", "swarm-cs");

        // The validator: each request arrives verified and ACKed; it answers with a verdict bound to the request.
        var answering = Task.Run(async () =>
        {
            await foreach (var request in validator.Inbox.ReadAllAsync(ct))
            {
                var n = request.Signal.Payload?.GetProperty("n").GetInt32() ?? 0;
                var verdict = JsonSerializer.SerializeToElement(new { verdict = n % 2 == 0 ? "pass" : "fail", inReplyTo = request.Signal.MessageId });
                await validator.Inbox.CompleteAsync(request);
                await validator.Signals.ReplyAsync(request.Signal.SenderId, request.Signal.MessageId, 1, verdict);
                return;
            }
        }, ct);

        // The coordinator: send, block until the ACK, then take the verdict from its own inbox.
        var sent = await coordinator.Signals.SendAsync("val-cs", SignalTypes.Validation, 1, JsonSerializer.SerializeToElement(new { n = 4 }));
        var acked = await coordinator.Waiter.WaitForAcksAsync(["val-cs"], sent.MessageId, TimeSpan.FromSeconds(30), ct);
        await foreach (var reply in coordinator.Inbox.ReadAllAsync(ct))
        {
            await coordinator.Inbox.CompleteAsync(reply);
            Console.WriteLine($"{acked.StatusLabel}; {reply.Signal.SenderId}: {reply.Signal.Payload?.GetProperty("verdict")}");
            await answering;
            return reply.Signal.Payload?.GetProperty("verdict").GetString() ?? "";
        }
        // agents.md:end

        throw new OperationCanceledException(ct);
    }
}
