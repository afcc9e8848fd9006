using System.Collections.Concurrent;

namespace Cfn.Coordination.Wakeups;

/// <summary>
/// Where the wake-ups for one coordinator of this process land: new signals for its inbox, ACKs for its waits and
/// force-unblocks. Filled by <see cref="WakeHub"/> from the coordinator's pub/sub channel.
/// </summary>
internal sealed class CoordinatorMailbox(string coordinatorId) : IDisposable
{
    // Signal ID → the waits it wakes (nearly always one). Arrays are replaced, never changed, under _gate, so a
    // wake-up reads them without a lock; a dictionary per signal would cost about 1 KiB per wait (benchmark row f: 10,000 concurrent waits).
    private readonly ConcurrentDictionary<string, PendingWait[]> _waitsBySignal = new(StringComparer.Ordinal);
    private readonly Lock _gate = new();

    public string CoordinatorId { get; } = coordinatorId;

    /// <summary>Set when a signal may have arrived in the inbox.</summary>
    public AsyncSignal InboxWake { get; } = new();

    public IEnumerable<PendingWait> Waits => _waitsBySignal.Values.SelectMany(w => w).Distinct();

    public void Add(PendingWait wait)
    {
        lock (_gate)
        {
            foreach (var signalId in wait.SignalIds)
            {
                _waitsBySignal[signalId] = _waitsBySignal.TryGetValue(signalId, out var waits) ? [.. waits, wait] : [wait];
            }
        }
    }

    /// <summary>
    /// Adds <paramref name="signalId"/> to the signals that wake <paramref name="wait"/> (already added): the signal
    /// handed over to a dead peer's replacement keeps its sender, so the replacement's ACK wake-up lands here (D18).
    /// </summary>
    public void AddSignal(PendingWait wait, string signalId)
    {
        lock (_gate)
        {
            if (wait.AddSignalId(signalId))
            {
                _waitsBySignal[signalId] = _waitsBySignal.TryGetValue(signalId, out var waits) ? [.. waits, wait] : [wait];
            }
        }
    }

    public void Remove(PendingWait wait)
    {
        lock (_gate)
        {
            foreach (var signalId in wait.SignalIds)
            {
                if (!_waitsBySignal.TryGetValue(signalId, out var waits))
                {
                    continue;
                }

                var rest = Array.FindAll(waits, w => !ReferenceEquals(w, wait));
                if (rest.Length == 0)
                {
                    _waitsBySignal.TryRemove(signalId, out _);
                }
                else
                {
                    _waitsBySignal[signalId] = rest;
                }
            }
        }
    }

    /// <summary>
    /// A wait whose signal was redirected to a replacement now awaits <paramref name="signalId"/> only; it is indexed
    /// under it before the redirected signal is written, so no ACK wake-up can come first.
    /// </summary>
    public void Retarget(PendingWait wait, string signalId)
    {
        lock (_gate)
        {
            Remove(wait);
            wait.SetSignalIds(signalId);
            Add(wait);
        }
    }

    /// <summary>Handles a channel message other than an ACK: <c>signal {messageId}</c> or <c>unblock</c>.</summary>
    public void Deliver(string message)
    {
        if (message.StartsWith("signal ", StringComparison.Ordinal))
        {
            InboxWake.Set();
        }
        else if (message == "unblock")
        {
            ForceUnblockAll();
        }
    }

    /// <summary>
    /// Handles <c>ack {signalId} {ackerId}[ {ack JSON}]</c> (parsed by <see cref="WakeMessage"/>): wakes the waits for
    /// that signal; an ACK that came with its JSON is handed to them, to be verified without reading Redis.
    /// </summary>
    public void DeliverAck(string signalId, string ackerId, string? json)
    {
        if (!_waitsBySignal.TryGetValue(signalId, out var waits))
        {
            return;
        }

        foreach (var wait in waits)
        {
            if (json is not null)
            {
                wait.Offer(ackerId, json);
            }

            wait.Wake.Set();
        }
    }

    /// <summary>Ends every wait of this coordinator with status <c>forced</c>; returns how many there were.</summary>
    public int ForceUnblockAll()
    {
        var count = 0;
        foreach (var wait in Waits)
        {
            wait.Force();
            count++;
        }

        return count;
    }

    /// <summary>After a reconnect a wake-up may have been lost: everyone looks again.</summary>
    public void WakeAll()
    {
        InboxWake.Set();
        foreach (var wait in Waits)
        {
            wait.Wake.Set();
        }
    }

    public void Dispose() => InboxWake.Dispose();
}
