using System.Text;
using Cfn.Coordination.Deadlocks;

namespace Cfn.Coordination.Tests.Deadlocks;

/// <summary>
/// <see cref="CycleFinder"/>: iterative Tarjan over the wait-for graph (SPEC §5 #65, L18). Deterministic cases, large
/// graphs that a recursive version would overflow on, and a property test against brute-force reachability.
/// </summary>
public sealed class CycleFinderUnitTests
{
    private static readonly System.Text.Json.JsonSerializerOptions WebJson = new(System.Text.Json.JsonSerializerDefaults.Web);

    [Fact]
    public void FindDeadlocks_TwoNodeCycle_OneDeadlockStartingAtSmallestId()
    {
        var graph = Graph(("B", "A"), ("A", "B"));

        var deadlock = Assert.Single(CycleFinder.FindDeadlocks(graph));

        Assert.Equal(["A", "B"], deadlock.Coordinators);
        Assert.Equal(["A", "B", "A"], deadlock.Path);
        Assert.Equal("A -> B -> A", deadlock.Describe());
    }

    [Fact]
    public void FindDeadlocks_ThreeNodeCycle_PathFollowsTheEdges()
    {
        var graph = Graph(("C", "A"), ("A", "B"), ("B", "C"));

        var deadlock = Assert.Single(CycleFinder.FindDeadlocks(graph));

        Assert.Equal(["A", "B", "C"], deadlock.Coordinators);
        Assert.Equal("A -> B -> C -> A", deadlock.Describe());
    }

    [Fact]
    public void FindDeadlocks_ThreeNodeCycleAgainstIdOrder_PathFollowsTheEdgesNotTheSortOrder()
    {
        var graph = Graph(("A", "C"), ("C", "B"), ("B", "A"));

        var deadlock = Assert.Single(CycleFinder.FindDeadlocks(graph));

        Assert.Equal(["A", "B", "C"], deadlock.Coordinators);
        Assert.Equal("A -> C -> B -> A", deadlock.Describe());
    }

    [Fact]
    public void FindDeadlocks_SelfLoop_IsADeadlock()
    {
        var graph = Graph(("A", "A"), ("B", "A"));

        var deadlock = Assert.Single(CycleFinder.FindDeadlocks(graph));

        Assert.Equal(["A"], deadlock.Coordinators);
        Assert.Equal("A -> A", deadlock.Describe());
    }

    [Fact]
    public void FindDeadlocks_SelfLoopOnStartOfLargerComponent_PathShowsTheOtherMembers()
    {
        var graph = Graph(("A", "A"), ("A", "B"), ("B", "A"));

        var deadlock = Assert.Single(CycleFinder.FindDeadlocks(graph));

        Assert.Equal(["A", "B"], deadlock.Coordinators);
        Assert.Equal("A -> B -> A", deadlock.Describe());
    }

    [Fact]
    public void FindDeadlocks_Chain_NoDeadlock()
    {
        var graph = Graph(("A", "B"), ("B", "C"), ("C", "D"));

        Assert.Empty(CycleFinder.FindDeadlocks(graph));
    }

    [Fact]
    public void FindDeadlocks_Tree_NoDeadlock()
    {
        var graph = Graph(("root", "l"), ("root", "r"), ("l", "ll"), ("l", "lr"), ("r", "rl"), ("r", "rr"));

        Assert.Empty(CycleFinder.FindDeadlocks(graph));
    }

    [Fact]
    public void FindDeadlocks_DagWithDiamonds_NoDeadlock()
    {
        // Two stacked diamonds plus a long-range edge: many paths reach the same node, none returns.
        var graph = Graph(
            ("A", "B"), ("A", "C"), ("B", "D"), ("C", "D"),
            ("D", "E"), ("D", "F"), ("E", "G"), ("F", "G"), ("A", "G"));

        Assert.Empty(CycleFinder.FindDeadlocks(graph));
    }

