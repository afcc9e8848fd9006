using System.Globalization;
using Cfn.Coordination.Background;
using Cfn.Coordination.Tests.Infrastructure;
using Microsoft.Extensions.Logging.Testing;
using Microsoft.Extensions.Time.Testing;

namespace Cfn.Coordination.Tests.Background;

/// <summary>
/// The one background-loop base on a clock the test moves: a pass per interval, a throwing pass logged and counted while
/// the loop goes on, a stop that waits for the pass in progress (and a second stop that is a no-op), a stalled loop that
/// readiness' rule names stale after three intervals, and an event-driven loop woken early and ended by its own condition.
/// </summary>
public sealed class BackgroundLoopUnitTests
{
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task FixedRate_ClockMovesThreeIntervals_ThreePassesAndLastPassTime()
    {
        var (time, loops) = Clock();
        var passes = 0;
        await using var loop = new BackgroundLoop(loops, LoopNames.BatchCleanup, null, Interval, _ =>
        {
            Interlocked.Increment(ref passes);
            return Task.CompletedTask;
        }, new FakeLogger(), time);
        loop.Start();
        loop.Start(); // a second start runs nothing more

        for (var i = 1; i <= 3; i++)
        {
            time.Advance(Interval);
            var expected = i;
            Assert.True(await EventuallyAsync(() => Task.FromResult(loop.Passes == expected), Wait));
        }

        Assert.Equal(3, Volatile.Read(ref passes));
        Assert.Equal(time.GetUtcNow(), loop.LastPassAt);
        Assert.True(loop.IsRunning);
        Assert.Empty(loops.Unhealthy());
    }

    [Fact]
    public async Task Pass_Throws_LoggedCountedAndLoopStaysAlive()
    {
        var (time, loops) = Clock();
        var logger = new FakeLogger();
        var calls = 0;
        await using var loop = new BackgroundLoop(loops, LoopNames.SwarmManager, null, Interval, _ =>
            Interlocked.Increment(ref calls) == 1 ? throw new InvalidOperationException("boom") : Task.CompletedTask, logger, time)
        {
            PassAtStart = true,
        };
        loop.Start();

        Assert.True(await EventuallyAsync(() => Task.FromResult(loops.Errors.WithLabels(LoopNames.SwarmManager, "pass").Value == 1), Wait));
        Assert.Equal(0, loop.Passes);
        Assert.Null(loop.LastPassAt);
        Assert.Contains(logger.Collector.GetSnapshot(), r =>
            r.Message.StartsWith("Background loop pass failed loop=swarm_manager", StringComparison.Ordinal) && r.Message.Contains("InvalidOperationException: boom", StringComparison.Ordinal));

        time.Advance(Interval);
        Assert.True(await EventuallyAsync(() => Task.FromResult(loop.Passes == 1), Wait));
        Assert.True(loop.IsRunning);
        Assert.Equal(1, loops.Errors.WithLabels(LoopNames.SwarmManager, "pass").Value);
        var status = Assert.Single(loops.Snapshot());
        Assert.Equal((LoopStatus.Running, "InvalidOperationException: boom"), (status.State, status.LastError));
    }

    [Fact]
    public async Task StopAsync_PassInProgress_WaitsForItAndLeavesTheRegistry()
    {
        var (time, loops) = Clock();
        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var sawStop = false;
        var loop = new BackgroundLoop(loops, LoopNames.CoordinatorHost, "host-a", Interval, async pass =>
        {
            entered.TrySetResult();
            await release.Task;
            sawStop = pass.Stopping.IsCancellationRequested; // the pass can tell it is the last one
        }, new FakeLogger(), time)
        {
            PassAtStart = true,
            Schedule = LoopSchedule.AfterPass,
        };
        loop.Start();
        await entered.Task.WaitAsync(Wait);

        var stopping = loop.StopAsync();
        // A negative check: the stop may not finish while the pass runs, however long we give it; nothing marks "not finished".
        await Task.Delay(50);
        Assert.False(stopping.IsCompleted);
        Assert.True(loop.IsRunning);

        release.SetResult();
        await stopping.WaitAsync(Wait);
        Assert.True(sawStop);
        Assert.False(loop.IsRunning);
        Assert.Equal(1, loop.Passes);
        Assert.Empty(loops.Snapshot()); // a stop on purpose is no failure

        await loop.StopAsync(); // idempotent
        await loop.DisposeAsync();
        await loop.DisposeAsync();
        loop.Start(); // a stopped loop does not start again
        Assert.False(loop.IsRunning);
    }

