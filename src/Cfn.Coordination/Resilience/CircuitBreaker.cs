using System.Diagnostics.CodeAnalysis;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Cfn.Coordination.Resilience;

/// <summary>
/// A small consecutive-failure circuit breaker (SPEC §2.14, D10), driven by a <see cref="TimeProvider"/> and safe to
/// use from any number of threads.
/// <list type="bullet">
/// <item><b>Closed</b>: calls pass. <see cref="CircuitBreakerOptions.FailureThreshold"/> consecutive failures open the
/// circuit; a success resets the count.</item>
/// <item><b>Open</b>: calls are rejected with <see cref="CircuitOpenException"/>. The n-th consecutive open waits
/// <c>Delays[min(n − 1, last)]</c> (1 s, 2 s, 4 s, 8 s: the first open waits <c>Delays[0]</c>, not the delay at the failure threshold's index as the TS breaker did), or
/// <see cref="CircuitBreakerOptions.Cooldown"/> when set. When the delay has passed the circuit becomes half-open lazily,
/// on the next <see cref="State"/> read or call; <see cref="MoveToHalfOpenNow"/> ends the delay at once.</item>
/// <item><b>Half-open</b>: at most <see cref="CircuitBreakerOptions.HalfOpenLimit"/> trial calls are <em>in flight</em>
/// (calls in flight, not calls started); more are rejected. <see cref="CircuitBreakerOptions.SuccessThreshold"/> successes close the circuit (and
/// restart the delay schedule); any failure re-opens it with the next delay.</item>
/// </list>
/// Every transition is logged (<c>Circuit state transition name=… from=… to=…</c>, and on opening
/// <c>Circuit opened with exponential backoff name=… delayMs=…</c>) and raised as <see cref="StateChanged"/>, in order,
/// outside the breaker's lock. Rejections log <c>Request rejected - circuit is OPEN</c> (with <c>(half-open: trial limit
/// reached)</c> when the circuit is half-open with every trial slot in use), timeouts
/// <c>Operation timed out</c> (the runbook's line).
/// </summary>
public sealed class CircuitBreaker : ICircuitBreaker
{
    private readonly Lock _gate = new();
    private readonly CircuitBreakerOptions _options;
    private readonly TimeSpan[] _delays;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Queue<Transition> _pending = new();
    private bool _draining;

    private CircuitState _state = CircuitState.Closed;
    private long _generation;
    private int _failures;
    private int _trialSuccesses;
    private int _trialsInFlight;
    private int _opens;
    private DateTimeOffset? _retryAt;

    private long _totalCalls;
    private long _rejected;
    private long _timeouts;
    private long _failuresTotal;
    private long _successesTotal;

    /// <summary>Creates a closed breaker.</summary>
    /// <param name="name">Name used in logs, exceptions and the <c>circuit_breaker_state</c> gauge.</param>
    /// <param name="options">Settings (copied and validated); the defaults when null.</param>
    /// <param name="timeProvider">Clock for open delays and timeouts; the system clock when null.</param>
    /// <param name="logger">Logger; none when null.</param>
    /// <exception cref="ArgumentException"><paramref name="name"/> is empty.</exception>
    /// <exception cref="System.ComponentModel.DataAnnotations.ValidationException">The options are invalid.</exception>
    public CircuitBreaker(string name, CircuitBreakerOptions? options = null, TimeProvider? timeProvider = null, ILogger? logger = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        Name = name;
        _options = (options ?? new CircuitBreakerOptions()).Clone();
        _options.Validate();
        _delays = [.. _options.Delays];
        _time = timeProvider ?? TimeProvider.System;
        _logger = logger ?? NullLogger.Instance;
    }

    internal enum Outcome
    {
        Success,
        Failure,
        Timeout,
        Neutral,
    }

    /// <inheritdoc/>
    public string Name { get; }

    /// <summary>A copy of the breaker's settings.</summary>
    public CircuitBreakerOptions Options => _options.Clone();

    /// <summary>False when the breaker is switched off: it then never rejects, never opens, and reads as closed.</summary>
    public bool Enabled => _options.Enabled;

    /// <summary>The clock the breaker runs on.</summary>
    public TimeProvider TimeProvider => _time;

