using System.Globalization;

namespace Cfn.Coordination.Validation;

/// <summary>
/// The built-in validation, a stand-in for real validators: it takes a random time and fails at a configured rate.
/// Durations are log-normal, set by their median and 95th percentile (<c>VALIDATION_DURATION_MEDIAN_MS</c>,
/// <c>VALIDATION_DURATION_P95_MS</c>): <c>exp(μ + σz)</c> with <c>μ = ln(median)</c>, <c>σ = ln(p95/median)/1.645</c>
/// and z standard normal, capped at <see cref="MaxDurationFactor"/> × p95. A log-normal has the long right tail real
/// validation times have; median = p95 gives a fixed duration. Each validation fails with probability
/// <c>VALIDATION_FAILURE_RATE</c>. Delays run on the given <see cref="TimeProvider"/> and the random source is
/// injectable, so tests are exact.
/// </summary>
public sealed class BuiltInValidation : IValidation
{
    /// <summary>The 95th percentile of the standard normal distribution.</summary>
    public const double Z95 = 1.6448536269514722;

    /// <summary>No duration exceeds this many times the p95 (the tail is cut, not the shape).</summary>
    public const double MaxDurationFactor = 20;

    private readonly Random _random;
    private readonly TimeProvider _time;
    private readonly double _mu;
    private readonly double _sigma;
    private readonly double _cap;
    private readonly Lock _gate = new(); // Random is not thread-safe, and one validation may serve several workers

    /// <summary>Creates the validation from <paramref name="options"/> (median, p95, failure rate).</summary>
    /// <param name="options">Validated options.</param>
    /// <param name="time">Clock of the delays (system clock when null).</param>
    /// <param name="random">Random source (a shared one when null); pass a seeded one for repeatable tests.</param>
    public BuiltInValidation(ValidatorOptions options, TimeProvider? time = null, Random? random = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        Median = options.DurationMedian;
        P95 = options.DurationP95;
        FailureRate = options.FailureRate;
        _time = time ?? TimeProvider.System;
        _random = random ?? Random.Shared;
        _mu = Math.Log(Math.Max(Median.TotalMilliseconds, 0.001));
        _sigma = Math.Log(Math.Max(P95.TotalMilliseconds, 0.001) / Math.Max(Median.TotalMilliseconds, 0.001)) / Z95;
        _cap = P95.TotalMilliseconds * MaxDurationFactor;
    }

    /// <summary>Median duration.</summary>
    public TimeSpan Median { get; }

    /// <summary>95th percentile of the duration.</summary>
    public TimeSpan P95 { get; }

    /// <summary>Probability (0..1) of a fail verdict.</summary>
    public double FailureRate { get; }

    /// <summary>Draws the next duration and outcome (no waiting).</summary>
    public (TimeSpan Duration, bool Fails) Next()
    {
        double z, failDraw;
        lock (_gate)
        {
            // Box–Muller: two uniforms give one standard normal; 1 − u keeps the logarithm finite.
            var u1 = 1.0 - _random.NextDouble();
            var u2 = _random.NextDouble();
            z = Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2);
            failDraw = _random.NextDouble();
        }

        var ms = Math.Min(Math.Exp(_mu + (_sigma * z)), _cap);
        return (TimeSpan.FromMilliseconds(Math.Round(ms)), failDraw < FailureRate);
    }

    /// <inheritdoc/>
    public async Task<ValidationVerdict> ValidateAsync(ValidationRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        var (duration, fails) = Next();
        if (duration > TimeSpan.Zero)
        {
            await Task.Delay(duration, _time, cancellationToken).ConfigureAwait(false);
        }

        return fails
            ? ValidationVerdict.Fail(string.Create(CultureInfo.InvariantCulture,
                $"simulated failure (VALIDATION_FAILURE_RATE={FailureRate})"))
            : ValidationVerdict.Pass;
    }
}
