using Microsoft.Extensions.Logging;

namespace Cfn.Coordination.Background;

/// <summary>The periodic loop every timer-driven background job runs on: one guarded pass per tick, reported to its handle.</summary>
public static class BackgroundLoop
{
    /// <summary>
    /// Runs <paramref name="pass"/> every <paramref name="period"/> (non-overlapping) until <paramref name="stopping"/>
    /// fires; with <paramref name="passAtOnce"/> the first pass runs before the first tick. A pass that throws is logged
    /// and counted and the next one runs as usual; the loop then leaves <paramref name="handle"/>'s registry (stopped on
    /// purpose) or, if anything ends it otherwise, stays listed as stopped.
    /// </summary>
    public static async Task RunPeriodicAsync(LoopHandle handle, TimeSpan period, TimeProvider time, Func<Task> pass, ILogger logger,
        CancellationToken stopping, bool passAtOnce = false)
    {
        ArgumentNullException.ThrowIfNull(handle);
        string? reason = null;
        try
        {
            using var timer = new PeriodicTimer(period, time);
            if (passAtOnce)
            {
                await handle.RunPassAsync(pass, logger, stopping).ConfigureAwait(false);
            }

            while (await timer.WaitForNextTickAsync(stopping).ConfigureAwait(false))
            {
                await handle.RunPassAsync(pass, logger, stopping).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
            // stopping
        }
#pragma warning disable CA1031 // only the timer itself can get here; the handle reports the loop stopped
        catch (Exception e)
#pragma warning restore CA1031
        {
            reason = $"{e.GetType().Name}: {e.Message}";
        }
        finally
        {
            handle.Ended(stopping.IsCancellationRequested, logger, reason);
        }
    }
}
