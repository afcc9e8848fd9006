using System.Collections;
using System.ComponentModel.DataAnnotations;
using Cfn.Coordination.Resilience;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;

namespace Cfn.Coordination.Tests.Resilience;

/// <summary>The circuit breaker (SPEC §2.14, D10, L20, W55–W59, §7.12, §7.14 item 13), on a fake clock.</summary>
public sealed class CircuitBreakerUnitTests
{
    private static readonly DateTimeOffset Start = new(2025, 10, 10, 12, 0, 0, TimeSpan.Zero);

    // ---------------------------------------------------------------- closed

    [Fact]
    public async Task ExecuteAsync_FailuresBelowThreshold_StaysClosed()
    {
        var w = new World();

        await FailAsync(w.Breaker);
        await FailAsync(w.Breaker);

        Assert.Equal(CircuitState.Closed, w.Breaker.State);
        Assert.Equal(2, w.Breaker.GetSnapshot().ConsecutiveFailures);
        Assert.Equal(1, await w.Breaker.ExecuteAsync(_ => Task.FromResult(1)));
    }

    [Fact]
    public async Task ExecuteAsync_SuccessBetweenFailures_ResetsConsecutiveCount()
    {
        var w = new World();

        await FailAsync(w.Breaker);
        await FailAsync(w.Breaker);
        await SucceedAsync(w.Breaker);
        await FailAsync(w.Breaker);
        await FailAsync(w.Breaker);

        Assert.Equal(CircuitState.Closed, w.Breaker.State);
        Assert.Equal(2, w.Breaker.GetSnapshot().ConsecutiveFailures);
    }

    [Fact]
    public async Task ExecuteAsync_FailuresAtThreshold_OpensAndRejectsWithoutRunning()
    {
        var w = new World();
        await OpenAsync(w.Breaker);

        Assert.Equal(CircuitState.Open, w.Breaker.State);
        var ran = false;
        var ex = await Assert.ThrowsAsync<CircuitOpenException>(() => w.Breaker.ExecuteAsync(_ =>
        {
            ran = true;
            return Task.FromResult(1);
        }));

        Assert.False(ran);
        Assert.Equal("test", ex.Name);
        Assert.Equal(CircuitState.Open, ex.State);
        Assert.Equal(Start + TimeSpan.FromSeconds(1), ex.RetryAt);
        Assert.Equal("Circuit breaker 'test' is OPEN. Next attempt at 2025-10-10T12:00:01.000Z", ex.Message);
        var snapshot = w.Breaker.GetSnapshot();
        Assert.Equal(1, snapshot.RejectedCalls);
        Assert.Equal(4, snapshot.TotalCalls);
        Assert.Equal(3, snapshot.Failures);
    }

    [Fact]
    public async Task ExecuteAsync_CustomFailureThreshold_OpensAtThatCount()
    {
        var w = new World(o => o.FailureThreshold = 5);

        for (var i = 0; i < 4; i++)
        {
            await FailAsync(w.Breaker);
        }

        Assert.Equal(CircuitState.Closed, w.Breaker.State);
        await FailAsync(w.Breaker);
        Assert.Equal(CircuitState.Open, w.Breaker.State);
    }

    // ---------------------------------------------------------------- open delays

    [Fact]
    public async Task State_FirstOpen_WaitsExactlyFirstDelayNotFourSeconds()
    {
        // W56: TS waits delays[failureThreshold - 1] = 4 s on the first open.
        var w = new World();
        await OpenAsync(w.Breaker);

        w.Time.Advance(TimeSpan.FromMilliseconds(999));
        Assert.Equal(CircuitState.Open, w.Breaker.State);
        await Assert.ThrowsAsync<CircuitOpenException>(() => w.Breaker.ExecuteAsync(_ => Task.FromResult(1)));

        w.Time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal(CircuitState.HalfOpen, w.Breaker.State);
        Assert.Equal(1, await w.Breaker.ExecuteAsync(_ => Task.FromResult(1)));
    }

    [Fact]
    public async Task State_AfterDelay_BecomesHalfOpenLazilyOnRead()
    {
        var w = new World();
        await OpenAsync(w.Breaker);
        var events = new List<CircuitStateChangedEventArgs>();
        w.Breaker.StateChanged += (_, e) => events.Add(e);

        w.Time.Advance(TimeSpan.FromSeconds(5));
        Assert.Empty(events); // nothing happens by itself: no timer is involved

        Assert.Equal(CircuitState.HalfOpen, w.Breaker.State);
        var change = Assert.Single(events);
        Assert.Equal(CircuitState.Open, change.From);
        Assert.Equal(CircuitState.HalfOpen, change.To);
        Assert.Equal(Start + TimeSpan.FromSeconds(5), change.At);
    }

    [Fact]
    public async Task ExecuteAsync_AfterDelay_CallItselfMovesToHalfOpen()
    {
        var w = new World();
        await OpenAsync(w.Breaker);
        w.Time.Advance(TimeSpan.FromSeconds(1));

        Assert.Equal(1, await w.Breaker.ExecuteAsync(_ => Task.FromResult(1)));

        var snapshot = w.Breaker.GetSnapshot();
        Assert.Equal(CircuitState.HalfOpen, snapshot.State);
        Assert.Equal(1, snapshot.TrialSuccesses);
    }

