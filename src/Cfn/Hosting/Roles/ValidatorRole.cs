using Cfn.Coordination;
using Cfn.Coordination.Redis;

namespace Cfn.Hosting;

/// <summary>The validator role: one validator (<c>cfn up</c>: several), stopped with the other local instances by <see cref="LocalCoordinatorsRole"/>.</summary>
internal sealed class ValidatorRole(ProcessRuntime process) : RoleService(process)
{
    protected override async Task StartRoleAsync(CancellationToken cancellationToken)
    {
        var process = Process;
        var plan = process.Plan;
        var count = plan.Up?.Validators ?? 1;
        for (var i = 0; i < count; i++)
        {
            // A validator replica is named after its pod (Deployment `validator`, SPEC §5 #23); in `cfn up`, validator-N.
            var id = plan.Up is not null ? $"validator-{i}" : plan.Coordinator ? "validator-" + ProcessRuntime.HostId() : process.Config.CoordinatorId ?? ProcessRuntime.HostId();
            var validator = await Coordinator.StartAsync(process.Pool.Rent(), process.Keys, id, Coordinator.ValidatorSwarmId, process.Metrics).ConfigureAwait(false);
            process.Hooks.Attach(validator);
            process.StartValidator(validator, plan.Up is null ? process.StopProcessSuperseded : runtime => _ = runtime.DisposeAsync().AsTask());
        }
    }

    protected override Task StopRoleAsync() => Task.CompletedTask;
}
