namespace Cfn.Hosting;

/// <summary>
/// One part of a cfn process run by the host. Roles start in the host's <c>Starting</c> phase, in the order
/// <see cref="ProcessServices.AddRoles"/> registers them and before Kestrel serves (so <c>/health/ready</c> never answers
/// for a role that has not started), and stop in its <c>Stopping</c> phase in the reverse order, before Kestrel stops:
/// what depends on a part stops first. Each stop runs within what is left of <see cref="ProcessRuntime.StopBudget"/>.
/// A role whose start threw part-way is stopped too (its stop copes with what did start); one never started is not.
/// </summary>
internal abstract class RoleService(ProcessRuntime process) : IHostedLifecycleService
{
    private int _started;

    protected ProcessRuntime Process { get; } = process;

    public async Task StartingAsync(CancellationToken cancellationToken)
    {
        Volatile.Write(ref _started, 1);
        await StartRoleAsync(cancellationToken).ConfigureAwait(false);
    }

    public Task StoppingAsync(CancellationToken cancellationToken) =>
        Interlocked.Exchange(ref _started, 0) == 1 ? Process.StopWithinBudgetAsync(StopRoleAsync, cancellationToken) : Task.CompletedTask;

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    protected abstract Task StartRoleAsync(CancellationToken cancellationToken);

    /// <summary>The graceful stop; it must cope with a start that threw part-way.</summary>
    protected abstract Task StopRoleAsync();
}
