using System.Collections;
using System.ComponentModel.DataAnnotations;
using System.Globalization;

namespace Cfn.Coordination.Validation;

/// <summary>
/// Settings of a validator (SPEC §3.6, runbook #27). Each documents the environment variable that sets it; a bad value
/// is a <see cref="ValidationException"/> naming the variable.
/// </summary>
public sealed class ValidatorOptions
{
    /// <summary>Default <see cref="DurationMedian"/>.</summary>
    public static readonly TimeSpan DefaultDurationMedian = TimeSpan.FromMilliseconds(200);

    /// <summary>Default <see cref="DurationP95"/>.</summary>
    public static readonly TimeSpan DefaultDurationP95 = TimeSpan.FromMilliseconds(1000);

    /// <summary>Default <see cref="Concurrency"/>.</summary>
    public const int DefaultConcurrency = 1;

    /// <summary>Default <see cref="QueueCapacity"/>.</summary>
    public const int DefaultQueueCapacity = 8;

    /// <summary>Verdicts of identical inputs are cached (<c>ENABLE_VALIDATION_CACHE</c>, false).</summary>
    public bool EnableCache { get; set; }

    /// <summary>How long a cached verdict is kept (<c>VALIDATION_CACHE_TTL_SECONDS</c>, 3600).</summary>
    public int CacheTtlSeconds { get; set; } = 3600;

    /// <summary>Built-in validation: median duration (<c>VALIDATION_DURATION_MEDIAN_MS</c>, 200).</summary>
    public TimeSpan DurationMedian { get; set; } = DefaultDurationMedian;

    /// <summary>Built-in validation: 95th percentile of the duration (<c>VALIDATION_DURATION_P95_MS</c>, 1000; at least the median).</summary>
    public TimeSpan DurationP95 { get; set; } = DefaultDurationP95;

    /// <summary>Built-in validation: probability of a fail verdict, 0 to 1 (<c>VALIDATION_FAILURE_RATE</c>, 0.05).</summary>
    public double FailureRate { get; set; } = 0.05;

    /// <summary>Rolling window of the duration statistics (<c>VALIDATOR_STATS_WINDOW_MS</c>, 3600000).</summary>
    public TimeSpan StatsWindow { get; set; } = TimeSpan.FromMilliseconds(3_600_000);

    /// <summary>How often a validator refreshes its entry in the live-validator registry (<c>VALIDATOR_REGISTRATION_INTERVAL_MS</c>, 10000).</summary>
    public TimeSpan RegistrationInterval { get; set; } = TimeSpan.FromMilliseconds(10_000);

    /// <summary>
    /// The user's validation program (<c>VALIDATION_COMMAND</c>): its argv, program first, never a shell string. One process
    /// per validation reads the request JSON on stdin and writes a verdict JSON on stdout. Null: not used.
    /// </summary>
    public IReadOnlyList<string>? Command { get; set; }

    /// <summary>The user's validation endpoint (<c>VALIDATION_URL</c>, absolute http or https): the request JSON is POSTed, a verdict JSON comes back. Null: not used.</summary>
    public Uri? Url { get; set; }

    /// <summary>How long one command or URL validation may take before it is killed or abandoned as a fail (<c>VALIDATION_TIMEOUT_MS</c>, 60000).</summary>
    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>
    /// How many validations one validator runs at once (<c>VALIDATOR_CONCURRENCY</c>, 1, at most 64). Signals are ACKed on
    /// arrival whatever this is; it only sets how many of the accepted ones are validated in parallel. One keeps a
    /// user's <c>VALIDATION_COMMAND</c> or <c>VALIDATION_URL</c> seeing one request at a time, as before, and a validator
    /// from competing for the two cores it shares with the coordinators; raise it for validations that mostly wait.
    /// </summary>
    public int Concurrency { get; set; } = DefaultConcurrency;

    /// <summary>
    /// How many accepted (ACKed) validation signals may wait for a free validation slot (<c>VALIDATOR_QUEUE_CAPACITY</c>,
    /// 8, 0 to 10000). A validator holds at most <see cref="Concurrency"/> + this many signals ACKed and unanswered; when
    /// it holds that many it reads no further, so the next sender's ACK waits (back-pressure) until a verdict is sent.
    /// </summary>
    public int QueueCapacity { get; set; } = DefaultQueueCapacity;

    /// <summary>Which validation runs: <c>command</c>, <c>url</c> or <c>built-in</c> (the simulated one, the default of <c>cfn up</c>).</summary>
    public string Kind => Command is not null ? "command" : Url is not null ? "url" : "built-in";

