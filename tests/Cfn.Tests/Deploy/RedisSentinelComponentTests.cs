using System.Diagnostics;

namespace Cfn.Tests.Deploy;

/// <summary>
/// The redis-sentinel component's init script, run as shipped for three pods by scripts/check-redis-sentinel.sh, with the
/// real redis-server and Sentinel it configures (loopback addresses and a private /etc/hosts stand in for the pods'
/// names): a new cluster, a SENTINEL FAILOVER, and the old primary's pod restarted as a replica of the new one.
/// </summary>
public sealed class RedisSentinelComponentTests
{
    [Fact]
    public async Task ConfigureScript_NewClusterFailoverAndRestartedOldPrimary_ReplicatesTheCurrentPrimary()
    {
        var start = new ProcessStartInfo("bash")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = Infrastructure.Repository.Root,
        };
        start.ArgumentList.Add("scripts/check-redis-sentinel.sh");
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using (var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3)))
        {
            try
            {
                await process.WaitForExitAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
                process.Kill(entireProcessTree: true);
                throw new TimeoutException("scripts/check-redis-sentinel.sh did not finish within 3 minutes");
            }
        }

        var output = await stdout + await stderr;
        Assert.True(process.ExitCode == 0, $"scripts/check-redis-sentinel.sh exited {process.ExitCode}:\n{output}");
        Assert.Contains("redis-0 redis.conf: no replicaof (primary)", output, StringComparison.Ordinal);
        Assert.Contains("redis-1 redis.conf: replicaof redis-0.redis-headless.redis.svc.cluster.local 6379", output, StringComparison.Ordinal);
        Assert.Contains("new cluster: roles master slave slave", output, StringComparison.Ordinal);
        Assert.Contains("SENTINEL FAILOVER: new primary redis-", output, StringComparison.Ordinal);
        Assert.Matches(@"restarted redis-0: role slave of redis-[12]\.", output);
        Assert.Contains("sentinel check passed", output, StringComparison.Ordinal);
    }
}