    [Fact]
    public void FindDeadlocks_TwoDisjointCycles_BothFoundInOrder()
    {
        var graph = Graph(("Y", "Z"), ("Z", "Y"), ("A", "B"), ("B", "C"), ("C", "A"), ("M", "A"));

        var deadlocks = CycleFinder.FindDeadlocks(graph);

        Assert.Equal(2, deadlocks.Count);
        Assert.Equal("A -> B -> C -> A", deadlocks[0].Describe());
        Assert.Equal(["A", "B", "C"], deadlocks[0].Coordinators);
        Assert.Equal("Y -> Z -> Y", deadlocks[1].Describe());
        Assert.Equal(["Y", "Z"], deadlocks[1].Coordinators);
    }

    [Fact]
    public void FindDeadlocks_CycleWithTail_TailNodesNotReported()
    {
        // T1 -> T2 -> B and B <-> C; C also waits for an idle D.
        var graph = Graph(("T1", "T2"), ("T2", "B"), ("B", "C"), ("C", "B"), ("C", "D"));

        var deadlock = Assert.Single(CycleFinder.FindDeadlocks(graph));

        Assert.Equal(["B", "C"], deadlock.Coordinators);
        Assert.Equal("B -> C -> B", deadlock.Describe());
    }

    [Fact]
    public void FindDeadlocks_NestedCyclesInOneComponent_OneDeadlockWithRealCycle()
    {
        // A -> B -> A, B -> C -> D -> B, D -> A: one component {A, B, C, D} made of several cycles.
        var graph = Graph(("A", "B"), ("B", "A"), ("B", "C"), ("C", "D"), ("D", "B"), ("D", "A"));

        var deadlock = Assert.Single(CycleFinder.FindDeadlocks(graph));

        Assert.Equal(["A", "B", "C", "D"], deadlock.Coordinators);
        AssertRealCycle(graph, deadlock.Path);
        Assert.Equal("A", deadlock.Path[0]);
        Assert.Equal("A -> B -> A", deadlock.Describe()); // shortest cycle through the smallest ID
    }

    [Fact]
    public void FindDeadlocks_LongCycleOnlyThroughStart_PathVisitsEveryMember()
    {
        var graph = Graph(("A", "B"), ("B", "C"), ("C", "D"), ("D", "E"), ("E", "A"), ("C", "B"));

        var deadlock = Assert.Single(CycleFinder.FindDeadlocks(graph));

        Assert.Equal("A -> B -> C -> D -> E -> A", deadlock.Describe());
    }

    [Fact]
    public void FindDeadlocks_HundredThousandNodeChain_NoStackOverflowAndNoDeadlock()
    {
        const int n = 100_000;
        var graph = Graph(Enumerable.Range(0, n - 1).Select(i => (Node(i), Node(i + 1))));

        var deadlocks = RunOnSmallStack(() => CycleFinder.FindDeadlocks(graph));

        Assert.Equal(n, graph.NodeCount);
        Assert.Empty(deadlocks);
    }

    [Fact]
    public void FindDeadlocks_HundredThousandNodeCycle_OneDeadlockWithEveryNode()
    {
        const int n = 100_000;
        var graph = Graph(Enumerable.Range(0, n).Select(i => (Node(i), Node((i + 1) % n))));

        var deadlocks = RunOnSmallStack(() => CycleFinder.FindDeadlocks(graph));

        var deadlock = Assert.Single(deadlocks);
        Assert.Equal(n, deadlock.Coordinators.Count);
        Assert.Equal(n + 1, deadlock.Path.Count);
        Assert.Equal(Node(0), deadlock.Path[0]);
        Assert.Equal(Node(1), deadlock.Path[1]);
        Assert.Equal(Node(n - 1), deadlock.Path[^2]);
        AssertRealCycle(graph, deadlock.Path);
    }

    [Fact]
    public void FindDeadlocks_SameGraphInAnyInputOrder_SameOutput()
    {
        var edges = new List<(string, string)>
        {
            ("q", "r"), ("r", "s"), ("s", "q"), ("s", "t"), ("t", "t"), ("a", "b"), ("b", "c"), ("c", "a"), ("c", "b"),
            ("x1", "x2"), ("x2", "x1"), ("x10", "x2"), ("z", "a"),
        };
        var expected = Render(CycleFinder.FindDeadlocks(Graph(edges)));
        var random = new Random(20260516);

        for (var run = 0; run < 50; run++)
        {
            var shuffled = edges.OrderBy(_ => random.Next()).ToList();
            Assert.Equal(expected, Render(CycleFinder.FindDeadlocks(Graph(shuffled))));
        }

        Assert.Equal("a,b,c:a -> b -> c -> a | q,r,s:q -> r -> s -> q | t:t -> t | x1,x2:x1 -> x2 -> x1", expected);
    }

