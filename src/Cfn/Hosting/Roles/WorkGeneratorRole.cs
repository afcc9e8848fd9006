using Cfn.Coordination;
using Cfn.Coordination.Loop;

namespace Cfn.Hosting;

/// <summary><c>cfn up</c>'s demo: creates its swarms and keeps their queues busy so every endpoint and metric shows live data.</summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "the role's stop disposes it: the host stops a role once, at the end of its life")]
internal sealed class WorkGeneratorRole(ProcessRuntime process, SwarmManagerRole managerRole) : RoleService(process)
{
    private readonly CancellationTokenSource _stop = new();
    private Task? _generating;

    protected override async Task StartRoleAsync(CancellationToken cancellationToken)
    {
        var up = Process.Plan.Up ?? throw new InvalidOperationException("the work generator runs in `cfn up` only");
        var swarms = Enumerable.Range(1, up.Swarms).Select(i => $"swarm-{i}").ToList();
        foreach (var swarm in swarms)
        {
            await managerRole.Manager.InitializeSwarmAsync(swarm, up.CoordinatorsPerSwarm).ConfigureAwait(false);
        }

        var generator = new WorkGenerator(Process.Queue, swarms, logger: Process.Loggers.CreateLogger<WorkGenerator>(), loops: Process.Loops);
        _generating = Task.Run(() => generator.RunAsync(_stop.Token), CancellationToken.None);
    }

    protected override async Task StopRoleAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        if (_generating is not null)
        {
            await _generating.ConfigureAwait(false);
        }

        _stop.Dispose();
    }
}
