namespace Cfn.Coordination.Tests.Faults;

/// <summary>
/// The fault-injection tests: each starts its own redis-server (and coordinator processes), so no other test's keys
/// can be judged dead by their monitors. They run alone, after the parallel tests, so timing noise stays low.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class FaultsCollection
{
    public const string Name = "faults";
}
