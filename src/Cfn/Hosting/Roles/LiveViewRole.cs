using Cfn.Coordination.Inspection;

namespace Cfn.Hosting;

/// <summary>
/// The live dashboard's reader (issue 15) in a process that runs the swarm manager or the timeout handler: one
/// <see cref="LiveView"/> refreshed every <c>DASHBOARD_REFRESH_MS</c>, whatever the number of open pages.
/// </summary>
internal sealed class LiveViewRole : RoleService
{
    public LiveViewRole(ProcessRuntime process)
        : base(process)
    {
        View = new LiveView(process.Redis, process.Config.Recovery, ProcessRuntime.ProcessId, process.Plan.Roles.Split(','),
            process.Config.DashboardRefresh, logger: process.Loggers.CreateLogger<LiveView>());
    }

    /// <summary>What the dashboard's endpoints serve.</summary>
    public LiveView View { get; }

    protected override Task StartRoleAsync(CancellationToken cancellationToken)
    {
        View.Start();
        return Task.CompletedTask;
    }

    protected override async Task StopRoleAsync() => await View.DisposeAsync().ConfigureAwait(false);
}