    [Fact]
    public void FindDeadlocks_OrdinalIdOrder_DeadlocksAndMembersSortedOrdinally()
    {
        // Ordinal order: "B" < "a" and "c10" < "c2"; culture-aware sorting would differ.
        var graph = Graph(("c2", "c10"), ("c10", "c2"), ("a", "B"), ("B", "a"));

        var deadlocks = CycleFinder.FindDeadlocks(graph);

        Assert.Equal(["B -> a -> B", "c10 -> c2 -> c10"], deadlocks.Select(d => d.Describe()));
    }

    /// <summary>
    /// Property: on 600 random graphs (1–30 nodes, densities from sparse to dense, self-loops included), the reported
    /// deadlocks agree with brute-force reachability.
    /// </summary>
    [Fact]
    public void FindDeadlocks_RandomGraphs_AgreeWithBruteForceReachability()
    {
        const int graphs = 600;
        double[] densities = [0.0, 0.02, 0.05, 0.1, 0.2, 0.4, 0.8];
        for (var g = 0; g < graphs; g++)
        {
            var seed = 7919 * (g + 1);
            var random = new Random(seed);
            var n = random.Next(1, 31);
            var density = densities[random.Next(densities.Length)];
            var selfLoopChance = random.Next(3) switch { 0 => 0.0, 1 => 0.05, _ => 0.3 };
            var adjacency = new bool[n, n];
            for (var u = 0; u < n; u++)
            {
                for (var v = 0; v < n; v++)
                {
                    adjacency[u, v] = random.NextDouble() < (u == v ? selfLoopChance : density);
                }
            }

            var failure = CheckAgainstBruteForce(adjacency);
            if (failure is not null)
            {
                Assert.Fail($"seed {seed} (graph {g}, {n} nodes, density {density}, self-loops {selfLoopChance}): {failure}\n{Dump(adjacency)}");
            }
        }
    }

    [Fact]
    public void CheckAgainstBruteForce_GraphWithCycle_DetectsAWrongAnswer()
    {
        // The property test's oracle must be able to fail: a finder that reports nothing is caught.
        var adjacency = new bool[3, 3];
        adjacency[0, 1] = true;
        adjacency[1, 0] = true;

        Assert.Null(CheckAgainstBruteForce(adjacency));
        Assert.NotNull(CheckAgainstBruteForce(adjacency, _ => []));
        Assert.NotNull(CheckAgainstBruteForce(adjacency, _ => [new Deadlock(["n00", "n01"], ["n00", "n00"])]));
    }

    [Fact]
    public void WaitForGraph_EmptyAndDuplicateIds_IgnoredOrMerged()
    {
        var graph = new WaitForGraph(new Dictionary<string, IEnumerable<string>>
        {
            ["A"] = ["B", "", " ", "B", " C "],
            [""] = ["A"],
            ["B"] = [],
        });

        Assert.Equal(["A", "B", "C"], graph.Nodes);
        Assert.Equal(["B", "C"], graph.WaitsFor("A"));
        Assert.Equal(2, graph.EdgeCount);
        Assert.Empty(graph.WaitsFor("B"));
        Assert.Empty(graph.WaitsFor("unknown"));
        Assert.Empty(CycleFinder.FindDeadlocks(graph));
    }

    [Fact]
    public void WaitForGraph_SelfLoop_KeptAsEdge()
    {
        var graph = Graph(("A", "A"));

        Assert.True(graph.HasEdge("A", "A"));
        Assert.Equal(1, graph.EdgeCount);
    }

    [Fact]
    public void FromActivity_OnlyBlockingRecords_ContributeEdges()
    {
        var graph = WaitForGraph.FromActivity(
        [
            Record("A", "blocking", "B,C"),
            Record("B", "idle", "A"), // stale waitingFor of a coordinator that is not blocking: ignored
            Record("C", "working", "A"),
            Record("D", "Blocking", "A"), // status is exact
            Record("E", "blocking", null),
            Record("F", "blocking", ",,G, ,G,"),
        ]);

        Assert.Equal(["B", "C"], graph.WaitsFor("A"));
        Assert.Empty(graph.WaitsFor("B"));
        Assert.Empty(graph.WaitsFor("C"));
        Assert.Empty(graph.WaitsFor("D"));
        Assert.Empty(graph.WaitsFor("E"));
        Assert.Equal(["G"], graph.WaitsFor("F"));
        Assert.Equal(3, graph.EdgeCount);
        Assert.Empty(CycleFinder.FindDeadlocks(graph));
    }

