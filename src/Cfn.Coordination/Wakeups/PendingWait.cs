using StackExchange.Redis;

namespace Cfn.Coordination.Wakeups;

/// <summary>
/// One running ACK wait, as the wake-up machinery sees it. It usually awaits one signal ID; a wait for several
/// receivers' own signals (each ACKs its own message ID) is woken by an ACK of any of <see cref="SignalIds"/>.
/// </summary>
internal sealed class PendingWait(string coordinatorId, string signalId, IReadOnlyCollection<string>? otherSignalIds = null) : IDisposable
{
    private RedisKey[] _missing = [];

    public string CoordinatorId { get; } = coordinatorId;

    public string SignalId { get; } = signalId;

    /// <summary>Every signal ID whose ACK wakes this wait (<see cref="SignalId"/> first, no duplicates).</summary>
    public IReadOnlyList<string> SignalIds { get; } =
        otherSignalIds is null ? [signalId] : [.. new[] { signalId }.Concat(otherSignalIds).Distinct(StringComparer.Ordinal)];

    public AsyncSignal Wake { get; } = new();

    /// <summary>Set by a force-unblock; the wait then ends with status <c>forced</c>.</summary>
    public bool Forced { get; private set; }

    /// <summary>The ACK keys not yet verified; read by the fallback poller.</summary>
    public RedisKey[] MissingKeys
    {
        get => Volatile.Read(ref _missing);
        set => Volatile.Write(ref _missing, value);
    }

    public void Force()
    {
        Forced = true;
        Wake.Set();
    }

    public void Dispose() => Wake.Dispose();
}