    /// <summary>
    /// Current state. An open circuit whose delay has passed becomes <see cref="CircuitState.HalfOpen"/> on this read
    /// (logged and raised like any transition). A disabled breaker always reads <see cref="CircuitState.Closed"/>.
    /// </summary>
    public CircuitState State
    {
        get
        {
            if (!_options.Enabled)
            {
                return CircuitState.Closed;
            }

            CircuitState state;
            lock (_gate)
            {
                PromoteIfDue();
                state = _state;
            }

            Drain();
            return state;
        }
    }

    /// <inheritdoc/>
    public event EventHandler<CircuitStateChangedEventArgs>? StateChanged;

    /// <summary>
    /// Runs <paramref name="action"/> through the breaker and returns its result.
    /// <list type="number">
    /// <item>When the circuit is open (or half-open with every trial slot in use) the action is not run:
    /// <see cref="CircuitOpenException"/> is thrown and <c>Request rejected - circuit is OPEN</c> logged.</item>
    /// <item>The action gets a token that is cancelled when <paramref name="cancellationToken"/> is, or when the timeout
    /// passes. On a timeout the breaker stops waiting even if the action ignores its token, records a failure, logs ERROR
    /// <c>Operation timed out</c> and throws <see cref="TimeoutException"/>
    /// (<c>CFN loop operation timed out after {ms}ms</c>). The timer is disposed when the call ends, whatever the
    /// outcome (the TS breaker leaked one timer per call).</item>
    /// <item>A result is a success. An exception is a failure when <see cref="CircuitBreakerOptions.ShouldHandle"/>
    /// handles it; it is rethrown either way. Cancellation through <paramref name="cancellationToken"/> counts as
    /// nothing.</item>
    /// </list>
    /// </summary>
    /// <param name="action">The call to protect; it should honour its token.</param>
    /// <param name="cancellationToken">The caller's token.</param>
    /// <param name="timeout">Timeout of this call; <see cref="CircuitBreakerOptions.Timeout"/> when null;
    /// <see cref="Timeout.InfiniteTimeSpan"/> for none.</param>
    /// <exception cref="CircuitOpenException">The call was rejected.</exception>
    /// <exception cref="TimeoutException">The call exceeded its timeout.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public async Task<T> ExecuteAsync<T>(
        Func<CancellationToken, Task<T>> action, CancellationToken cancellationToken = default, TimeSpan? timeout = null)
    {
        ArgumentNullException.ThrowIfNull(action);
        cancellationToken.ThrowIfCancellationRequested();
        var effective = timeout ?? _options.Timeout;
        if (effective is { } t && t <= TimeSpan.Zero && t != Timeout.InfiniteTimeSpan)
        {
            throw new ArgumentOutOfRangeException(nameof(timeout), t, "the timeout must be positive or Timeout.InfiniteTimeSpan");
        }

        using var lease = Acquire();
        if (effective is null || effective == Timeout.InfiniteTimeSpan)
        {
            try
            {
                var result = await action(cancellationToken).ConfigureAwait(false);
                lease.RecordSuccess();
                return result;
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                throw; // the caller gave up: no outcome (the lease is disposed)
            }
            catch (Exception e)
            {
                lease.RecordFailure(e);
                throw;
            }
        }

        var limit = effective.Value;
        using var timeoutSource = new CancellationTokenSource(limit, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeoutSource.Token);
        Task<T>? task = null;
        try
        {
            task = action(linked.Token);
            var result = await task.WaitAsync(linked.Token).ConfigureAwait(false);
            lease.RecordSuccess();
            return result;
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            ObserveAbandoned(task);
            throw;
        }
        catch (Exception e) when (timeoutSource.IsCancellationRequested)
        {
            // Timed out: whatever the action threw while being cancelled is reported as the timeout.
            ObserveAbandoned(task);
            Interlocked.Increment(ref _timeouts);
            lease.RecordTimeout();
            var ms = (long)limit.TotalMilliseconds;
            _logger.LogError("Operation timed out name={Name} timeoutMs={TimeoutMs}", Name, ms);
            throw new TimeoutException($"CFN loop operation timed out after {ms}ms", e);
        }
        catch (Exception e)
        {
            lease.RecordFailure(e);
            throw;
        }
    }

    /// <summary>
    /// Runs <paramref name="action"/> through the breaker; the same rules as <see cref="ExecuteAsync{T}"/>.
    /// </summary>
    /// <exception cref="CircuitOpenException">The call was rejected.</exception>
    /// <exception cref="TimeoutException">The call exceeded its timeout.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public Task ExecuteAsync(Func<CancellationToken, Task> action, CancellationToken cancellationToken = default, TimeSpan? timeout = null)
    {
        ArgumentNullException.ThrowIfNull(action);
        return ExecuteAsync(
            async token =>
            {
                await action(token).ConfigureAwait(false);
                return true;
            },
            cancellationToken,
            timeout);
    }

    /// <summary>
    /// Asks for permission to make one call without handing the call to the breaker (for callers that cannot pass a
    /// delegate). True with a lease when the call may go ahead: report its outcome on the lease and dispose it (see
    /// <see cref="CircuitBreakerLease"/>). False when the circuit is open, or half-open with every trial slot in use;
    /// the rejection is counted and logged (<c>Request rejected - circuit is OPEN</c>). No timeout is applied.
    /// </summary>
    public bool TryAcquire([NotNullWhen(true)] out CircuitBreakerLease? lease)
    {
        lease = TryAcquireCore(out var rejectedState, out var retryAt);
        if (lease is null)
        {
            LogRejection(rejectedState, retryAt);
        }

        return lease is not null;
    }

    /// <summary>Like <see cref="TryAcquire"/>, but throws on rejection.</summary>
    /// <exception cref="CircuitOpenException">The circuit is open, or half-open with every trial slot in use.</exception>
    public CircuitBreakerLease Acquire()
    {
        var lease = TryAcquireCore(out var rejectedState, out var retryAt);
        if (lease is null)
        {
            LogRejection(rejectedState, retryAt);
            throw new CircuitOpenException(Name, rejectedState, retryAt);
        }

        return lease;
    }

    /// <summary>
    /// Records a success of a call made without a lease: resets the failure count when closed, counts a trial success
    /// when half-open (without touching the in-flight count). Ignored while open.
    /// </summary>
    public void RecordSuccess() => Apply(Outcome.Success, generation: null, isTrial: false);

    /// <summary>
    /// Records a failure of a call made without a lease: counts towards opening when closed, re-opens when half-open.
    /// Ignored while open, and when <paramref name="exception"/> is not handled by
    /// <see cref="CircuitBreakerOptions.ShouldHandle"/>.
    /// </summary>
    public void RecordFailure(Exception? exception = null)
    {
        if (Handles(exception))
        {
            Apply(Outcome.Failure, generation: null, isTrial: false);
        }
    }

    /// <summary>
    /// Closes the circuit (a transition when it was not closed), clears the failure count and restarts the delay
    /// schedule. Leases taken before the reset no longer count.
    /// </summary>
    public void Reset()
    {
        lock (_gate)
        {
            if (_state == CircuitState.Closed)
            {
                _generation++;
                _failures = 0;
                _opens = 0;
            }
            else
            {
                TransitionTo(CircuitState.Closed);
            }
        }

        Drain();
    }

    /// <summary>
    /// Ends the open delay at once: an open circuit becomes half-open, so trial calls can start. Used when the
    /// connection is known to be restored (for example StackExchange.Redis's <c>ConnectionRestored</c>), instead of
    /// waiting out a delay of up to 8 s. Returns true when the circuit was open; a closed or half-open circuit is left
    /// as it is.
    /// </summary>
    public bool MoveToHalfOpenNow()
    {
        bool moved;
        lock (_gate)
        {
            moved = _state == CircuitState.Open;
            if (moved)
            {
                TransitionTo(CircuitState.HalfOpen);
            }
        }

        Drain();
        return moved;
    }

    /// <inheritdoc/>
    public CircuitBreakerSnapshot GetSnapshot()
    {
        CircuitBreakerSnapshot snapshot;
        lock (_gate)
        {
            if (_options.Enabled)
            {
                PromoteIfDue();
            }

            snapshot = new CircuitBreakerSnapshot
            {
                Name = Name,
                State = _options.Enabled ? _state : CircuitState.Closed,
                Enabled = _options.Enabled,
                ConsecutiveFailures = _failures,
                TrialSuccesses = _trialSuccesses,
                TrialsInFlight = _trialsInFlight,
                ConsecutiveOpens = _opens,
                RetryAt = _retryAt,
                TotalCalls = _totalCalls,
                RejectedCalls = _rejected,
                Timeouts = Interlocked.Read(ref _timeouts),
                Failures = _failuresTotal,
                Successes = _successesTotal,
            };
        }

        Drain();
        return snapshot;
    }

    /// <inheritdoc/>
    public override string ToString() => $"{Name} ({State.ToLabel()})";

    /// <summary>Whether <paramref name="exception"/> counts as a failure (null always does).</summary>
    internal bool Handles(Exception? exception)
    {
        if (exception is null || _options.ShouldHandle is not { } predicate)
        {
            return true;
        }

        try
        {
            return predicate(exception);
        }
#pragma warning disable CA1031 // a faulty predicate must not replace the call's own exception
        catch (Exception e)
#pragma warning restore CA1031
        {
            _logger.LogWarning(e, "ShouldHandle threw; counting the exception as a failure name={Name}", Name);
            return true;
        }
    }

    /// <summary>Applies the outcome of a lease.</summary>
    internal void Complete(CircuitBreakerLease lease, Outcome outcome) => Apply(outcome, lease.Generation, lease.IsTrial);

    private CircuitBreakerLease? TryAcquireCore(out CircuitState rejectedState, out DateTimeOffset? retryAt)
    {
        rejectedState = CircuitState.Closed;
        retryAt = null;
        CircuitBreakerLease? lease = null;
        lock (_gate)
        {
            _totalCalls++;
            if (!_options.Enabled)
            {
                lease = new CircuitBreakerLease(this, _generation, isTrial: false);
            }
            else
            {
                PromoteIfDue();
                switch (_state)
                {
                    case CircuitState.Closed:
                        lease = new CircuitBreakerLease(this, _generation, isTrial: false);
                        break;
                    case CircuitState.HalfOpen when _trialsInFlight < _options.HalfOpenLimit:
                        _trialsInFlight++;
                        lease = new CircuitBreakerLease(this, _generation, isTrial: true);
                        break;
                    default:
                        _rejected++;
                        rejectedState = _state;
                        retryAt = _retryAt;
                        break;
                }
            }
        }

        Drain();
        return lease;
    }

    private void Apply(Outcome outcome, long? generation, bool isTrial)
    {
        if (!_options.Enabled)
        {
            lock (_gate)
            {
                Count(outcome);
            }

            return;
        }

        lock (_gate)
        {
            Count(outcome);
            PromoteIfDue();
            if (generation is { } g && g != _generation)
            {
                return; // the period this call started in is over; its outcome does not count
            }

            switch (_state, outcome)
            {
                case (CircuitState.Closed, Outcome.Success):
                    _failures = 0;
                    break;
                case (CircuitState.Closed, Outcome.Failure or Outcome.Timeout):
                    _failures++;
                    if (_failures >= _options.FailureThreshold)
                    {
                        TransitionTo(CircuitState.Open);
                    }

                    break;
                case (CircuitState.HalfOpen, Outcome.Success):
                    ReleaseTrial(isTrial);
                    _trialSuccesses++;
                    if (_trialSuccesses >= _options.SuccessThreshold)
                    {
                        TransitionTo(CircuitState.Closed);
                    }

                    break;
                case (CircuitState.HalfOpen, Outcome.Failure or Outcome.Timeout):
                    TransitionTo(CircuitState.Open);
                    break;
                case (CircuitState.HalfOpen, Outcome.Neutral):
                    ReleaseTrial(isTrial);
                    break;
                default:
                    break; // open: outcomes of calls made without a lease are ignored
            }
        }

        Drain();
    }

    private void Count(Outcome outcome)
    {
        switch (outcome)
        {
            case Outcome.Success:
                _successesTotal++;
                break;
            case Outcome.Failure or Outcome.Timeout:
                _failuresTotal++;
                break;
            default:
                break;
        }
    }

    private void ReleaseTrial(bool isTrial)
    {
        if (isTrial && _trialsInFlight > 0)
        {
            _trialsInFlight--;
        }
    }

    /// <summary>Open → half-open once the delay has passed. Caller holds the lock.</summary>
    private void PromoteIfDue()
    {
        if (_state == CircuitState.Open && _retryAt is { } at && _time.GetUtcNow() >= at)
        {
            TransitionTo(CircuitState.HalfOpen);
        }
    }

    /// <summary>Changes state, resets the counters of the new state and queues the notification. Caller holds the lock.</summary>
    private void TransitionTo(CircuitState to)
    {
        var from = _state;
        if (from == to)
        {
            return;
        }

        var now = _time.GetUtcNow();
        _state = to;
        _generation++;
        _trialSuccesses = 0;
        _trialsInFlight = 0;
        TimeSpan? delay = null;
        switch (to)
        {
            case CircuitState.Closed:
                _failures = 0;
                _opens = 0;
                _retryAt = null;
                break;
            case CircuitState.Open:
                _opens++;
                _failures = 0;
                delay = _options.Cooldown ?? _delays[Math.Min(_opens - 1, _delays.Length - 1)];
                _retryAt = now + delay.Value;
                break;
            default:
                _failures = 0;
                _retryAt = null;
                break;
        }

        _pending.Enqueue(new Transition(from, to, now, delay, _retryAt, _opens));
    }

    /// <summary>Emits queued transitions in order, outside the lock, on one thread at a time.</summary>
    private void Drain()
    {
        lock (_gate)
        {
            if (_draining || _pending.Count == 0)
            {
                return;
            }

            _draining = true;
        }

        while (true)
        {
            Transition next;
            lock (_gate)
            {
                if (_pending.Count == 0)
                {
                    _draining = false;
                    return;
                }

                next = _pending.Dequeue();
            }

            Emit(next);
        }
    }

    private void Emit(Transition t)
    {
        _logger.LogInformation("Circuit state transition name={Name} from={From} to={To}", Name, t.From.ToLabel(), t.To.ToLabel());
        if (t.To == CircuitState.Open && t.Delay is { } delay)
        {
            _logger.LogWarning(
                "Circuit opened with exponential backoff name={Name} delayMs={DelayMs} opens={Opens} retryAt={RetryAt}",
                Name, (long)delay.TotalMilliseconds, t.Opens, CircuitOpenException.FormatIso(t.RetryAt ?? t.At));
        }

        if (StateChanged is not { } handlers)
        {
            return;
        }

        var args = new CircuitStateChangedEventArgs(Name, t.From, t.To, t.At, t.RetryAt);
        foreach (var handler in handlers.GetInvocationList().Cast<EventHandler<CircuitStateChangedEventArgs>>())
        {
            try
            {
                handler(this, args);
            }
#pragma warning disable CA1031 // a subscriber's failure must never reach the caller of the breaker
            catch (Exception e)
#pragma warning restore CA1031
            {
                _logger.LogWarning(e, "Circuit StateChanged handler failed name={Name}: {Error}", Name, e.Message);
            }
        }
    }

    // The §4 literal stays first (operators grep it); a half-open rejection says why, since the circuit is not open.
    private void LogRejection(CircuitState state, DateTimeOffset? retryAt)
    {
        if (state == CircuitState.HalfOpen)
        {
            _logger.LogWarning(
                "Request rejected - circuit is OPEN (half-open: trial limit reached) name={Name} state={State} halfOpenLimit={Limit}",
                Name, state.ToLabel(), _options.HalfOpenLimit);
            return;
        }

        _logger.LogWarning("Request rejected - circuit is OPEN name={Name} state={State} retryAt={RetryAt}",
            Name, state.ToLabel(), retryAt is { } at ? CircuitOpenException.FormatIso(at) : "unknown");
    }

    private static void ObserveAbandoned(Task? task)
    {
        if (task is { IsCompleted: false })
        {
            // The action ignored its token and is still running: observe its eventual fault so it is not unobserved.
            _ = task.ContinueWith(
                static t => _ = t.Exception,
                CancellationToken.None,
                TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously,
                TaskScheduler.Default);
        }
    }

    private readonly record struct Transition(
        CircuitState From, CircuitState To, DateTimeOffset At, TimeSpan? Delay, DateTimeOffset? RetryAt, int Opens);
}
