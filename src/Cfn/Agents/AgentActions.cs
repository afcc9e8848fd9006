using System.Text.Json;
using Cfn.Coordination;
using Cfn.Coordination.Acks;
using Cfn.Coordination.Signals;

namespace Cfn.Agents;

/// <summary>What an agent action ended with: the JSON body to show and its outcome as an exit code (<see cref="AgentExit"/>).</summary>
internal sealed record AgentResult(object Body, int Exit);

/// <summary>
/// The agent's actions — send (and wait), wait, receive, reply — on a running instance, shared by the <c>cfn agent</c>
/// verbs and the HTTP agent sessions so both give the same answers (SPEC D21). Inputs are checked by <see cref="AgentInput"/>
/// before an action is called.
/// </summary>
internal static class AgentActions
{
    /// <summary>How results are written: web names, no null fields.</summary>
    public static readonly JsonSerializerOptions Output = new(JsonSerializerDefaults.Web)
    {
        DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull,
    };

    /// <summary>Sends one signed signal to each receiver; with <paramref name="wait"/>, blocks until every ACK.</summary>
    public static async Task<AgentResult> SendAsync(Coordinator agent, IReadOnlyList<string> receivers, string type, int iteration,
        JsonElement? payload, string? idempotencyKey, bool wait, TimeSpan? timeout, CancellationToken cancellationToken)
    {
        var sent = new List<SignalDeliveryResult>();
        foreach (var receiver in receivers)
        {
            sent.Add(await agent.Signals.SendAsync(receiver, type, iteration, payload, idempotencyKey).ConfigureAwait(false));
        }

        var messages = sent.Select(s => new SentMessage(s.ReceiverId, s.MessageId, s.IsDuplicate)).ToList();
        if (!wait)
        {
            return new AgentResult(new { status = "sent", messages }, AgentExit.Done);
        }

        var waited = await agent.Waiter.WaitForAcksAsync(
            sent.Select(s => new KeyValuePair<string, string>(s.ReceiverId, s.MessageId)), timeout, cancellationToken).ConfigureAwait(false);
        return Waited(waited, messages);
    }

    /// <summary>Blocks until every one of <paramref name="peers"/> has ACKed <paramref name="messageId"/>.</summary>
    public static async Task<AgentResult> WaitAsync(Coordinator agent, IReadOnlyList<string> peers, string messageId, TimeSpan? timeout,
        CancellationToken cancellationToken) =>
        Waited(await agent.Waiter.WaitForAcksAsync(peers, messageId, timeout, cancellationToken).ConfigureAwait(false), messages: null);

    /// <summary>
    /// The next signal of the agent's durable inbox, verified and ACKed, handed to <paramref name="deliver"/>; consumed only
    /// once <paramref name="deliver"/> returns, so a delivery that fails (the agent never got it) leaves it to the next
    /// receive. A timeout gives <c>{"status":"timeout"}</c> with <see cref="AgentExit.Timeout"/>.
    /// </summary>
    public static async Task<AgentResult> ReceiveAsync(Coordinator agent, TimeSpan? timeout, Func<AgentResult, Task> deliver,
        CancellationToken cancellationToken)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        if (timeout is { } limit)
        {
            stop.CancelAfter(limit);
        }

        try
        {
            await foreach (var received in agent.Inbox.ReadAllAsync(stop.Token).ConfigureAwait(false))
            {
                var result = new AgentResult(Describe(received), AgentExit.Done);
                await deliver(result).ConfigureAwait(false);
                await agent.Inbox.CompleteAsync(received).ConfigureAwait(false);
                return result;
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            // the timeout
        }

        if (agent.IsSuperseded)
        {
            throw new CoordinatorSupersededException(agent.Id, agent.Epoch, null);
        }

        cancellationToken.ThrowIfCancellationRequested();
        var timedOut = new AgentResult(new { status = "timeout" }, AgentExit.Timeout);
        await deliver(timedOut).ConfigureAwait(false);
        return timedOut;
    }

    /// <summary>Answers request <paramref name="requestId"/> of <paramref name="receiver"/> with a completion signal bound to it.</summary>
    public static async Task<AgentResult> ReplyAsync(Coordinator agent, string receiver, string requestId, int iteration, JsonElement answer)
    {
        var sent = await agent.Signals.ReplyAsync(receiver, requestId, iteration, answer).ConfigureAwait(false);
        return new AgentResult(new { status = "sent", to = receiver, messageId = sent.MessageId, inReplyTo = requestId, duplicate = sent.IsDuplicate },
            AgentExit.Done);
    }

    private static AgentResult Waited(AckWaitResult waited, IReadOnlyList<SentMessage>? messages)
    {
        var code = waited.Status switch
        {
            AckWaitStatus.Completed => AgentExit.Done,
            AckWaitStatus.Timeout => AgentExit.Timeout,
            AckWaitStatus.PeerDead => AgentExit.PeerDead,
            _ => AgentExit.Error,
        };
        return new AgentResult(new
        {
            status = waited.StatusLabel,
            messages,
            acked = waited.Acks.Keys.Order(StringComparer.Ordinal).ToList(),
            missing = waited.Missing,
            durationMs = (long)waited.Duration.TotalMilliseconds,
        }, code);
    }

    /// <summary>A received signal with K2's field names.</summary>
    private static object Describe(ReceivedSignal received)
    {
        var s = received.Signal;
        return new
        {
            messageId = s.MessageId,
            senderId = s.SenderId,
            receiverId = s.ReceiverId,
            type = s.Type,
            iteration = s.Iteration,
            timestamp = s.Timestamp,
            payload = s.Payload,
            handedOverFrom = s.HandedOverFrom,
            redelivered = received.IsRedelivery,
            senderGone = received.SenderGone,
        };
    }

    private sealed record SentMessage(string To, string MessageId, bool Duplicate);
}

/// <summary>The exit codes of every <c>cfn agent</c> verb (docs/agents.md); HTTP sessions map them to statuses.</summary>
internal static class AgentExit
{
    /// <summary>Done.</summary>
    public const int Done = 0;

    /// <summary>Any other error (Redis unreachable, an unexpected failure); the line on stderr says which.</summary>
    public const int Error = 1;

    /// <summary>Bad input: an invalid ID, option, payload or environment; nothing was written.</summary>
    public const int BadInput = 2;

    /// <summary>A wait timed out: the partial result is on stdout, naming the missing peers.</summary>
    public const int Timeout = 3;

    /// <summary>A peer died with no replacement coming (<c>peer_dead</c>).</summary>
    public const int PeerDead = 4;

    /// <summary>This agent instance was superseded (its ID restarted elsewhere): its writes are fenced.</summary>
    public const int Superseded = 5;
}