    [Fact]
    public async Task ExecuteAsync_FailureInHalfOpen_ReopensWithNextDelayOfTwoSeconds()
    {
        var w = new World();
        await OpenAsync(w.Breaker);
        w.Time.Advance(TimeSpan.FromSeconds(1));

        await FailAsync(w.Breaker);

        var snapshot = w.Breaker.GetSnapshot();
        Assert.Equal(CircuitState.Open, snapshot.State);
        Assert.Equal(2, snapshot.ConsecutiveOpens);
        Assert.Equal(w.Time.GetUtcNow() + TimeSpan.FromSeconds(2), snapshot.RetryAt);
        w.Time.Advance(TimeSpan.FromMilliseconds(1999));
        Assert.Equal(CircuitState.Open, w.Breaker.State);
        w.Time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal(CircuitState.HalfOpen, w.Breaker.State);
    }

    [Fact]
    public async Task ExecuteAsync_RepeatedReopens_DelaysFollowScheduleAndCapAtEightSeconds()
    {
        var w = new World();
        var delays = new List<TimeSpan>();
        w.Breaker.StateChanged += (_, e) =>
        {
            if (e.To == CircuitState.Open)
            {
                delays.Add(e.RetryAt!.Value - e.At);
            }
        };

        await OpenAsync(w.Breaker);
        for (var i = 0; i < 5; i++)
        {
            w.Time.Advance(delays[^1]);
            Assert.Equal(CircuitState.HalfOpen, w.Breaker.State);
            await FailAsync(w.Breaker);
        }

        Assert.Equal([1, 2, 4, 8, 8, 8], delays.Select(d => d.TotalSeconds));
        Assert.Contains(w.Messages, m => m.Contains("delayMs=8000", StringComparison.Ordinal));
    }

    [Fact]
    public async Task ExecuteAsync_ClosingAfterReopens_RestartsScheduleAtFirstDelay()
    {
        var w = new World();
        await OpenAsync(w.Breaker);
        w.Time.Advance(TimeSpan.FromSeconds(1));
        await FailAsync(w.Breaker); // second open: 2 s
        w.Time.Advance(TimeSpan.FromSeconds(2));
        await SucceedAsync(w.Breaker);
        await SucceedAsync(w.Breaker);
        Assert.Equal(CircuitState.Closed, w.Breaker.State);

        await OpenAsync(w.Breaker);

        var snapshot = w.Breaker.GetSnapshot();
        Assert.Equal(1, snapshot.ConsecutiveOpens);
        Assert.Equal(w.Time.GetUtcNow() + TimeSpan.FromSeconds(1), snapshot.RetryAt);
    }

    [Fact]
    public async Task ExecuteAsync_CooldownSet_OverridesDelaySchedule()
    {
        var w = new World(o => o.Cooldown = TimeSpan.FromMilliseconds(500));
        await OpenAsync(w.Breaker);

        w.Time.Advance(TimeSpan.FromMilliseconds(499));
        Assert.Equal(CircuitState.Open, w.Breaker.State);
        w.Time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal(CircuitState.HalfOpen, w.Breaker.State);

        await FailAsync(w.Breaker); // a re-open also waits the cooldown, not Delays[1]
        Assert.Equal(w.Time.GetUtcNow() + TimeSpan.FromMilliseconds(500), w.Breaker.GetSnapshot().RetryAt);
        Assert.Contains(w.Messages, m => m.Contains("delayMs=500 ", StringComparison.Ordinal));
    }

    [Fact]
    public async Task ExecuteAsync_CustomDelays_FirstOpenUsesFirstOfThem()
    {
        var w = new World(o => o.Delays = [TimeSpan.FromMilliseconds(250), TimeSpan.FromSeconds(60)]);
        await OpenAsync(w.Breaker);

        w.Time.Advance(TimeSpan.FromMilliseconds(250));

        Assert.Equal(CircuitState.HalfOpen, w.Breaker.State);
    }

    // ---------------------------------------------------------------- half-open

    [Fact]
    public async Task ExecuteAsync_HalfOpenInFlightLimit_RejectsNextUntilASlotFrees()
    {
        // W57: the limit counts trial calls in flight, not completed successes.
        var w = new World(o => o.Timeout = null);
        await OpenAsync(w.Breaker);
        w.Time.Advance(TimeSpan.FromSeconds(1));

        var gates = Enumerable.Range(0, 3).Select(_ => new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously)).ToList();
        var calls = gates.Select(g => w.Breaker.ExecuteAsync(_ => g.Task)).ToList();
        Assert.Equal(3, w.Breaker.GetSnapshot().TrialsInFlight);

        var ran = false;
        var ex = await Assert.ThrowsAsync<CircuitOpenException>(() => w.Breaker.ExecuteAsync(_ =>
        {
            ran = true;
            return Task.FromResult(0);
        }));
        Assert.False(ran);
        Assert.Equal(CircuitState.HalfOpen, ex.State);
        Assert.Null(ex.RetryAt);

