namespace Cfn.Coordination.Deadlocks;

/// <summary>
/// One deadlock: a strongly connected component of the wait-for graph with more than one coordinator, or one
/// coordinator that waits for itself. Serialized as JSON (camelCase) by the API.
/// </summary>
/// <param name="Coordinators">Every coordinator of the component, ordinal-sorted and distinct.</param>
/// <param name="Path">
/// One concrete cycle through the component, starting and ending at its smallest ID (<c>[A, B, A]</c>); no ID repeats
/// except the last, and every consecutive pair is an edge of the graph.
/// </param>
public sealed record Deadlock(IReadOnlyList<string> Coordinators, IReadOnlyList<string> Path)
{
    /// <summary>The cycle as the log shows it: <c>A -> B -> A</c>.</summary>
    public string Describe() => string.Join(" -> ", Path);

    /// <summary>Equal when both the members and the path are equal, element by element.</summary>
    public bool Equals(Deadlock? other) =>
        other is not null && Coordinators.SequenceEqual(other.Coordinators, StringComparer.Ordinal) &&
        Path.SequenceEqual(other.Path, StringComparer.Ordinal);

    /// <inheritdoc />
    public override int GetHashCode()
    {
        var hash = new HashCode();
        foreach (var id in Coordinators)
        {
            hash.Add(id, StringComparer.Ordinal);
        }

        foreach (var id in Path)
        {
            hash.Add(id, StringComparer.Ordinal);
        }

        return hash.ToHashCode();
    }

    /// <inheritdoc />
    public override string ToString() => $"Deadlock {{ Coordinators = [{string.Join(", ", Coordinators)}], Path = {Describe()} }}";
}

/// <summary>The result of one deadlock-detection pass. Serialized as JSON (camelCase) by the API.</summary>
/// <param name="TimestampMs">When the pass ran, in milliseconds since the Unix epoch.</param>
/// <param name="BlockingCoordinators">How many of the activity records analysed had <c>status</c> <c>blocking</c>.</param>
/// <param name="Deadlocks">Every deadlock found, ordered by its smallest coordinator ID; empty when there is none.</param>
public sealed record DeadlockSnapshot(long TimestampMs, int BlockingCoordinators, IReadOnlyList<Deadlock> Deadlocks);
