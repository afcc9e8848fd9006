using Cfn.Coordination.Wakeups;

namespace Cfn.Coordination.Tests.Wakeups;

/// <summary>
/// The auto-reset event every ACK wait and inbox read sleeps on: a set is never lost (it wakes the pending wait, or the
/// next one), several sets wake one wait once, and a cancelled or timed-out wait ends false without eating a later set.
/// </summary>
public sealed class AsyncSignalUnitTests
{
    [Fact]
    public async Task Set_BeforeTheWait_NextWaitReturnsTrueAtOnceAndOnlyOnce()
    {
        using var signal = new AsyncSignal();
        signal.Set();
        signal.Set();

        Assert.True(await signal.WaitAsync(CancellationToken.None));
        using var cancel = new CancellationTokenSource();
        var second = signal.WaitAsync(cancel.Token);
        Assert.False(second.IsCompleted);
        await cancel.CancelAsync();
        Assert.False(await second);
    }

    [Fact]
    public async Task Set_WhileWaiting_WakesTheWaitWithTrue()
    {
        using var signal = new AsyncSignal();
        var waiting = signal.WaitAsync(TimeSpan.FromMinutes(5), CancellationToken.None);
        Assert.False(waiting.IsCompleted);

        signal.Set();

        Assert.True(await waiting);
    }

    [Fact]
    public async Task Set_TwoWaitsPending_EachSetWakesOneInOrder()
    {
        using var signal = new AsyncSignal();
        var first = signal.WaitAsync(CancellationToken.None);
        var second = signal.WaitAsync(CancellationToken.None);

        signal.Set();
        Assert.True(await first);
        Assert.False(second.IsCompleted);
        signal.Set();
        Assert.True(await second);
    }

    [Fact]
    public async Task Cancelled_WaitEndsFalse_ALaterSetIsKeptForTheNextWait()
    {
        using var signal = new AsyncSignal();
        using var cancel = new CancellationTokenSource();
        var waiting = signal.WaitAsync(cancel.Token);

        await cancel.CancelAsync();
        Assert.False(await waiting);
        signal.Set();

        Assert.True(await signal.WaitAsync(TimeSpan.Zero, CancellationToken.None));
    }

    [Fact]
    public async Task AlreadyCancelledToken_SetPending_ReturnsFalseAndKeepsTheSet()
    {
        using var signal = new AsyncSignal();
        signal.Set();

        Assert.False(await signal.WaitAsync(new CancellationToken(canceled: true)));
        Assert.True(await signal.WaitAsync(TimeSpan.Zero, CancellationToken.None));
    }

    [Fact]
    public async Task TimedOut_WaitEndsFalse_ALaterSetIsKeptForTheNextWait()
    {
        using var signal = new AsyncSignal();

        Assert.False(await signal.WaitAsync(TimeSpan.FromMilliseconds(1), CancellationToken.None));
        signal.Set();

        Assert.True(await signal.WaitAsync(TimeSpan.FromMilliseconds(1), CancellationToken.None));
    }

    [Fact]
    public async Task SetsRacingCancellations_NoSetIsLost()
    {
        using var signal = new AsyncSignal();
        for (var i = 0; i < 2_000; i++)
        {
            using var cancel = new CancellationTokenSource();
            var waiting = signal.WaitAsync(cancel.Token);
            var setting = Task.Run(signal.Set);
            var cancelling = Task.Run(cancel.Cancel);
            await Task.WhenAll(setting, cancelling);

            // Either the wait took the set (true), or it was cancelled first and the set waits for the next wait.
            if (!await waiting)
            {
                Assert.True(await signal.WaitAsync(TimeSpan.Zero, CancellationToken.None), $"set lost in round {i}");
            }
        }
    }

    [Fact]
    public async Task NegativeTimeout_Throws_AndTheSignalStillWorks()
    {
        using var signal = new AsyncSignal();

        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => signal.WaitAsync(TimeSpan.FromSeconds(-2), CancellationToken.None));
        var waiting = signal.WaitAsync(CancellationToken.None);
        signal.Set();
        Assert.True(await waiting);
    }

    [Fact]
    public async Task Disposed_SetIsIgnoredAndAWaitThrows()
    {
        var signal = new AsyncSignal();
        signal.Dispose();

        signal.Set();

        await Assert.ThrowsAsync<ObjectDisposedException>(() => signal.WaitAsync(CancellationToken.None));
    }
}
