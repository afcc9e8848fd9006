using System.Diagnostics.CodeAnalysis;

namespace Cfn.Coordination.Resilience;

/// <summary>
/// A consecutive-failure circuit breaker (SPEC §2.14, D10): closed, open with delays 1, 2, 4, 8 s from the first open,
/// half-open with a limit of trial calls in flight. Implemented by <see cref="CircuitBreaker"/>.
/// </summary>
internal interface ICircuitBreaker
{
    /// <summary>The breaker's name, the <c>name</c> label of <c>circuit_breaker_state</c> (<c>redis</c>, <c>external:{host}</c>).</summary>
    string Name { get; }

    /// <summary>Current state; an open circuit whose delay has passed reads as <see cref="CircuitState.HalfOpen"/>.</summary>
    CircuitState State { get; }

    /// <summary>Raised after every transition. A handler that throws is logged and ignored.</summary>
    event EventHandler<CircuitStateChangedEventArgs>? StateChanged;

    /// <summary>Runs <paramref name="action"/> through the breaker; see <see cref="CircuitBreaker.ExecuteAsync{T}"/>.</summary>
    [SuppressMessage("Design", "CA1068:CancellationToken parameters must come last", Justification = "The per-call timeout is an optional override after the token: ExecuteAsync(action, token) is the common call.")]
    Task<T> ExecuteAsync<T>(Func<CancellationToken, Task<T>> action, CancellationToken cancellationToken = default, TimeSpan? timeout = null);

    /// <summary>Runs <paramref name="action"/> through the breaker; see <see cref="CircuitBreaker.ExecuteAsync(Func{CancellationToken, Task}, CancellationToken, TimeSpan?)"/>.</summary>
    [SuppressMessage("Design", "CA1068:CancellationToken parameters must come last", Justification = "The per-call timeout is an optional override after the token: ExecuteAsync(action, token) is the common call.")]
    Task ExecuteAsync(Func<CancellationToken, Task> action, CancellationToken cancellationToken = default, TimeSpan? timeout = null);

    /// <summary>Asks for permission to make one call; see <see cref="CircuitBreaker.TryAcquire"/>.</summary>
    bool TryAcquire([NotNullWhen(true)] out CircuitBreakerLease? lease);

    /// <summary>Like <see cref="TryAcquire"/>, but throws <see cref="CircuitOpenException"/> on rejection.</summary>
    CircuitBreakerLease Acquire();

    /// <summary>Records a success of a call made without a lease.</summary>
    void RecordSuccess();

    /// <summary>Records a failure of a call made without a lease.</summary>
    void RecordFailure(Exception? exception = null);

    /// <summary>Closes the circuit and clears its counters.</summary>
    void Reset();

    /// <summary>Ends an open delay early; see <see cref="CircuitBreaker.MoveToHalfOpenNow"/>.</summary>
    bool MoveToHalfOpenNow();

    /// <summary>A consistent view of the state and counters.</summary>
    CircuitBreakerSnapshot GetSnapshot();
}
