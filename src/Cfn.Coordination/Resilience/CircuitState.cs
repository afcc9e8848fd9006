namespace Cfn.Coordination.Resilience;

/// <summary>
/// State of a <see cref="CircuitBreaker"/> (SPEC §2.14, D10). The metric label of each state is lowercase with an
/// underscore (<see cref="CircuitStateExtensions.ToLabel"/>): <c>closed</c>, <c>open</c>, <c>half_open</c> (the label the runbook's queries use).
/// </summary>
public enum CircuitState
{
    /// <summary>Calls pass; consecutive failures are counted. Label <c>closed</c>.</summary>
    Closed = 0,

    /// <summary>Calls are rejected until the open delay has passed. Label <c>open</c>.</summary>
    Open = 1,

    /// <summary>A limited number of trial calls pass; their outcomes close or re-open the circuit. Label <c>half_open</c>.</summary>
    HalfOpen = 2,
}

/// <summary>Names of <see cref="CircuitState"/> values as used in metrics and logs.</summary>
internal static class CircuitStateExtensions
{
    /// <summary>Every state, in the order the <c>circuit_breaker_state</c> gauge lists them.</summary>
    public static IReadOnlyList<CircuitState> All { get; } = [CircuitState.Closed, CircuitState.Open, CircuitState.HalfOpen];

    /// <summary>The metric and log label of <paramref name="state"/>: <c>closed</c>, <c>open</c> or <c>half_open</c>.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="state"/> is not a defined value.</exception>
    public static string ToLabel(this CircuitState state) => state switch
    {
        CircuitState.Closed => "closed",
        CircuitState.Open => "open",
        CircuitState.HalfOpen => "half_open",
        _ => throw new ArgumentOutOfRangeException(nameof(state), state, "unknown circuit state"),
    };
}
