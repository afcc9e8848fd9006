using System.Collections.Concurrent;

namespace Cfn.Coordination.Wakeups;

/// <summary>
/// Where the wake-ups for one coordinator of this process land: new signals for its inbox, ACKs for its waits and
/// force-unblocks. Filled by <see cref="WakeHub"/> from the coordinator's pub/sub channel.
/// </summary>
internal sealed class CoordinatorMailbox(string coordinatorId) : IDisposable
{
    private readonly ConcurrentDictionary<string, ConcurrentDictionary<PendingWait, byte>> _waitsBySignal = new(StringComparer.Ordinal);

    public string CoordinatorId { get; } = coordinatorId;

    /// <summary>Set when a signal may have arrived in the inbox.</summary>
    public AsyncSignal InboxWake { get; } = new();

    public IEnumerable<PendingWait> Waits => _waitsBySignal.Values.SelectMany(w => w.Keys).Distinct();

    public void Add(PendingWait wait)
    {
        foreach (var signalId in wait.SignalIds)
        {
            _waitsBySignal.GetOrAdd(signalId, _ => new ConcurrentDictionary<PendingWait, byte>()).TryAdd(wait, 0);
        }
    }

    public void Remove(PendingWait wait)
    {
        foreach (var signalId in wait.SignalIds)
        {
            if (_waitsBySignal.TryGetValue(signalId, out var set))
            {
                set.TryRemove(wait, out _);
                if (set.IsEmpty)
                {
                    _waitsBySignal.TryRemove(KeyValuePair.Create(signalId, set));
                }
            }
        }
    }

    /// <summary>Handles one channel message: <c>signal {messageId}</c>, <c>ack {signalId} {ackerId}</c> or <c>unblock</c>.</summary>
    public void Deliver(string message)
    {
        var parts = message.Split(' ', 3);
        switch (parts[0])
        {
            case "signal":
                InboxWake.Set();
                break;
            case "ack" when parts.Length >= 2:
                if (_waitsBySignal.TryGetValue(parts[1], out var set))
                {
                    foreach (var wait in set.Keys)
                    {
                        wait.Wake.Set();
                    }
                }

                break;
            case "unblock":
                ForceUnblockAll();
                break;
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