    [Fact]
    public void FromActivity_BlockingPair_IsADeadlock()
    {
        var graph = WaitForGraph.FromActivity([Record("A", "blocking", "B"), Record("B", "blocking", "A,C")]);

        Assert.Equal("A -> B -> A", Assert.Single(CycleFinder.FindDeadlocks(graph)).Describe());
    }

    [Fact]
    public void Analyze_Records_CountsBlockingAndReportsDeadlocks()
    {
        var snapshot = DeadlockDetector.Analyze(
            [Record("A", "blocking", "B"), Record("B", "blocking", "A"), Record("C", "blocking", "A"), Record("D", "idle", null)],
            1234);

        Assert.Equal(1234, snapshot.TimestampMs);
        Assert.Equal(3, snapshot.BlockingCoordinators);
        Assert.Equal(new Deadlock(["A", "B"], ["A", "B", "A"]), Assert.Single(snapshot.Deadlocks));
    }

    [Fact]
    public void Snapshot_SerializedForTheApi_CamelCasePlainJson()
    {
        var snapshot = new DeadlockSnapshot(5, 2, [new Deadlock(["A", "B"], ["A", "B", "A"])]);

        var json = System.Text.Json.JsonSerializer.Serialize(snapshot, WebJson);

        Assert.Equal("""{"timestampMs":5,"blockingCoordinators":2,"deadlocks":[{"coordinators":["A","B"],"path":["A","B","A"]}]}""", json);
    }

    private static Cfn.Coordination.Activity.ActivityRecord Record(string id, string status, string? waitingFor) => new()
    {
        CoordinatorId = id,
        SwarmId = "swarm",
        LastActivity = 1,
        Status = status,
        WaitingFor = waitingFor,
    };

    private static string Node(int i) => "n" + i.ToString("D6", System.Globalization.CultureInfo.InvariantCulture);

    private static WaitForGraph Graph(params (string From, string To)[] edges) => Graph((IEnumerable<(string, string)>)edges);

    private static WaitForGraph Graph(IEnumerable<(string From, string To)> edges) =>
        new(edges.Select(e => KeyValuePair.Create(e.From, (IEnumerable<string>)[e.To])));

    private static string Render(IReadOnlyList<Deadlock> deadlocks) =>
        string.Join(" | ", deadlocks.Select(d => string.Join(',', d.Coordinators) + ":" + d.Describe()));

    /// <summary>Runs on a thread with a 256 KB stack: a recursive DFS 100,000 deep could not finish there.</summary>
    private static T RunOnSmallStack<T>(Func<T> work)
    {
        T result = default!;
        Exception? error = null;
        var thread = new Thread(() =>
        {
            try
            {
                result = work();
            }
            catch (Exception e)
            {
                error = e;
            }
        }, 256 * 1024);
        thread.Start();
        thread.Join();
        if (error is not null)
        {
            throw new InvalidOperationException("the work failed", error);
        }

        return result;
    }

    private static void AssertRealCycle(WaitForGraph graph, IReadOnlyList<string> path)
    {
        Assert.True(path.Count >= 2, $"path too short: {string.Join(" -> ", path)}");
        Assert.Equal(path[0], path[^1]);
        Assert.Equal(path.Count - 1, path.Take(path.Count - 1).Distinct(StringComparer.Ordinal).Count());
        for (var i = 0; i + 1 < path.Count; i++)
        {
            Assert.True(graph.HasEdge(path[i], path[i + 1]), $"no edge {path[i]} -> {path[i + 1]}");
        }
    }