    [Fact]
    public async Task Pass_Stalls_ReadinessNamesTheLoopStaleAfterThreeIntervals()
    {
        var (time, loops) = Clock();
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var loop = new BackgroundLoop(loops, LoopNames.Heartbeat, "coordinator-s", Interval, async _ =>
        {
            if (Interlocked.CompareExchange(ref _stallOnce, 1, 0) == 0)
            {
                await release.Task; // a Redis call that never answers
            }
        }, new FakeLogger(), time);
        loop.Start();

        time.Advance(Interval); // the first pass starts and hangs
        time.Advance(Interval * 2);
        Assert.Empty(loops.Unhealthy()); // three intervals since it started, not more: not stale yet
        time.Advance(TimeSpan.FromSeconds(1));
        var stale = Assert.Single(loops.Unhealthy());
        Assert.Equal(("heartbeat/coordinator-s", LoopStatus.Stale), (stale.Name, stale.State));

        release.SetResult(); // it answers at last: alive again
        Assert.True(await EventuallyAsync(() => Task.FromResult(loops.Unhealthy().Count == 0), Wait));
        Assert.True(loop.Passes >= 1);
    }

    [Fact]
    public async Task AfterPass_WakeCutsTheSleep_EndWhenEndsItOnPurpose()
    {
        var (time, loops) = Clock();
        var woken = new List<bool>();
        var end = false;
        await using var loop = new BackgroundLoop(loops, LoopNames.BreakerStates, null, Interval, pass =>
        {
            lock (woken)
            {
                woken.Add(pass.Woken);
            }

            return Task.CompletedTask;
        }, new FakeLogger(), time)
        {
            Schedule = LoopSchedule.AfterPass,
            PassAtStart = true,
            EndWhen = () => Volatile.Read(ref end),
        };
        loop.Start();
        Assert.True(await EventuallyAsync(() => Task.FromResult(loop.Passes == 1), Wait));

        loop.Wake(); // an event: no need to wait for the interval
        Assert.True(await EventuallyAsync(() => Task.FromResult(loop.Passes == 2), Wait));

        Volatile.Write(ref end, true);
        // The interval passes (moved until the loop is asleep to see it): one more pass, after which it ends on its own terms.
        Assert.True(await EventuallyAsync(() =>
        {
            time.Advance(Interval);
            return Task.FromResult(loop.Completion.IsCompleted);
        }, Wait));
        Assert.Equal(3, loop.Passes);
        lock (woken)
        {
            Assert.Equal([true, true, false], woken);
        }

        Assert.Empty(loops.Snapshot()); // ended on purpose, so readiness does not fail
    }

    [Fact]
    public void Constructor_UnknownLoopName_RefusedNamingTheRule()
    {
        var (time, loops) = Clock();
        var e = Assert.Throws<ArgumentException>(() => new BackgroundLoop(loops, "no_such_loop", null, Interval, _ => Task.CompletedTask, new FakeLogger(), time));
        Assert.Equal("name", e.ParamName);
    }

    private int _stallOnce;

    private static (FakeTimeProvider Time, LoopHealth Loops) Clock()
    {
        var time = new FakeTimeProvider(DateTimeOffset.Parse("2026-12-01T00:00:00Z", CultureInfo.InvariantCulture));
        return (time, LoopHealth.Detached(time));
    }
}
