namespace Cfn.Coordination.Tests.Infrastructure;

/// <summary>Unique IDs per test, so tests sharing one Redis never see each other's keys.</summary>
public static class TestIds
{
    public static string New(string prefix) => $"{prefix}-{Guid.NewGuid().ToString("N")[..10]}";
}
