using StackExchange.Redis;

namespace Cfn.Coordination.Wakeups;

/// <summary>
/// One running ACK wait, as the wake-up machinery sees it. It usually awaits one signal ID; a wait for several
/// receivers' own signals (each ACKs its own message ID) is woken by an ACK of any of <see cref="SignalIds"/>.
/// </summary>
internal sealed class PendingWait(string coordinatorId, string signalId, IReadOnlyCollection<string>? otherSignalIds = null) : IDisposable
{
    private AwaitedAck[] _missing = [];
    private OfferedAck? _offered;

    public string CoordinatorId { get; } = coordinatorId;

    public string SignalId { get; private set; } = signalId;

    /// <summary>
    /// Every signal ID whose ACK wakes this wait (<see cref="SignalId"/> first, no duplicates). Changed only through
    /// <see cref="CoordinatorMailbox.Retarget"/>, which re-indexes the wait.
    /// </summary>
    public IReadOnlyList<string> SignalIds { get; private set; } =
        otherSignalIds is null ? [signalId] : [.. new[] { signalId }.Concat(otherSignalIds).Distinct(StringComparer.Ordinal)];

    /// <summary>Replaces the awaited signal IDs (called by the mailbox while the wait is out of its index).</summary>
    internal void SetSignalIds(string signalId)
    {
        SignalId = signalId;
        SignalIds = [signalId];
    }

    public AsyncSignal Wake { get; } = new();

    /// <summary>Set by a force-unblock; the wait then ends with status <c>forced</c>.</summary>
    public bool Forced { get; private set; }

    /// <summary>The ACKs not yet verified (who owes each and its key); read by the fallback check.</summary>
    public AwaitedAck[] Missing
    {
        get => Volatile.Read(ref _missing);
        set => Volatile.Write(ref _missing, value);
    }

    /// <summary>Hands over an ACK that arrived with its wake-up (not yet verified); the waiter takes it after waking.</summary>
    public void Offer(string ackerId, string json)
    {
        var node = new OfferedAck(ackerId, json, null);
        OfferedAck? head;
        do
        {
            head = Volatile.Read(ref _offered);
            node = node with { Next = head };
        }
        while (Interlocked.CompareExchange(ref _offered, node, head) != head);
    }

    /// <summary>Takes every ACK offered since the last call (newest first), or null when none was.</summary>
    public OfferedAck? TakeOffered() => Interlocked.Exchange(ref _offered, null);

    public void Force()
    {
        Forced = true;
        Wake.Set();
    }

    public void Dispose() => Wake.Dispose();
}

/// <summary>One ACK a wait still needs: the coordinator that owes it and its key.</summary>
internal readonly record struct AwaitedAck(string AckerId, RedisKey Key);

/// <summary>An ACK that came with its wake-up message; a list, newest first.</summary>
internal sealed record OfferedAck(string AckerId, string Json, OfferedAck? Next);
