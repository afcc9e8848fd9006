using Cfn.Coordination;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Swarms;

namespace Cfn.Hosting;

/// <summary>
/// The coordinator role: a coordinator host the swarm manager starts replacements and scale-ups on, the process's own
/// coordinator (<c>COORDINATOR_ID</c>; not in <c>cfn up</c>, whose coordinators are all spawned), and the parent side of
/// escalation. Its coordinators' loops are stopped by <see cref="LocalCoordinatorsRole"/>, before this role stops.
/// </summary>
internal sealed class CoordinatorRole(ProcessRuntime process) : RoleService(process)
{
    /// <summary>How long the start of the process's own coordinator is retried while Redis fails.</summary>
    private static readonly TimeSpan StartPatience = TimeSpan.FromSeconds(30);

    private CoordinatorHost? _host;
    private ReplacementListener? _replacements;

    protected override async Task StartRoleAsync(CancellationToken cancellationToken)
    {
        var process = Process;
        // Every coordinator process is also a host; `cfn up` makes room for all its coordinators on it.
        var hostOptions = process.Plan.Up is { } shape
            ? process.Config.Swarms with { HostCapacity = Math.Max(process.Config.Swarms.HostCapacity, (shape.Swarms * shape.CoordinatorsPerSwarm) + 8) }
            : process.Config.Swarms;
        CoordinatorHost? host = null;
        host = new CoordinatorHost(process.Redis, process.Config.CoordinatorId ?? ProcessRuntime.HostId(), async (id, swarm, cancellation) =>
            Start(await Coordinator.StartAsync(process.Pool.Rent(), process.Keys, id, swarm, process.Metrics).ConfigureAwait(false),
                runtime => _ = host!.StopAsync(runtime.Coordinator.Id)), hostOptions);
        await host.StartAsync().ConfigureAwait(false);
        _host = host;
        if (process.Plan.Up is null)
        {
            var id = process.Config.CoordinatorId ?? ProcessRuntime.HostId();
            process.Local.PrimaryId = id;
            var swarm = process.Config.SwarmId ?? "default";
            var primary = Start(await RetryWhileRedisFailsAsync(() => Coordinator.StartAsync(process.Pool.Rent(), process.Keys, id, swarm, process.Metrics),
                    id, cancellationToken).ConfigureAwait(false),
                process.StopProcessSuperseded);
            await host.RegisterRunningAsync(id, swarm, primary).ConfigureAwait(false);
        }

        // The parent-coordinator side of escalation: replacements in our swarms are acknowledged, so the escalation sees the parent side answer.
        var replacements = new ReplacementListener(process.Redis, swarm =>
            [.. process.Local.All.Where(r => r.Role == "coordinator" && r.Coordinator.SwarmId == swarm).Select(r => r.Coordinator.Id)]);
        _replacements = replacements;
        await replacements.StartAsync().ConfigureAwait(false);
    }

    protected override async Task StopRoleAsync()
    {
        if (_replacements is not null)
        {
            await _replacements.DisposeAsync().ConfigureAwait(false);
        }

        if (_host is not null)
        {
            await _host.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Starts the process's own coordinator again while Redis fails part-way through the start (a restart or failover
    /// of Redis just then; seen in the chaos run): the pod would otherwise exit 1 and be restarted for it. A start that
    /// got as far as its epoch is simply superseded by the next one. Gives up after <see cref="StartPatience"/>.
    /// </summary>
    private async Task<Coordinator> RetryWhileRedisFailsAsync(Func<Task<Coordinator>> start, string id, CancellationToken cancellationToken)
    {
        var started = Process.Redis.Time.GetTimestamp();
        while (true)
        {
            try
            {
                return await start().ConfigureAwait(false);
            }
            catch (Exception e) when (RedisErrors.IsTransient(e) && Process.Redis.Time.GetElapsedTime(started) < StartPatience)
            {
                Process.Log.LogWarning("Redis failed while starting coordinator={CoordinatorId}; starting again: {Error}", id, RedisErrors.FirstClause(e));
                await Task.Delay(TimeSpan.FromMilliseconds(500), cancellationToken).ConfigureAwait(false);
            }
        }
    }

    private CoordinatorRuntime Start(Coordinator c, Action<CoordinatorRuntime> onSuperseded)
    {
        Process.Hooks.Attach(c);
        // A dead validator's replacement is a validator (it answers the validations handed over to it).
        return c.SwarmId == Coordinator.ValidatorSwarmId ? Process.StartValidator(c, onSuperseded) : Process.StartLoop(c, onSuperseded);
    }
}