        gates[0].SetResult(1);
        Assert.Equal(1, await calls[0]);
        Assert.Equal(CircuitState.HalfOpen, w.Breaker.State); // one success of two needed

        var gate4 = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        var call4 = w.Breaker.ExecuteAsync(_ => gate4.Task);
        Assert.Equal(3, w.Breaker.GetSnapshot().TrialsInFlight);
        await Assert.ThrowsAsync<CircuitOpenException>(() => w.Breaker.ExecuteAsync(_ => Task.FromResult(0)));

        gates[1].SetResult(2);
        gates[2].SetResult(3);
        gate4.SetResult(4);
        await Task.WhenAll(calls[1], calls[2], call4);
        Assert.Equal(CircuitState.Closed, w.Breaker.State);
    }

    [Fact]
    public async Task ExecuteAsync_HalfOpenSuccesses_CloseAtSuccessThreshold()
    {
        var w = new World(o => o.SuccessThreshold = 3);
        await OpenAsync(w.Breaker);
        w.Time.Advance(TimeSpan.FromSeconds(1));

        await SucceedAsync(w.Breaker);
        await SucceedAsync(w.Breaker);
        Assert.Equal(CircuitState.HalfOpen, w.Breaker.State);
        await SucceedAsync(w.Breaker);

        var snapshot = w.Breaker.GetSnapshot();
        Assert.Equal(CircuitState.Closed, snapshot.State);
        Assert.Equal(0, snapshot.ConsecutiveOpens);
        Assert.Equal(0, snapshot.ConsecutiveFailures);
        Assert.Null(snapshot.RetryAt);
    }

    [Fact]
    public async Task Lease_TrialEndingAfterCircuitReopened_DoesNotCount()
    {
        var w = new World();
        await OpenAsync(w.Breaker);
        w.Time.Advance(TimeSpan.FromSeconds(1));
        Assert.True(w.Breaker.TryAcquire(out var first));
        Assert.True(w.Breaker.TryAcquire(out var second));
        Assert.True(first.IsTrial);

        first.RecordFailure(new IOException("down"));
        second.RecordSuccess();

        var snapshot = w.Breaker.GetSnapshot();
        Assert.Equal(CircuitState.Open, snapshot.State);
        Assert.Equal(0, snapshot.TrialSuccesses);
        Assert.Equal(0, snapshot.TrialsInFlight);
    }

    [Fact]
    public async Task Lease_DisposedWithoutOutcome_FreesTrialSlotWithoutCounting()
    {
        var w = new World(o => o.HalfOpenLimit = 1);
        await OpenAsync(w.Breaker);
        w.Time.Advance(TimeSpan.FromSeconds(1));

        Assert.True(w.Breaker.TryAcquire(out var lease));
        Assert.False(w.Breaker.TryAcquire(out var rejected));
        Assert.Null(rejected);
        lease.Dispose();
        lease.RecordFailure(); // after completion: ignored

        Assert.True(w.Breaker.TryAcquire(out var next));
        var snapshot = w.Breaker.GetSnapshot();
        Assert.Equal(CircuitState.HalfOpen, snapshot.State);
        Assert.Equal(0, snapshot.TrialSuccesses);
        Assert.Equal(1, snapshot.TrialsInFlight);
        next.Dispose();
    }

    [Fact]
    public void Lease_OutcomesWithoutDelegate_DriveEveryTransition()
    {
        var w = new World();
        for (var i = 0; i < 3; i++)
        {
            Assert.True(w.Breaker.TryAcquire(out var lease));
            using (lease)
            {
                lease.RecordFailure(new IOException("down"));
                lease.RecordSuccess(); // second report on the same lease: ignored
            }
        }

        Assert.Equal(CircuitState.Open, w.Breaker.State);
        Assert.False(w.Breaker.TryAcquire(out _));
        Assert.Throws<CircuitOpenException>(() => w.Breaker.Acquire());

        w.Time.Advance(TimeSpan.FromSeconds(1));
        for (var i = 0; i < 2; i++)
        {
            using var lease = w.Breaker.Acquire();
            lease.RecordSuccess();
        }

        Assert.Equal(CircuitState.Closed, w.Breaker.State);
    }

    [Fact]
    public void RecordFailure_WithoutLease_OpensAtThresholdAndIsIgnoredWhileOpen()
    {
        var w = new World();

        w.Breaker.RecordFailure();
        w.Breaker.RecordFailure(new IOException("x"));
        w.Breaker.RecordSuccess();
        w.Breaker.RecordFailure();
        w.Breaker.RecordFailure();
        Assert.Equal(CircuitState.Closed, w.Breaker.State);
        w.Breaker.RecordFailure();
        Assert.Equal(CircuitState.Open, w.Breaker.State);
        var retryAt = w.Breaker.GetSnapshot().RetryAt;

        w.Time.Advance(TimeSpan.FromMilliseconds(500));
        w.Breaker.RecordFailure();
        w.Breaker.RecordSuccess();

        Assert.Equal(CircuitState.Open, w.Breaker.State);
        Assert.Equal(retryAt, w.Breaker.GetSnapshot().RetryAt);
    }

    // ---------------------------------------------------------------- reset and manual half-open

    [Fact]
    public async Task Reset_WhenOpen_ClosesAndAllowsCalls()
    {
        var w = new World();
        await OpenAsync(w.Breaker);

        w.Breaker.Reset();

        Assert.Equal(CircuitState.Closed, w.Breaker.State);
        await SucceedAsync(w.Breaker);
        Assert.Contains(w.Messages, m => m.Contains("Circuit state transition name=test from=open to=closed", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Reset_WhenClosed_ClearsFailureCount()
    {
        var w = new World();
        await FailAsync(w.Breaker);
        await FailAsync(w.Breaker);

        w.Breaker.Reset();
        await FailAsync(w.Breaker);
        await FailAsync(w.Breaker);

        Assert.Equal(CircuitState.Closed, w.Breaker.State);
    }

    [Fact]
    public async Task MoveToHalfOpenNow_WhenOpen_StartsTrialsWithoutWaiting()
    {
        var w = new World();
        await OpenAsync(w.Breaker);
        w.Time.Advance(TimeSpan.FromSeconds(1));
        await FailAsync(w.Breaker); // now open for 2 s
        w.Time.Advance(TimeSpan.FromSeconds(2));
        await FailAsync(w.Breaker); // and now for 4 s
        Assert.Equal(w.Time.GetUtcNow() + TimeSpan.FromSeconds(4), w.Breaker.GetSnapshot().RetryAt);

        Assert.True(w.Breaker.MoveToHalfOpenNow());

        Assert.Equal(CircuitState.HalfOpen, w.Breaker.State);
        await SucceedAsync(w.Breaker);
        await SucceedAsync(w.Breaker);
        Assert.Equal(CircuitState.Closed, w.Breaker.State);
    }

    [Fact]
    public async Task MoveToHalfOpenNow_WhenClosedOrHalfOpen_ChangesNothing()
    {
        var w = new World();
        Assert.False(w.Breaker.MoveToHalfOpenNow());
        Assert.Equal(CircuitState.Closed, w.Breaker.State);

        await OpenAsync(w.Breaker);
        w.Time.Advance(TimeSpan.FromSeconds(1));
        await SucceedAsync(w.Breaker);
        Assert.False(w.Breaker.MoveToHalfOpenNow());
        Assert.Equal(1, w.Breaker.GetSnapshot().TrialSuccesses); // the half-open period was not restarted
    }

    // ---------------------------------------------------------------- timeouts

    [Fact]
    public async Task ExecuteAsync_Timeout_CancelsActionTokenThrowsAndCountsFailure()
    {
        var w = new World();
        var observedCancellation = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);

        var call = w.Breaker.ExecuteAsync(async token =>
        {
            try
            {
                await Task.Delay(Timeout.InfiniteTimeSpan, token);
                return 1;
            }
            catch (OperationCanceledException)
            {
                observedCancellation.SetResult(true);
                throw;
            }
        });
        Assert.False(call.IsCompleted);
        w.Time.Advance(TimeSpan.FromSeconds(30)); // the default timeout

        var ex = await Assert.ThrowsAsync<TimeoutException>(() => call);
        Assert.Equal("CFN loop operation timed out after 30000ms", ex.Message);
        Assert.True(await observedCancellation.Task.WaitAsync(TimeSpan.FromSeconds(10)));
        var snapshot = w.Breaker.GetSnapshot();
        Assert.Equal(1, snapshot.Timeouts);
        Assert.Equal(1, snapshot.Failures);
        Assert.Equal(1, snapshot.ConsecutiveFailures);
        var error = Assert.Single(w.Records, r => r.Level == LogLevel.Error);
        Assert.Contains("Operation timed out name=test timeoutMs=30000", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ExecuteAsync_EveryOutcome_LeavesNoTimerBehind()
    {
        // W55: TS leaves a 30-min timer per call.
        var time = new CountingTimeProvider(Start);
        var breaker = new CircuitBreaker("test", new CircuitBreakerOptions { FailureThreshold = 100 }, time);

        await breaker.ExecuteAsync(_ => Task.FromResult(1));
        await Assert.ThrowsAsync<InvalidOperationException>(() => breaker.ExecuteAsync<int>(_ => throw new InvalidOperationException()));
        using (var caller = new CancellationTokenSource())
        {
            var cancelled = breaker.ExecuteAsync(token => Task.Delay(Timeout.InfiniteTimeSpan, token), caller.Token);
            await caller.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled);
        }

        var timedOut = breaker.ExecuteAsync(token => Task.Delay(Timeout.InfiniteTimeSpan, token), timeout: TimeSpan.FromSeconds(2));
        time.Advance(TimeSpan.FromSeconds(2));
        await Assert.ThrowsAsync<TimeoutException>(() => timedOut);

        var ignoresToken = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        var stuck = breaker.ExecuteAsync(_ => ignoresToken.Task, timeout: TimeSpan.FromSeconds(2));
        time.Advance(TimeSpan.FromSeconds(2));
        await Assert.ThrowsAsync<TimeoutException>(() => stuck);
        ignoresToken.SetResult(0);

        Assert.Equal(5, time.CreatedTimers); // one per call: the timeouts really used the injected clock
        Assert.Equal(0, time.LiveTimers);
    }

    [Fact]
    public async Task ExecuteAsync_ActionIgnoresToken_TimeoutStillReturnsControl()
    {
        var w = new World();
        var never = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);

        var call = w.Breaker.ExecuteAsync(_ => never.Task, timeout: TimeSpan.FromMilliseconds(100));
        w.Time.Advance(TimeSpan.FromMilliseconds(99));
        Assert.False(call.IsCompleted);
        w.Time.Advance(TimeSpan.FromMilliseconds(1));

        var ex = await Assert.ThrowsAsync<TimeoutException>(() => call);
        Assert.Equal("CFN loop operation timed out after 100ms", ex.Message);
    }

    [Fact]
    public async Task ExecuteAsync_ThreeTimeouts_OpenCircuit()
    {
        var w = new World();
        for (var i = 0; i < 3; i++)
        {
            var call = w.Breaker.ExecuteAsync(token => Task.Delay(Timeout.InfiniteTimeSpan, token), timeout: TimeSpan.FromSeconds(1));
            w.Time.Advance(TimeSpan.FromSeconds(1));
            await Assert.ThrowsAsync<TimeoutException>(() => call);
        }

        Assert.Equal(CircuitState.Open, w.Breaker.State);
        Assert.Equal(3, w.Breaker.GetSnapshot().Timeouts);
    }

    [Fact]
    public async Task ExecuteAsync_TimeoutDespiteShouldHandleFalse_StillCountsFailure()
    {
        var w = new World(o => o.ShouldHandle = _ => false);

        var call = w.Breaker.ExecuteAsync(token => Task.Delay(Timeout.InfiniteTimeSpan, token), timeout: TimeSpan.FromSeconds(1));
        w.Time.Advance(TimeSpan.FromSeconds(1));
        await Assert.ThrowsAsync<TimeoutException>(() => call);

        Assert.Equal(1, w.Breaker.GetSnapshot().ConsecutiveFailures);
    }

    [Fact]
    public async Task ExecuteAsync_NoTimeoutConfigured_CreatesNoTimer()
    {
        var time = new CountingTimeProvider(Start);
        var breaker = new CircuitBreaker("test", new CircuitBreakerOptions { Timeout = null }, time);
        var gate = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);

        var call = breaker.ExecuteAsync(_ => gate.Task);
        time.Advance(TimeSpan.FromHours(1));
        Assert.False(call.IsCompleted);
        gate.SetResult(7);

        Assert.Equal(7, await call);
        Assert.Equal(0, time.CreatedTimers);
    }

    [Fact]
    public async Task ExecuteAsync_CallerCancels_NotCountedAndFreesTrialSlot()
    {
        var w = new World(o => o.HalfOpenLimit = 1);
        for (var i = 0; i < 3; i++)
        {
            using var caller = new CancellationTokenSource();
            var call = w.Breaker.ExecuteAsync(token => Task.Delay(Timeout.InfiniteTimeSpan, token), caller.Token);
            await caller.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => call);
        }

        Assert.Equal(CircuitState.Closed, w.Breaker.State);
        Assert.Equal(0, w.Breaker.GetSnapshot().ConsecutiveFailures);

        await OpenAsync(w.Breaker);
        w.Time.Advance(TimeSpan.FromSeconds(1));
        using (var caller = new CancellationTokenSource())
        {
            var trial = w.Breaker.ExecuteAsync(token => Task.Delay(Timeout.InfiniteTimeSpan, token), caller.Token);
            await caller.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => trial);
        }

        Assert.Equal(CircuitState.HalfOpen, w.Breaker.State);
        await SucceedAsync(w.Breaker); // the only slot was given back
    }

    [Fact]
    public async Task ExecuteAsync_CallerTokenAlreadyCancelled_ThrowsWithoutRunning()
    {
        var w = new World();
        using var caller = new CancellationTokenSource();
        await caller.CancelAsync();
        var ran = false;

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => w.Breaker.ExecuteAsync(_ =>
        {
            ran = true;
            return Task.FromResult(1);
        }, caller.Token));

        Assert.False(ran);
        Assert.Equal(0, w.Breaker.GetSnapshot().TotalCalls);
    }

    // ---------------------------------------------------------------- filtering and switching off

    [Fact]
    public async Task ExecuteAsync_ShouldHandleFilter_OnlyHandledExceptionsCount()
    {
        var w = new World(o => o.ShouldHandle = e => e is IOException);

        for (var i = 0; i < 5; i++)
        {
            await Assert.ThrowsAsync<ArgumentException>(() => w.Breaker.ExecuteAsync<int>(_ => throw new ArgumentException("bad input")));
        }

        Assert.Equal(CircuitState.Closed, w.Breaker.State);
        Assert.Equal(0, w.Breaker.GetSnapshot().ConsecutiveFailures);

        for (var i = 0; i < 3; i++)
        {
            await Assert.ThrowsAsync<IOException>(() => w.Breaker.ExecuteAsync<int>(_ => throw new IOException("down")));
        }

        Assert.Equal(CircuitState.Open, w.Breaker.State);
    }

    [Fact]
    public void RecordFailure_UnhandledException_IsIgnored()
    {
        var w = new World(o => o.ShouldHandle = e => e is IOException);

        for (var i = 0; i < 5; i++)
        {
            w.Breaker.RecordFailure(new InvalidOperationException());
        }

        Assert.Equal(CircuitState.Closed, w.Breaker.State);
        Assert.Equal(0, w.Breaker.GetSnapshot().ConsecutiveFailures);
    }

    [Fact]
    public async Task ExecuteAsync_Disabled_NeverRejectsNeverOpensReportsClosed()
    {
        var w = new World(o => o.Enabled = false);
        var runs = 0;

        for (var i = 0; i < 10; i++)
        {
            await Assert.ThrowsAsync<IOException>(() => w.Breaker.ExecuteAsync<int>(_ =>
            {
                runs++;
                throw new IOException("down");
            }));
        }

        Assert.Equal(10, runs);
        Assert.Equal(CircuitState.Closed, w.Breaker.State);
        Assert.True(w.Breaker.TryAcquire(out var lease));
        lease.Dispose();
        Assert.False(w.Breaker.MoveToHalfOpenNow());
        Assert.Equal(CircuitState.Closed, w.Breaker.State);
        Assert.DoesNotContain(w.Messages, m => m.Contains("Circuit state transition", StringComparison.Ordinal));
    }

    [Fact]
    public async Task ExecuteAsync_Disabled_TimeoutStillApplies()
    {
        var w = new World(o => o.Enabled = false);

        var call = w.Breaker.ExecuteAsync(token => Task.Delay(Timeout.InfiniteTimeSpan, token), timeout: TimeSpan.FromSeconds(1));
        w.Time.Advance(TimeSpan.FromSeconds(1));

        await Assert.ThrowsAsync<TimeoutException>(() => call);
        Assert.Equal(CircuitState.Closed, w.Breaker.State);
    }

    // ---------------------------------------------------------------- logs and events

    [Fact]
    public async Task Logs_FullCycle_ContainRunbookLiteralsAtTheirLevels()
    {
        var w = new World();
        await OpenAsync(w.Breaker);
        await Assert.ThrowsAsync<CircuitOpenException>(() => w.Breaker.ExecuteAsync(_ => Task.FromResult(1)));
        w.Time.Advance(TimeSpan.FromSeconds(1));
        await SucceedAsync(w.Breaker);
        await SucceedAsync(w.Breaker);

        AssertLogged(w, LogLevel.Information, "Circuit state transition name=test from=closed to=open");
        AssertLogged(w, LogLevel.Warning, "Circuit opened with exponential backoff name=test delayMs=1000");
        AssertLogged(w, LogLevel.Warning, "Request rejected - circuit is OPEN name=test");
        AssertLogged(w, LogLevel.Information, "Circuit state transition name=test from=open to=half_open");
        AssertLogged(w, LogLevel.Information, "Circuit state transition name=test from=half_open to=closed");
        Assert.All(w.Records, r => Assert.DoesNotContain('\n', r.Message));
    }

    [Fact]
    public async Task Logs_HalfOpenTrialLimitReached_KeepsTheLiteralAndSaysWhy()
    {
        var w = new World(o => o.HalfOpenLimit = 1);
        await OpenAsync(w.Breaker);
        await Assert.ThrowsAsync<CircuitOpenException>(() => w.Breaker.ExecuteAsync(_ => Task.FromResult(1)));
        w.Time.Advance(TimeSpan.FromSeconds(1));
        Assert.True(w.Breaker.TryAcquire(out var trial));

        Assert.False(w.Breaker.TryAcquire(out _));
        trial.Dispose();

        var rejections = w.Records.Where(r => r.Message.StartsWith("Request rejected - circuit is OPEN", StringComparison.Ordinal)).ToList();
        Assert.Equal(2, rejections.Count);
        Assert.All(rejections, r => Assert.Equal(LogLevel.Warning, r.Level));
        // Open: the plain line; half-open with the trial slot taken: the line says so instead of leaving "OPEN … half_open".
        Assert.StartsWith("Request rejected - circuit is OPEN name=test state=open retryAt=", rejections[0].Message, StringComparison.Ordinal);
        Assert.Equal("Request rejected - circuit is OPEN (half-open: trial limit reached) name=test state=half_open halfOpenLimit=1",
            rejections[1].Message);
    }

    [Fact]
    public async Task StateChanged_FullCycle_RaisedInOrderAndThrowingHandlerIsContained()
    {
        var w = new World();
        var seen = new List<(CircuitState From, CircuitState To)>();
        w.Breaker.StateChanged += (_, _) => throw new InvalidOperationException("subscriber bug");
        w.Breaker.StateChanged += (sender, e) =>
        {
            Assert.Same(w.Breaker, sender);
            Assert.Equal("test", e.Name);
            seen.Add((e.From, e.To));
        };

        await OpenAsync(w.Breaker); // the subscriber's exception never reaches the caller
        w.Time.Advance(TimeSpan.FromSeconds(1));
        await FailAsync(w.Breaker);
        Assert.True(w.Breaker.MoveToHalfOpenNow());
        await SucceedAsync(w.Breaker);
        await SucceedAsync(w.Breaker);

        Assert.Equal(
            [
                (CircuitState.Closed, CircuitState.Open),
                (CircuitState.Open, CircuitState.HalfOpen),
                (CircuitState.HalfOpen, CircuitState.Open),
                (CircuitState.Open, CircuitState.HalfOpen),
                (CircuitState.HalfOpen, CircuitState.Closed),
            ],
            seen);
        Assert.Equal(5, w.Records.Count(r => r.Level == LogLevel.Warning && r.Message.Contains("StateChanged handler failed", StringComparison.Ordinal)));
    }

    // ---------------------------------------------------------------- concurrency

    [Fact]
    public async Task ExecuteAsync_ParallelCalls_CountersStayConsistent()
    {
        var w = new World(o => o.FailureThreshold = int.MaxValue);
        const int workers = 8;
        const int perWorker = 500;

        await Task.WhenAll(Enumerable.Range(0, workers).Select(worker => Task.Run(async () =>
        {
            for (var i = 0; i < perWorker; i++)
            {
                if ((worker + i) % 2 == 0)
                {
                    await w.Breaker.ExecuteAsync(_ => Task.FromResult(i));
                }
                else
                {
                    await Assert.ThrowsAsync<IOException>(() => w.Breaker.ExecuteAsync<int>(_ => throw new IOException()));
                }
            }
        })));

        var snapshot = w.Breaker.GetSnapshot();
        Assert.Equal(workers * perWorker, snapshot.TotalCalls);
        Assert.Equal(workers * perWorker / 2, snapshot.Successes);
        Assert.Equal(workers * perWorker / 2, snapshot.Failures);
        Assert.Equal(CircuitState.Closed, snapshot.State);
    }

    [Fact]
    public async Task TryAcquire_ParallelInHalfOpen_AdmitsExactlyHalfOpenLimit()
    {
        var w = new World();
        await OpenAsync(w.Breaker);
        w.Time.Advance(TimeSpan.FromSeconds(1));
        const int contenders = 64;
        var admitted = 0;

        await Task.WhenAll(Enumerable.Range(0, contenders).Select(i => Task.Run(() =>
        {
            if (w.Breaker.TryAcquire(out _))
            {
                Interlocked.Increment(ref admitted);
            }
        })));

        Assert.Equal(3, admitted);
        Assert.Equal(contenders - 3, w.Breaker.GetSnapshot().RejectedCalls);
    }

    [Fact]
    public async Task ExecuteAsync_ParallelFailures_OpenExactlyOnce()
    {
        var w = new World(o => o.FailureThreshold = 10);
        var opens = 0;
        w.Breaker.StateChanged += (_, e) =>
        {
            if (e.To == CircuitState.Open)
            {
                Interlocked.Increment(ref opens);
            }
        };

        await Task.WhenAll(Enumerable.Range(0, 200).Select(_ => Task.Run(async () =>
        {
            try
            {
                await w.Breaker.ExecuteAsync<int>(_ => throw new IOException());
            }
            catch (IOException)
            {
            }
            catch (CircuitOpenException)
            {
            }
        })));

        Assert.Equal(1, opens);
        Assert.Equal(CircuitState.Open, w.Breaker.State);
    }

    // ---------------------------------------------------------------- non-generic overload, options, labels

    [Fact]
    public async Task ExecuteAsync_NonGeneric_RunsAndCounts()
    {
        var w = new World();
        var ran = 0;

        await w.Breaker.ExecuteAsync(async token =>
        {
            await Task.Yield();
            ran++;
        });
        await Assert.ThrowsAsync<IOException>(() => w.Breaker.ExecuteAsync(async _ =>
        {
            await Task.Yield();
            throw new IOException();
        }));

        Assert.Equal(1, ran);
        var snapshot = w.Breaker.GetSnapshot();
        Assert.Equal(1, snapshot.Successes);
        Assert.Equal(1, snapshot.Failures);
    }

    [Theory]
    [InlineData(nameof(CircuitBreakerOptions.FailureThreshold))]
    [InlineData(nameof(CircuitBreakerOptions.SuccessThreshold))]
    [InlineData(nameof(CircuitBreakerOptions.HalfOpenLimit))]
    [InlineData(nameof(CircuitBreakerOptions.Delays))]
    [InlineData(nameof(CircuitBreakerOptions.Cooldown))]
    [InlineData(nameof(CircuitBreakerOptions.Timeout))]
    public void Validate_BadField_ThrowsNamingIt(string field)
    {
        var options = new CircuitBreakerOptions();
        switch (field)
        {
            case nameof(CircuitBreakerOptions.FailureThreshold): options.FailureThreshold = 0; break;
            case nameof(CircuitBreakerOptions.SuccessThreshold): options.SuccessThreshold = 0; break;
            case nameof(CircuitBreakerOptions.HalfOpenLimit): options.HalfOpenLimit = -1; break;
            case nameof(CircuitBreakerOptions.Delays): options.Delays = [TimeSpan.FromSeconds(1), TimeSpan.Zero]; break;
            case nameof(CircuitBreakerOptions.Cooldown): options.Cooldown = TimeSpan.FromSeconds(-1); break;
            default: options.Timeout = TimeSpan.Zero; break;
        }

        var ex = Assert.Throws<ValidationException>(options.Validate);
        Assert.Contains(field, ex.Message, StringComparison.Ordinal);
        Assert.Throws<ValidationException>(() => new CircuitBreaker("x", options));
    }

    [Fact]
    public void Validate_Defaults_AreTheSpecDefaults()
    {
        var options = new CircuitBreakerOptions();
        options.Validate();

        Assert.Equal(3, options.FailureThreshold);
        Assert.Equal(2, options.SuccessThreshold);
        Assert.Equal(3, options.HalfOpenLimit);
        Assert.Equal([1000.0, 2000, 4000, 8000], options.Delays.Select(d => d.TotalMilliseconds));
        Assert.Null(options.Cooldown);
        Assert.Equal(TimeSpan.FromSeconds(30), options.Timeout);
        Assert.True(options.Enabled);
        Assert.Throws<ValidationException>(() => new CircuitBreakerOptions { Delays = [] }.Validate());
    }

    [Fact]
    public void Constructor_OptionsChangedAfterwards_BreakerKeepsItsCopy()
    {
        var options = new CircuitBreakerOptions { FailureThreshold = 1 };
        var w = new World();
        var breaker = new CircuitBreaker("copy", options, w.Time);

        options.FailureThreshold = 50;
        breaker.RecordFailure();

        Assert.Equal(CircuitState.Open, breaker.State);
        Assert.Equal(1, breaker.Options.FailureThreshold);
    }

    [Theory]
    [InlineData("false", false)]
    [InlineData("FALSE", false)]
    [InlineData("0", false)]
    [InlineData("true", true)]
    [InlineData("1", true)]
    [InlineData(null, true)]
    public void FromEnvironment_EnableCircuitBreaker_SetsEnabled(string? value, bool expected)
    {
        var env = new Hashtable();
        if (value is not null)
        {
            env["ENABLE_CIRCUIT_BREAKER"] = value;
        }

        Assert.Equal(expected, CircuitBreakerOptions.FromEnvironment(env).Enabled);
    }

    [Fact]
    public void FromEnvironment_EnableCircuitBreakerGarbage_ThrowsNamingVariable()
    {
        var ex = Assert.Throws<ValidationException>(() => CircuitBreakerOptions.FromEnvironment(new Hashtable { ["ENABLE_CIRCUIT_BREAKER"] = "maybe" }));
        Assert.Contains("ENABLE_CIRCUIT_BREAKER", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ToLabel_EveryState_LowercaseWithUnderscore()
    {
        Assert.Equal(["closed", "open", "half_open"], CircuitStateExtensions.All.Select(s => s.ToLabel()));
        Assert.Throws<ArgumentOutOfRangeException>(() => ((CircuitState)42).ToLabel());
    }

    // ---------------------------------------------------------------- helpers

    private static async Task FailAsync(CircuitBreaker breaker) =>
        await Assert.ThrowsAsync<InvalidOperationException>(() =>
            breaker.ExecuteAsync<int>(_ => Task.FromException<int>(new InvalidOperationException("boom"))));

    private static async Task SucceedAsync(CircuitBreaker breaker) =>
        Assert.Equal(42, await breaker.ExecuteAsync(_ => Task.FromResult(42)));

    private static async Task OpenAsync(CircuitBreaker breaker)
    {
        for (var i = 0; i < 3; i++)
        {
            await FailAsync(breaker);
        }

        Assert.Equal(CircuitState.Open, breaker.State);
    }

    private static void AssertLogged(World w, LogLevel level, string literal) =>
        Assert.Contains(w.Records, r => r.Level == level && r.Message.Contains(literal, StringComparison.Ordinal));

    /// <summary>A breaker named <c>test</c> on a fake clock, with captured logs.</summary>
    private sealed class World
    {
        public World(Action<CircuitBreakerOptions>? configure = null)
        {
            var options = new CircuitBreakerOptions();
            configure?.Invoke(options);
            Time = new CountingTimeProvider(Start);
            Logger = new FakeLogger<CircuitBreaker>();
            Breaker = new CircuitBreaker("test", options, Time, Logger);
        }

        public CountingTimeProvider Time { get; }

        public FakeLogger<CircuitBreaker> Logger { get; }

        public CircuitBreaker Breaker { get; }

        public IReadOnlyList<FakeLogRecord> Records => Logger.Collector.GetSnapshot();

        public IReadOnlyList<string> Messages => [.. Records.Select(r => r.Message)];
    }
}
