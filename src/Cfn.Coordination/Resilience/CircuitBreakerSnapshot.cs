namespace Cfn.Coordination.Resilience;

/// <summary>A consistent view of one breaker's state and counters (SPEC §2.14 <c>getState()</c>), for health endpoints.</summary>
public sealed record CircuitBreakerSnapshot
{
    /// <summary>The breaker's name.</summary>
    public required string Name { get; init; }

    /// <summary>Current state (always <see cref="CircuitState.Closed"/> when the breaker is disabled).</summary>
    public required CircuitState State { get; init; }

    /// <summary>False when the breaker is switched off (<c>ENABLE_CIRCUIT_BREAKER=false</c>).</summary>
    public required bool Enabled { get; init; }

    /// <summary>Consecutive failures counted in the closed state.</summary>
    public required int ConsecutiveFailures { get; init; }

    /// <summary>Successful trial calls in the current half-open period.</summary>
    public required int TrialSuccesses { get; init; }

    /// <summary>Trial calls in flight in the current half-open period.</summary>
    public required int TrialsInFlight { get; init; }

    /// <summary>Opens since the circuit last closed; selects the next open delay.</summary>
    public required int ConsecutiveOpens { get; init; }

    /// <summary>End of the current open delay; null unless open.</summary>
    public required DateTimeOffset? RetryAt { get; init; }

    /// <summary>Calls attempted through the breaker (passed or rejected).</summary>
    public required long TotalCalls { get; init; }

    /// <summary>Calls rejected without being made.</summary>
    public required long RejectedCalls { get; init; }

    /// <summary>Calls that exceeded their timeout.</summary>
    public required long Timeouts { get; init; }

    /// <summary>Calls recorded as failures (timeouts included).</summary>
    public required long Failures { get; init; }

    /// <summary>Calls recorded as successes.</summary>
    public required long Successes { get; init; }
}
