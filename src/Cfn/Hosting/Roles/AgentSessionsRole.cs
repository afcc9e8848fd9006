using Cfn.Agents;

namespace Cfn.Hosting;

/// <summary>
/// The HTTP agent sessions of a process that runs the swarm manager (SPEC D21): their lease watchdog runs while the
/// process does, and a graceful stop closes every session gracefully (before the swarm manager stops).
/// </summary>
internal sealed class AgentSessionsRole : RoleService
{
    public AgentSessionsRole(ProcessRuntime process)
        : base(process)
    {
        Sessions = new AgentSessions(process.Redis, process.Keys, process.Metrics, process.Loops, process.Config.AgentSessions,
            process.Loggers.CreateLogger<AgentSessions>());
    }

    /// <summary>The sessions its endpoints act on.</summary>
    public AgentSessions Sessions { get; }

    protected override Task StartRoleAsync(CancellationToken cancellationToken)
    {
        Sessions.Start();
        return Task.CompletedTask;
    }

    protected override async Task StopRoleAsync() => await Sessions.DisposeAsync().ConfigureAwait(false);
}
