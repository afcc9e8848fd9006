namespace Cfn.Coordination.Resilience;

/// <summary>Data of <see cref="ICircuitBreaker.StateChanged"/>: one transition of one breaker.</summary>
public sealed class CircuitStateChangedEventArgs : EventArgs
{
    /// <summary>Creates the event data.</summary>
    public CircuitStateChangedEventArgs(string name, CircuitState from, CircuitState to, DateTimeOffset at, DateTimeOffset? retryAt)
    {
        Name = name;
        From = from;
        To = to;
        At = at;
        RetryAt = retryAt;
    }

    /// <summary>The breaker's name.</summary>
    public string Name { get; }

    /// <summary>State before the transition.</summary>
    public CircuitState From { get; }

    /// <summary>State after the transition.</summary>
    public CircuitState To { get; }

    /// <summary>When the transition happened, on the breaker's <see cref="TimeProvider"/>.</summary>
    public DateTimeOffset At { get; }

    /// <summary>When the circuit may next be tried, for a transition to <see cref="CircuitState.Open"/>; otherwise null.</summary>
    public DateTimeOffset? RetryAt { get; }
}
