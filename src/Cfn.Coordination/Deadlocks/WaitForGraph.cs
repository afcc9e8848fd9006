using Cfn.Coordination.Activity;

namespace Cfn.Coordination.Deadlocks;

/// <summary>
/// The wait-for graph of a swarm: an edge <c>A → B</c> means coordinator A is blocked waiting for an ACK from B
/// (K7 <c>waitingFor</c>, SPEC §5 #65). Nodes are every coordinator that waits or is waited for, in ordinal order;
/// each node's targets are ordinal-sorted and distinct, so every algorithm over the graph is deterministic.
/// Empty or blank IDs are ignored; a self-loop (a coordinator waiting for itself) is kept, because it is a deadlock.
/// </summary>
internal sealed class WaitForGraph
{
    private readonly string[] _names;
    private readonly int[][] _targets;
    private readonly Dictionary<string, int> _index;

    /// <summary>Builds the graph from a mapping coordinator ID → the IDs it waits for.</summary>
    /// <param name="waitsFor">
    /// Waiter → targets. Keys or targets that are null, empty or blank are ignored; duplicate targets (and a waiter
    /// listed under several entries of a sequence) are merged.
    /// </param>
    public WaitForGraph(IEnumerable<KeyValuePair<string, IEnumerable<string>>> waitsFor)
    {
        ArgumentNullException.ThrowIfNull(waitsFor);
        var edges = new Dictionary<string, HashSet<string>>(StringComparer.Ordinal);
        foreach (var (waiter, targets) in waitsFor)
        {
            AddEdges(edges, waiter, targets);
        }

        (_names, _targets, _index) = Freeze(edges);
        EdgeCount = _targets.Sum(row => row.Length);
    }

    /// <summary>Builds the graph from a dictionary coordinator ID → the IDs it waits for (same rules as the main constructor).</summary>
    public WaitForGraph(IReadOnlyDictionary<string, IEnumerable<string>> waitsFor)
        : this((IEnumerable<KeyValuePair<string, IEnumerable<string>>>)waitsFor)
    {
    }

    /// <summary>Every node (waiter or target), ordinal-sorted and distinct.</summary>
    public IReadOnlyList<string> Nodes => _names;

    /// <summary>The number of nodes.</summary>
    public int NodeCount => _names.Length;

    /// <summary>The number of distinct edges (self-loops included).</summary>
    public int EdgeCount { get; }

    /// <summary>Node indexes of <paramref name="node"/>'s targets, ascending (= ordinal order of their IDs).</summary>
    internal int[] TargetsOf(int node) => _targets[node];

    /// <summary>The ID of node <paramref name="node"/>.</summary>
    internal string NameOf(int node) => _names[node];

    /// <summary>
    /// Builds the graph from K7 activity records: a record contributes the IDs of its comma-separated
    /// <see cref="ActivityRecord.WaitingFor"/> only when its <see cref="ActivityRecord.Status"/> is <c>blocking</c>;
    /// idle and working records, and null records, contribute nothing.
    /// </summary>
    public static WaitForGraph FromActivity(IEnumerable<ActivityRecord> records)
    {
        ArgumentNullException.ThrowIfNull(records);
        var pairs = new List<KeyValuePair<string, IEnumerable<string>>>();
        foreach (var record in records)
        {
            if (record is null || !IsBlocking(record) || string.IsNullOrWhiteSpace(record.CoordinatorId))
            {
                continue;
            }

            pairs.Add(KeyValuePair.Create(record.CoordinatorId, (IEnumerable<string>)SplitWaitingFor(record.WaitingFor)));
        }

        return new WaitForGraph(pairs);
    }

    /// <summary>Whether a K7 record says its coordinator is blocking (<c>status</c> is exactly <c>blocking</c>).</summary>
    public static bool IsBlocking(ActivityRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        return string.Equals(record.Status, "blocking", StringComparison.Ordinal);
    }

    /// <summary>The IDs of a K7 <c>waitingFor</c> string: comma-separated, trimmed, blanks dropped.</summary>
    public static IReadOnlyList<string> SplitWaitingFor(string? waitingFor) =>
        string.IsNullOrEmpty(waitingFor)
            ? []
            : waitingFor.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);

    /// <summary>The IDs <paramref name="coordinatorId"/> waits for, ordinal-sorted; empty for an unknown ID.</summary>
    public IReadOnlyList<string> WaitsFor(string coordinatorId)
    {
        ArgumentNullException.ThrowIfNull(coordinatorId);
        return _index.TryGetValue(coordinatorId, out var node)
            ? Array.ConvertAll(_targets[node], t => _names[t])
            : [];
    }

    /// <summary>Whether <paramref name="from"/> waits for <paramref name="to"/>.</summary>
    public bool HasEdge(string from, string to)
    {
        ArgumentNullException.ThrowIfNull(from);
        ArgumentNullException.ThrowIfNull(to);
        return _index.TryGetValue(from, out var f) && _index.TryGetValue(to, out var t) && HasEdge(f, t);
    }

    /// <summary>Whether node <paramref name="from"/> has an edge to node <paramref name="to"/> (binary search).</summary>
    internal bool HasEdge(int from, int to) => Array.BinarySearch(_targets[from], to) >= 0;

    private static void AddEdges(Dictionary<string, HashSet<string>> edges, string? waiter, IEnumerable<string>? targets)
    {
        if (string.IsNullOrWhiteSpace(waiter))
        {
            return;
        }

        waiter = waiter.Trim();
        if (!edges.TryGetValue(waiter, out var set))
        {
            set = new HashSet<string>(StringComparer.Ordinal);
            edges.Add(waiter, set);
        }

        if (targets is null)
        {
            return;
        }

        foreach (var target in targets)
        {
            if (!string.IsNullOrWhiteSpace(target))
            {
                set.Add(target.Trim());
            }
        }
    }

    private static (string[] Names, int[][] Targets, Dictionary<string, int> Index) Freeze(Dictionary<string, HashSet<string>> edges)
    {
        var all = new HashSet<string>(edges.Keys, StringComparer.Ordinal);
        foreach (var set in edges.Values)
        {
            all.UnionWith(set);
        }

        var names = all.ToArray();
        Array.Sort(names, StringComparer.Ordinal);
        var index = new Dictionary<string, int>(names.Length, StringComparer.Ordinal);
        for (var i = 0; i < names.Length; i++)
        {
            index.Add(names[i], i);
        }

        var targets = new int[names.Length][];
        for (var i = 0; i < names.Length; i++)
        {
            if (edges.TryGetValue(names[i], out var set) && set.Count > 0)
            {
                var row = new int[set.Count];
                var k = 0;
                foreach (var target in set)
                {
                    row[k++] = index[target];
                }

                Array.Sort(row);
                targets[i] = row;
            }
            else
            {
                targets[i] = [];
            }
        }

        return (names, targets, index);
    }
}
