using Cfn.Coordination.Background;
using Microsoft.Extensions.Time.Testing;

namespace Cfn.Coordination.Tests.Infrastructure;

/// <summary>Moves a <see cref="FakeTimeProvider"/> that background loops run on, one step at a time, waiting for what each step makes due.</summary>
internal static class FakeClock
{
    /// <summary>
    /// Moves <paramref name="time"/> through <paramref name="total"/> in steps of <paramref name="step"/>. After each step it
    /// waits until every loop named in <paramref name="due"/> has completed the passes its own interval makes due by then
    /// (one of them, ticking every step, is the witness that the step has been acted on), so a loop that should not run
    /// has had each tick's chance to, and one that should has done so, without a fixed sleep.
    /// </summary>
    public static async Task AdvanceAsync(FakeTimeProvider time, LoopHealth loops, TimeSpan total, TimeSpan step, params string[] due)
    {
        for (var elapsed = step; elapsed <= total; elapsed += step)
        {
            time.Advance(step);
            var now = elapsed;
            await EventuallyAsync(() => loops.Snapshot().All(l =>
                    !due.Contains(l.Loop) || l.Passes >= (long)(now / TimeSpan.FromSeconds(l.IntervalSeconds ?? double.MaxValue))),
                $"the loops did not act on the clock at {now.TotalMilliseconds} ms: " +
                string.Join(", ", loops.Snapshot().Select(l => $"{l.Name}={l.Passes}")));
        }
    }
}