    /// <summary>Validates, naming the first bad setting.</summary>
    /// <exception cref="ValidationException">A setting is out of range.</exception>
    public void Validate()
    {
        if (CacheTtlSeconds is < 1 or > 30 * 86_400)
        {
            throw new ValidationException($"VALIDATION_CACHE_TTL_SECONDS must be from 1 to {30 * 86_400} (got {CacheTtlSeconds})");
        }

        if (DurationMedian <= TimeSpan.Zero || DurationMedian > TimeSpan.FromDays(1))
        {
            throw new ValidationException("VALIDATION_DURATION_MEDIAN_MS must be positive and at most one day");
        }

        if (DurationP95 < DurationMedian || DurationP95 > TimeSpan.FromDays(1))
        {
            throw new ValidationException(string.Create(CultureInfo.InvariantCulture,
                $"VALIDATION_DURATION_P95_MS must be at least VALIDATION_DURATION_MEDIAN_MS ({(long)DurationMedian.TotalMilliseconds}) and at most one day (got {(long)DurationP95.TotalMilliseconds})"));
        }

        if (double.IsNaN(FailureRate) || FailureRate is < 0 or > 1)
        {
            throw new ValidationException(string.Create(CultureInfo.InvariantCulture,
                $"VALIDATION_FAILURE_RATE must be a number from 0 to 1 (got {FailureRate})"));
        }

        if (StatsWindow < TimeSpan.FromSeconds(1) || StatsWindow > TimeSpan.FromDays(30))
        {
            throw new ValidationException("VALIDATOR_STATS_WINDOW_MS must be from 1000 to 30 days");
        }

        if (RegistrationInterval <= TimeSpan.Zero || RegistrationInterval > TimeSpan.FromHours(1))
        {
            throw new ValidationException("VALIDATOR_REGISTRATION_INTERVAL_MS must be positive and at most one hour");
        }

        if (Concurrency is < 1 or > 64)
        {
            throw new ValidationException(string.Create(CultureInfo.InvariantCulture,
                $"VALIDATOR_CONCURRENCY must be from 1 to 64 (got {Concurrency})"));
        }

        if (QueueCapacity is < 0 or > 10_000)
        {
            throw new ValidationException(string.Create(CultureInfo.InvariantCulture,
                $"VALIDATOR_QUEUE_CAPACITY must be from 0 to 10000 (got {QueueCapacity})"));
        }

        if (Command is not null && Url is not null)
        {
            throw new ValidationException("VALIDATION_COMMAND and VALIDATION_URL are exclusive: set one of them");
        }

        if (Command is not null && (Command.Count == 0 || string.IsNullOrWhiteSpace(Command[0]) || Command.Any(a => a is null || a.Contains('\0', StringComparison.Ordinal))))
        {
            throw new ValidationException("VALIDATION_COMMAND must name a program (a path, or a JSON array of strings whose first is the program) with no NUL character");
        }

        if (Url is not null && (!Url.IsAbsoluteUri || (Url.Scheme != Uri.UriSchemeHttp && Url.Scheme != Uri.UriSchemeHttps)))
        {
            throw new ValidationException("VALIDATION_URL must be an absolute http:// or https:// URL");
        }

        if (Timeout <= TimeSpan.Zero || Timeout > TimeSpan.FromDays(1))
        {
            throw new ValidationException("VALIDATION_TIMEOUT_MS must be positive and at most one day");
        }
    }

    /// <summary>Reads the validator variables (process environment when null), then validates.</summary>
    /// <exception cref="ValidationException">A value is invalid; the message names the variable.</exception>
    public static ValidatorOptions FromEnvironment(IDictionary? environment = null)
    {
        var env = new EnvironmentSettings(environment);
        var o = new ValidatorOptions();
        o.EnableCache = env.Flag("ENABLE_VALIDATION_CACHE") ?? o.EnableCache;
        o.CacheTtlSeconds = env.PositiveInt("VALIDATION_CACHE_TTL_SECONDS") ?? o.CacheTtlSeconds;
        o.DurationMedian = env.Milliseconds("VALIDATION_DURATION_MEDIAN_MS") ?? o.DurationMedian;
        o.DurationP95 = env.Milliseconds("VALIDATION_DURATION_P95_MS") ?? o.DurationP95;
        o.FailureRate = Fraction(env, "VALIDATION_FAILURE_RATE") ?? o.FailureRate;
        o.StatsWindow = env.Milliseconds("VALIDATOR_STATS_WINDOW_MS") ?? o.StatsWindow;
        o.RegistrationInterval = env.Milliseconds("VALIDATOR_REGISTRATION_INTERVAL_MS") ?? o.RegistrationInterval;
        o.Concurrency = env.PositiveInt("VALIDATOR_CONCURRENCY") ?? o.Concurrency;
        o.QueueCapacity = env.WholeNumber("VALIDATOR_QUEUE_CAPACITY") ?? o.QueueCapacity;
        o.Command = ParseCommand(env.Text("VALIDATION_COMMAND"));
        o.Url = env.Text("VALIDATION_URL") is { } url
            ? Uri.TryCreate(url, UriKind.Absolute, out var uri) ? uri : throw new ValidationException("VALIDATION_URL must be an absolute http:// or https:// URL")
            : null;
        o.Timeout = env.Milliseconds("VALIDATION_TIMEOUT_MS") ?? o.Timeout;
        o.Validate();
        return o;
    }

    /// <summary>
    /// <c>VALIDATION_COMMAND</c> as argv: a JSON array of strings (<c>["python3", "/app/check.py", "--strict"]</c>), or
    /// else the whole value as the program's path. It is never split on spaces nor given to a shell, so no argument can
    /// inject a command.
    /// </summary>
    internal static IReadOnlyList<string>? ParseCommand(string? text)
    {
        if (text is null)
        {
            return null;
        }

        if (!text.StartsWith('['))
        {
            return [text];
        }

        try
        {
            var argv = System.Text.Json.JsonSerializer.Deserialize(text, Redis.JsonContext.Default.StringArray);
            return argv is { Length: > 0 } ? argv : throw new ValidationException("VALIDATION_COMMAND must be a non-empty JSON array of strings");
        }
        catch (System.Text.Json.JsonException e)
        {
            throw new ValidationException("VALIDATION_COMMAND must be a JSON array of strings: " + e.Message);
        }
    }

    /// <summary>A number from 0 to 1 (invariant culture), or null when unset.</summary>
    internal static double? Fraction(EnvironmentSettings env, string name) => env.Text(name) is not { } text
        ? null
        : double.TryParse(text, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var value) && value is >= 0 and <= 1
            ? value
            : throw new ValidationException($"{name} must be a number from 0 to 1 (got \"{text}\")");
}
