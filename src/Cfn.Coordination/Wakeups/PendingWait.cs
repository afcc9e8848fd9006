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
    private PeerFate[] _fates = [];
    private int _fatesVersion;

    private string[] _signalIds =
        otherSignalIds is null || (otherSignalIds.Count == 1 && otherSignalIds.First() == signalId)
            ? [signalId]
            : [.. new[] { signalId }.Concat(otherSignalIds).Distinct(StringComparer.Ordinal)];

    public string CoordinatorId { get; } = coordinatorId;

    public string SignalId { get; private set; } = signalId;

    /// <summary>
    /// Every signal ID whose ACK wakes this wait (<see cref="SignalId"/> first, no duplicates); grows when the wait
    /// follows a hand-over (<see cref="CoordinatorMailbox.AddSignal"/>).
    /// </summary>
    public IReadOnlyList<string> SignalIds => Volatile.Read(ref _signalIds);

    /// <summary>What is known about awaited peers that died (posted by <see cref="WakeHub"/>), one per peer.</summary>
    public IReadOnlyList<PeerFate> Fates => Volatile.Read(ref _fates);

    /// <summary>Changes each time <see cref="Fates"/> does, so the waiter re-applies them only then.</summary>
    public int FatesVersion => Volatile.Read(ref _fatesVersion);

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

    /// <summary>
    /// Replaces the awaited signal IDs by one (the caller, <see cref="CoordinatorMailbox.Retarget"/>, holds the mailbox's
    /// lock with the wait out of its index).
    /// </summary>
    internal void SetSignalIds(string id)
    {
        SignalId = id;
        Volatile.Write(ref _signalIds, [id]);
    }

    /// <summary>Adds a signal ID (the caller holds the mailbox's lock); false when it was there already.</summary>
    internal bool AddSignalId(string id)
    {
        var current = _signalIds;
        if (current.Contains(id, StringComparer.Ordinal))
        {
            return false;
        }

        Volatile.Write(ref _signalIds, [.. current, id]);
        return true;
    }

    /// <summary>Records what became of an awaited peer and wakes the wait; a fate it already knows changes nothing.</summary>
    public void Post(PeerFate fate)
    {
        while (true)
        {
            var current = Volatile.Read(ref _fates);
            var index = Array.FindIndex(current, f => f.PeerId == fate.PeerId);
            if (index >= 0 && current[index] == fate)
            {
                return;
            }

            PeerFate[] next = [.. current];
            if (index >= 0)
            {
                next[index] = fate;
            }
            else
            {
                next = [.. current, fate];
            }

            if (Interlocked.CompareExchange(ref _fates, next, current) == current)
            {
                break;
            }
        }

        Interlocked.Increment(ref _fatesVersion); // after the swap: a waiter that sees the new version sees the new fates
        Wake.Set();
    }

    public void Force()
    {
        Forced = true;
        Wake.Set();
    }

    public void Dispose() => Wake.Dispose();
}

/// <summary>One ACK a wait still needs: the coordinator that owes it and its key.</summary>
internal readonly record struct AwaitedAck(string AckerId, RedisKey Key);

/// <summary>What became of an awaited peer that died.</summary>
internal enum PeerFateKind
{
    /// <summary>Escalated: <see cref="PeerFate.ReplacementId"/> got its unconsumed signals; its ACK counts.</summary>
    HandedOver,

    /// <summary>Nothing will ACK in its place (auto-escalation off, or <see cref="PeerFate.ReplacementId"/> failed to start).</summary>
    Dead,
}

/// <summary>What became of <paramref name="PeerId"/>, with the reason a log line gives.</summary>
internal sealed record PeerFate(string PeerId, PeerFateKind Kind, string? ReplacementId, string Reason);

/// <summary>An ACK that came with its wake-up message; a list, newest first.</summary>
internal sealed record OfferedAck(string AckerId, string Json, OfferedAck? Next);
