namespace Cfn.Hosting;

/// <summary>
/// The graceful stop of every coordinator and validator running here, before their host and the managers stop:
/// coordinators first (their loops give back their items, then they delete their own keys), then validators; in
/// parallel so the stop budget is enough. Starts nothing.
/// </summary>
internal sealed class LocalCoordinatorsRole(ProcessRuntime process) : RoleService(process)
{
    protected override Task StartRoleAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    protected override async Task StopRoleAsync()
    {
        var local = Process.Local;
        await Task.WhenAll(local.All.Where(r => r.Role == "coordinator").Select(r => r.DisposeAsync().AsTask())).ConfigureAwait(false);
        await Task.WhenAll(local.All.Select(r => r.DisposeAsync().AsTask())).ConfigureAwait(false);
    }
}
