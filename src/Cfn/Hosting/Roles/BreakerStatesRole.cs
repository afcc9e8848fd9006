using Cfn.Coordination.Resilience;

namespace Cfn.Hosting;

/// <summary>Publishes this process's circuit-breaker states for <c>cfn status</c>; the first role started and the last stopped.</summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "the role's stop disposes it: the host stops a role once, at the end of its life")]
internal sealed class BreakerStatesRole(ProcessRuntime process) : RoleService(process)
{
    private BreakerStatePublisher? _publisher;

    protected override Task StartRoleAsync(CancellationToken cancellationToken)
    {
        var id = ProcessRuntime.ProcessId;
        _publisher = new BreakerStatePublisher(Process.Breakers, Process.Redis.Database, id[..Math.Min(id.Length, 64)], Process.Plan.Roles,
            logger: Process.Loggers.CreateLogger<BreakerStatePublisher>(), loops: Process.Loops);
        _publisher.Start();
        return Task.CompletedTask;
    }

    protected override async Task StopRoleAsync()
    {
        if (_publisher is not null)
        {
            await _publisher.DisposeAsync().ConfigureAwait(false);
        }
    }
}
