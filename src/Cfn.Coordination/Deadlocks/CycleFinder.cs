namespace Cfn.Coordination.Deadlocks;

/// <summary>
/// Finds the deadlocks of a <see cref="WaitForGraph"/> with Tarjan's strongly-connected-components algorithm, written
/// iteratively (an explicit stack instead of recursion, so a 100,000-coordinator chain cannot overflow the thread's
/// stack), in O(V + E) time. Every component with more than one node, and every node with a self-loop, is one
/// <see cref="Deadlock"/>; its cycle path is found by a breadth-first search restricted to the component.
/// The output is deterministic: members sorted, deadlocks ordered by their smallest ID.
/// </summary>
internal static class CycleFinder
{
    /// <summary>Every deadlock of <paramref name="graph"/>, ordered by smallest member ID (ordinal).</summary>
    public static IReadOnlyList<Deadlock> FindDeadlocks(WaitForGraph graph)
    {
        ArgumentNullException.ThrowIfNull(graph);
        var components = StronglyConnectedComponents(graph, out var componentOf);
        var deadlocks = new List<Deadlock>();
        var visitedBy = new int[graph.NodeCount];
        var parent = new int[graph.NodeCount];
        Array.Fill(visitedBy, -1);
        foreach (var members in components)
        {
            // Node indexes follow the ordinal order of the IDs, so sorting indexes sorts the IDs.
            members.Sort();
            var start = members[0];
            if (members.Count == 1 && !graph.HasEdge(start, start))
            {
                continue;
            }

            var path = CycleThrough(graph, start, componentOf, members.Count, visitedBy, parent);
            deadlocks.Add(new Deadlock(
                members.ConvertAll(graph.NameOf),
                path.ConvertAll(graph.NameOf)));
        }

        deadlocks.Sort((a, b) => string.CompareOrdinal(a.Coordinators[0], b.Coordinators[0]));
        return deadlocks;
    }

    /// <summary>
    /// Iterative Tarjan. Returns the components (lists of node indexes) and, in <paramref name="componentOf"/>, each
    /// node's component number.
    /// </summary>
    internal static List<List<int>> StronglyConnectedComponents(WaitForGraph graph, out int[] componentOf)
    {
        ArgumentNullException.ThrowIfNull(graph);
        var n = graph.NodeCount;
        var index = new int[n];
        var low = new int[n];
        var onStack = new bool[n];
        var stack = new int[n];
        var stackTop = 0;
        var callNode = new int[n];
        var callEdge = new int[n];
        componentOf = new int[n];
        Array.Fill(index, -1);
        var counter = 0;
        var components = new List<List<int>>();

        for (var root = 0; root < n; root++)
        {
            if (index[root] != -1)
            {
                continue;
            }

            var depth = 0;
            Visit(root);
            while (depth > 0)
            {
                var v = callNode[depth - 1];
                var targets = graph.TargetsOf(v);
                var edge = callEdge[depth - 1];
                if (edge < targets.Length)
                {
                    callEdge[depth - 1] = edge + 1;
                    var w = targets[edge];
                    if (index[w] == -1)
                    {
                        Visit(w);
                    }
                    else if (onStack[w] && index[w] < low[v])
                    {
                        low[v] = index[w];
                    }

                    continue;
                }

                // Every edge of v is done: "return" from v.
                depth--;
                if (low[v] == index[v])
                {
                    var component = new List<int>();
                    int w;
                    do
                    {
                        w = stack[--stackTop];
                        onStack[w] = false;
                        componentOf[w] = components.Count;
                        component.Add(w);
                    }
                    while (w != v);

                    components.Add(component);
                }

                if (depth > 0)
                {
                    var caller = callNode[depth - 1];
                    if (low[v] < low[caller])
                    {
                        low[caller] = low[v];
                    }
                }
            }

            void Visit(int node)
            {
                index[node] = low[node] = counter++;
                stack[stackTop++] = node;
                onStack[node] = true;
                callNode[depth] = node;
                callEdge[depth] = 0;
                depth++;
            }
        }

        return components;
    }

    /// <summary>
    /// The shortest cycle through <paramref name="start"/> that stays inside its component, by breadth-first search.
    /// In a component of more than one node the cycle has at least two nodes (a self-loop on the start would hide
    /// the other members). <paramref name="visitedBy"/> and <paramref name="parent"/> are scratch arrays shared by
    /// every call, so the total cost over all components is O(V + E).
    /// </summary>
    private static List<int> CycleThrough(WaitForGraph graph, int start, int[] componentOf, int size, int[] visitedBy, int[] parent)
    {
        if (size == 1)
        {
            return [start, start];
        }

        var component = componentOf[start];
        var queue = new Queue<int>();
        queue.Enqueue(start);
        visitedBy[start] = start;
        while (queue.Count > 0)
        {
            var u = queue.Dequeue();
            foreach (var w in graph.TargetsOf(u))
            {
                if (componentOf[w] != component)
                {
                    continue;
                }

                if (w == start)
                {
                    if (u == start)
                    {
                        continue; // the start's own self-loop: look for a cycle through the other members
                    }

                    var path = new List<int> { start };
                    for (var x = u; x != start; x = parent[x])
                    {
                        path.Add(x);
                    }

                    path.Add(start);
                    path.Reverse();
                    return path;
                }

                if (visitedBy[w] != start)
                {
                    visitedBy[w] = start;
                    parent[w] = u;
                    queue.Enqueue(w);
                }
            }
        }

        // Unreachable: a strongly connected component of two or more nodes always has a cycle through each member.
        throw new InvalidOperationException("no cycle found in a strongly connected component");
    }
}
