using Cfn.Coordination.Tests.Infrastructure;

namespace Cfn.Coordination.Tests.Metrics;

[Collection(RedisCollection.Name)]
public sealed class CoordinationMetricsTests(RedisServer server)
{
    [Fact]
    public async Task Start_OwnFailureSeriesExportedAtZero_SoRateSeesTheFirstFailure()
    {
        await using var h = Harness.Create(server);
        var coordinator = await h.StartAsync();

        var text = await Probe.ExportAsync(h.Registry);

        foreach (var reason in new[] { "connection", "timeout", "error" })
        {
            Assert.Contains($"heartbeat_failures_total{{coordinator_id=\"{coordinator.Id}\",reason=\"{reason}\",failure_type=\"{reason}\"}} 0", text,
                StringComparison.Ordinal);
        }

        foreach (var reason in new[] { "blocking", "external" })
        {
            Assert.Contains($"timeout_events_total{{coordinator_id=\"{coordinator.Id}\",reason=\"{reason}\",timeout_type=\"{reason}\"}} 0", text,
                StringComparison.Ordinal);
        }
    }
}
