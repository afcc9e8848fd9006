using System.Globalization;

namespace Cfn.Coordination.Resilience;

/// <summary>
/// A call was rejected by a <see cref="CircuitBreaker"/> without being made: the circuit is open, or half-open with
/// every trial slot taken (SPEC §2.14 <c>CircuitOpenError</c>).
/// </summary>
internal sealed class CircuitOpenException : Exception
{
    /// <summary>Creates an exception with no breaker details.</summary>
    public CircuitOpenException()
        : this("Circuit breaker is OPEN")
    {
    }

    /// <summary>Creates an exception with a custom message and no breaker details.</summary>
    public CircuitOpenException(string message)
        : base(message)
    {
        Name = string.Empty;
        State = CircuitState.Open;
    }

    /// <summary>Creates an exception with a custom message, an inner exception and no breaker details.</summary>
    public CircuitOpenException(string message, Exception innerException)
        : base(message, innerException)
    {
        Name = string.Empty;
        State = CircuitState.Open;
    }

    /// <summary>
    /// Creates the exception of breaker <paramref name="name"/>, with the message
    /// <c>Circuit breaker '{name}' is OPEN. Next attempt at {ISO time}</c> (or <c>… is HALF_OPEN …</c> when the trial
    /// slots are taken; <c>unknown</c> when no time is known).
    /// </summary>
    public CircuitOpenException(string name, CircuitState state, DateTimeOffset? retryAt)
        : base(FormatMessage(name, state, retryAt))
    {
        Name = name;
        State = state;
        RetryAt = retryAt;
    }

    /// <summary>Name of the breaker that rejected the call.</summary>
    public string Name { get; }

    /// <summary>The breaker's state at the rejection: <see cref="CircuitState.Open"/> or <see cref="CircuitState.HalfOpen"/>.</summary>
    public CircuitState State { get; }

    /// <summary>When the open delay ends; null when unknown (half-open with every trial slot taken).</summary>
    public DateTimeOffset? RetryAt { get; }

    /// <summary>A time in the form of JavaScript's <c>toISOString</c>: <c>2025-10-10T12:00:00.123Z</c>.</summary>
    public static string FormatIso(DateTimeOffset time) =>
        time.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);

    private static string FormatMessage(string name, CircuitState state, DateTimeOffset? retryAt)
    {
        var when = retryAt is { } at ? FormatIso(at) : "unknown";
        return state == CircuitState.HalfOpen
            ? $"Circuit breaker '{name}' is HALF_OPEN with every trial slot taken. Next attempt at {when}"
            : $"Circuit breaker '{name}' is OPEN. Next attempt at {when}";
    }
}
