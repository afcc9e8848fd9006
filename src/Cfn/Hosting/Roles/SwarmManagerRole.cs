using Cfn.Coordination;
using Cfn.Coordination.Swarms;

namespace Cfn.Hosting;

/// <summary>The swarm-manager role: spawn requests, scaling and reconciliation of every swarm.</summary>
internal sealed class SwarmManagerRole : RoleService
{
    public SwarmManagerRole(ProcessRuntime process)
        : base(process)
    {
        Manager = new SwarmManager(process.Redis, process.Config.Swarms, process.Config.Recovery, new SwarmMetrics(Prometheus.Metrics.DefaultRegistry),
            $"swarm-manager-{ProcessRuntime.HostId()}", process.Config.ExpectedCoordinators);
    }

    /// <summary>The manager its endpoints (and <c>cfn up</c>) act on.</summary>
    public SwarmManager Manager { get; }

    protected override Task StartRoleAsync(CancellationToken cancellationToken)
    {
        Manager.Start();
        return Task.CompletedTask;
    }

    protected override async Task StopRoleAsync() => await Manager.DisposeAsync().ConfigureAwait(false);
}
