using Cfn.Coordination;
using Cfn.Coordination.Recovery;

namespace Cfn.Hosting;

/// <summary>The timeout-handler role: dead-coordinator detection and escalation, stuck waits, deadlocks, the batch cleanup.</summary>
internal sealed class TimeoutHandlerRole : RoleService
{
    public TimeoutHandlerRole(ProcessRuntime process)
        : base(process)
    {
        // The process ID tells two handlers on one machine apart (they hold escalation leases under this name, D17).
        Handler = new TimeoutHandler(process.Redis, process.Keys, process.Config.Recovery, process.Metrics,
            new RecoveryMetrics(Prometheus.Metrics.DefaultRegistry), $"timeout-handler-{ProcessRuntime.HostId()}-{Environment.ProcessId}");
    }

    /// <summary>The handler its endpoints act on.</summary>
    public TimeoutHandler Handler { get; }

    protected override Task StartRoleAsync(CancellationToken cancellationToken)
    {
        Handler.Start();
        return Task.CompletedTask;
    }

    protected override async Task StopRoleAsync() => await Handler.DisposeAsync().ConfigureAwait(false);
}
