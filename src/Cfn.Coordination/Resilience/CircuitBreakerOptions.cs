using System.Collections;
using System.ComponentModel.DataAnnotations;
using System.Globalization;

namespace Cfn.Coordination.Resilience;

/// <summary>
/// Settings of one <see cref="CircuitBreaker"/> (SPEC §2.14, D10). The defaults are the TS defaults with its bugs fixed:
/// the first open waits <c>Delays[0]</c>, <see cref="Cooldown"/> is honoured, the half-open limit counts calls in
/// flight, and zero values are not silently replaced by defaults (the TS breaker did all three differently). A breaker copies its options when it is created, so
/// later changes to this object do not affect it.
/// </summary>
public sealed class CircuitBreakerOptions
{
    /// <summary>The default open delays: 1 s, 2 s, 4 s, 8 s.</summary>
    public static IReadOnlyList<TimeSpan> DefaultDelays { get; } =
        [TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(4), TimeSpan.FromSeconds(8)];

    /// <summary>Consecutive failures in the closed state that open the circuit (3).</summary>
    public int FailureThreshold { get; set; } = 3;

    /// <summary>Successful trial calls in the half-open state that close the circuit (2).</summary>
    public int SuccessThreshold { get; set; } = 2;

    /// <summary>
    /// Open delays (1 s, 2 s, 4 s, 8 s). The n-th consecutive open waits <c>Delays[min(n − 1, Count − 1)]</c>: the first
    /// open waits <c>Delays[0]</c>, every re-open from the half-open state the next one, capped at the last. Closing the
    /// circuit starts the schedule again.
    /// </summary>
    public IReadOnlyList<TimeSpan> Delays { get; set; } = DefaultDelays;

    /// <summary>Largest number of trial calls <em>in flight</em> at once in the half-open state (3).</summary>
    public int HalfOpenLimit { get; set; } = 3;

    /// <summary>When set, every open waits exactly this long instead of following <see cref="Delays"/>.</summary>
    public TimeSpan? Cooldown { get; set; }

    /// <summary>
    /// Default per-call timeout of <see cref="CircuitBreaker.ExecuteAsync{T}"/> (30 s); null for none. A timed-out call's
    /// token is cancelled, the call counts as a failure, and a <see cref="TimeoutException"/> is thrown.
    /// </summary>
    public TimeSpan? Timeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// False turns the breaker off (<c>ENABLE_CIRCUIT_BREAKER=false</c>): it never rejects and never opens, and reports
    /// <see cref="CircuitState.Closed"/>. Per-call timeouts still apply.
    /// </summary>
    public bool Enabled { get; set; } = true;

    /// <summary>
    /// Which exceptions count as failures; null (the default) counts every exception. Whatever this says, an
    /// <see cref="OperationCanceledException"/> caused by the caller's own token is never a failure, and a timeout of the
    /// breaker is always one. An exception that is not handled is rethrown and counts neither as a failure nor as a
    /// success.
    /// </summary>
    public Func<Exception, bool>? ShouldHandle { get; set; }

    /// <summary>Throws <see cref="ValidationException"/> naming the first bad field.</summary>
    public void Validate()
    {
        if (FailureThreshold < 1)
        {
            throw new ValidationException($"{nameof(FailureThreshold)} must be at least 1 (got {FailureThreshold})");
        }

        if (SuccessThreshold < 1)
        {
            throw new ValidationException($"{nameof(SuccessThreshold)} must be at least 1 (got {SuccessThreshold})");
        }

        if (HalfOpenLimit < 1)
        {
            throw new ValidationException($"{nameof(HalfOpenLimit)} must be at least 1 (got {HalfOpenLimit})");
        }

        if (Delays is null || Delays.Count == 0)
        {
            throw new ValidationException($"{nameof(Delays)} must contain at least one delay");
        }

        for (var i = 0; i < Delays.Count; i++)
        {
            if (Delays[i] <= TimeSpan.Zero)
            {
                throw new ValidationException(
                    string.Create(CultureInfo.InvariantCulture, $"{nameof(Delays)}[{i}] must be positive (got {Delays[i].TotalMilliseconds} ms)"));
            }
        }

        if (Cooldown is { } cooldown && cooldown <= TimeSpan.Zero)
        {
            throw new ValidationException(
                string.Create(CultureInfo.InvariantCulture, $"{nameof(Cooldown)} must be positive when set (got {cooldown.TotalMilliseconds} ms)"));
        }

        if (Timeout is { } timeout && timeout <= TimeSpan.Zero && timeout != System.Threading.Timeout.InfiniteTimeSpan)
        {
            throw new ValidationException(
                string.Create(CultureInfo.InvariantCulture, $"{nameof(Timeout)} must be positive when set (got {timeout.TotalMilliseconds} ms)"));
        }
    }

    /// <summary>A copy of these options (the delay list is copied too).</summary>
    public CircuitBreakerOptions Clone() => new()
    {
        FailureThreshold = FailureThreshold,
        SuccessThreshold = SuccessThreshold,
        Delays = Delays is null ? null! : [.. Delays],
        HalfOpenLimit = HalfOpenLimit,
        Cooldown = Cooldown,
        Timeout = Timeout,
        Enabled = Enabled,
        ShouldHandle = ShouldHandle,
    };

    /// <summary>
    /// Default options with <see cref="Enabled"/> read from <c>ENABLE_CIRCUIT_BREAKER</c> (<c>true</c>/<c>false</c>/<c>1</c>/<c>0</c>;
    /// true when unset) in <paramref name="environment"/> (the process environment when null).
    /// </summary>
    /// <exception cref="ValidationException">The variable is set to something else; the message names it.</exception>
    public static CircuitBreakerOptions FromEnvironment(IDictionary? environment = null)
    {
        var options = new CircuitBreakerOptions();
        options.Enabled = new EnvironmentSettings(environment).Flag("ENABLE_CIRCUIT_BREAKER") ?? options.Enabled;
        return options;
    }
}