    /// <summary>The oracle: null when <paramref name="finder"/>'s answer agrees with brute force, else what is wrong.</summary>
    private static string? CheckAgainstBruteForce(bool[,] adjacency, Func<WaitForGraph, IReadOnlyList<Deadlock>>? finder = null)
    {
        var n = adjacency.GetLength(0);
        var names = Enumerable.Range(0, n).Select(i => "n" + i.ToString("D2", System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        var map = new Dictionary<string, IEnumerable<string>>();
        for (var u = 0; u < n; u++)
        {
            map[names[u]] = Enumerable.Range(0, n).Where(v => adjacency[u, v]).Select(v => names[v]).ToList();
        }

        var graph = new WaitForGraph(map);
        var deadlocks = (finder ?? CycleFinder.FindDeadlocks)(graph);

        // Brute force: reach[u, v] = a path of at least one edge leads from u to v (BFS from every node).
        var reach = new bool[n, n];
        for (var s = 0; s < n; s++)
        {
            var queue = new Queue<int>();
            for (var v = 0; v < n; v++)
            {
                if (adjacency[s, v] && !reach[s, v])
                {
                    reach[s, v] = true;
                    queue.Enqueue(v);
                }
            }

            while (queue.Count > 0)
            {
                var u = queue.Dequeue();
                for (var v = 0; v < n; v++)
                {
                    if (adjacency[u, v] && !reach[s, v])
                    {
                        reach[s, v] = true;
                        queue.Enqueue(v);
                    }
                }
            }
        }

        var deadlockOf = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var d = 0; d < deadlocks.Count; d++)
        {
            var deadlock = deadlocks[d];
            if (deadlock.Coordinators.Count == 0)
            {
                return $"deadlock {d} has no members";
            }

            if (!deadlock.Coordinators.SequenceEqual(deadlock.Coordinators.Order(StringComparer.Ordinal)) ||
                deadlock.Coordinators.Distinct(StringComparer.Ordinal).Count() != deadlock.Coordinators.Count)
            {
                return $"members not sorted and distinct: {deadlock}";
            }

            if (d > 0 && string.CompareOrdinal(deadlocks[d - 1].Coordinators[0], deadlock.Coordinators[0]) >= 0)
            {
                return $"deadlocks not ordered by smallest ID: {deadlocks[d - 1]} then {deadlock}";
            }

            foreach (var member in deadlock.Coordinators)
            {
                if (!deadlockOf.TryAdd(member, d))
                {
                    return $"{member} is in two deadlocks";
                }
            }

            var path = deadlock.Path;
            if (path.Count < 2 || path[0] != path[^1] || path[0] != deadlock.Coordinators[0])
            {
                return $"path must start and end at the smallest member: {deadlock}";
            }

            if (path.Take(path.Count - 1).Distinct(StringComparer.Ordinal).Count() != path.Count - 1)
            {
                return $"path repeats a node: {deadlock}";
            }

            for (var i = 0; i + 1 < path.Count; i++)
            {
                if (!deadlock.Coordinators.Contains(path[i]))
                {
                    return $"path leaves the component at {path[i]}: {deadlock}";
                }

                if (!graph.HasEdge(path[i], path[i + 1]))
                {
                    return $"path uses the missing edge {path[i]} -> {path[i + 1]}: {deadlock}";
                }
            }
        }

        for (var u = 0; u < n; u++)
        {
            var onCycle = reach[u, u];
            var reported = deadlockOf.ContainsKey(names[u]);
            if (onCycle != reported)
            {
                return $"{names[u]}: on a cycle by brute force = {onCycle}, reported = {reported}";
            }

            for (var v = u + 1; v < n; v++)
            {
                var mutual = reach[u, v] && reach[v, u];
                var together = deadlockOf.TryGetValue(names[u], out var du) && deadlockOf.TryGetValue(names[v], out var dv) && du == dv;
                if (mutual != together)
                {
                    return $"{names[u]}, {names[v]}: reach each other = {mutual}, same deadlock = {together}";
                }
            }
        }

        return null;
    }

    private static string Dump(bool[,] adjacency)
    {
        var n = adjacency.GetLength(0);
        var text = new StringBuilder("edges:");
        for (var u = 0; u < n; u++)
        {
            for (var v = 0; v < n; v++)
            {
                if (adjacency[u, v])
                {
                    text.Append(System.Globalization.CultureInfo.InvariantCulture, $" n{u:D2}->n{v:D2}");
                }
            }
        }

        return text.ToString();
    }
}
