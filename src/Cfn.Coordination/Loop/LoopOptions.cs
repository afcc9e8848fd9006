using System.Collections;
using System.ComponentModel.DataAnnotations;
using Cfn.Coordination.Validation;

namespace Cfn.Coordination.Loop;

/// <summary>
/// Settings of a coordinator's work loop. Each documents the environment variable that sets it; a bad value is a
/// <see cref="ValidationException"/> naming the variable.
/// </summary>
public sealed record LoopOptions
{
    /// <summary>Validators asked per work item (<c>VALIDATORS_PER_ITEM</c>, 2; fewer when fewer are live).</summary>
    public int ValidatorsPerItem { get; set; } = 2;

    /// <summary>External endpoint some items call (<c>EXTERNAL_API_URL</c>, absolute http(s) URL; unset = no calls).</summary>
    public Uri? ExternalApiUrl { get; set; }

    /// <summary>Share of items that call <see cref="ExternalApiUrl"/>, 0 to 1 (<c>EXTERNAL_CALL_RATE</c>, 0.1).</summary>
    public double ExternalCallRate { get; set; } = 0.1;

    /// <summary>Timeout of one external call up to its response headers (<c>EXTERNAL_API_TIMEOUT_MS</c>, 10000).</summary>
    public TimeSpan ExternalCallTimeout { get; set; } = TimeSpan.FromMilliseconds(10_000);

    /// <summary>
    /// A validator that has not reported for this long is not picked (<c>VALIDATOR_STALE_THRESHOLD_MS</c>, 30000; keep
    /// it at least twice the validators' <see cref="ValidatorOptions.RegistrationInterval"/>).
    /// </summary>
    public TimeSpan ValidatorStaleThreshold { get; set; } = TimeSpan.FromMilliseconds(30_000);

    /// <summary>How long one item waits for every ACK and verdict; null = the coordinator's <c>BLOCKING_TIMEOUT_MS</c>.</summary>
    public TimeSpan? ValidationTimeout { get; set; }

    /// <summary>How often the loop looks again while no validator is live (2 s).</summary>
    public TimeSpan NoValidatorsRetryInterval { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>Validates, naming the first bad setting.</summary>
    /// <exception cref="ValidationException">A setting is out of range.</exception>
    public void Validate()
    {
        if (ValidatorsPerItem is < 1 or > 100)
        {
            throw new ValidationException($"VALIDATORS_PER_ITEM must be from 1 to 100 (got {ValidatorsPerItem})");
        }

        if (ExternalApiUrl is { } url && (!url.IsAbsoluteUri || (url.Scheme != Uri.UriSchemeHttp && url.Scheme != Uri.UriSchemeHttps)))
        {
            throw new ValidationException($"EXTERNAL_API_URL must be an absolute http or https URL (got \"{url}\")");
        }

        if (double.IsNaN(ExternalCallRate) || ExternalCallRate is < 0 or > 1)
        {
            throw new ValidationException("EXTERNAL_CALL_RATE must be a number from 0 to 1");
        }

        if (ExternalCallTimeout <= TimeSpan.Zero || ExternalCallTimeout > TimeSpan.FromHours(1))
        {
            throw new ValidationException("EXTERNAL_API_TIMEOUT_MS must be positive and at most one hour");
        }

        if (ValidatorStaleThreshold <= TimeSpan.Zero)
        {
            throw new ValidationException("VALIDATOR_STALE_THRESHOLD_MS must be positive");
        }

        if (ValidationTimeout is { } timeout && (timeout <= TimeSpan.Zero || timeout > Acks.AckWaiter.MaxTimeout))
        {
            throw new ValidationException("ValidationTimeout must be more than 0 and at most 7 days");
        }

        if (NoValidatorsRetryInterval <= TimeSpan.Zero)
        {
            throw new ValidationException("NoValidatorsRetryInterval must be positive");
        }
    }

    /// <summary>Reads the loop variables (process environment when null), then validates.</summary>
    /// <exception cref="ValidationException">A value is invalid; the message names the variable.</exception>
    public static LoopOptions FromEnvironment(IDictionary? environment = null)
    {
        var env = new EnvironmentSettings(environment);
        var o = new LoopOptions();
        o.ValidatorsPerItem = env.PositiveInt("VALIDATORS_PER_ITEM") ?? o.ValidatorsPerItem;
        if (env.Text("EXTERNAL_API_URL") is { } text)
        {
            o.ExternalApiUrl = Uri.TryCreate(text, UriKind.Absolute, out var url)
                ? url
                : throw new ValidationException($"EXTERNAL_API_URL must be an absolute http or https URL (got \"{text}\")");
        }

        o.ExternalCallRate = ValidatorOptions.Fraction(env, "EXTERNAL_CALL_RATE") ?? o.ExternalCallRate;
        o.ExternalCallTimeout = env.Milliseconds("EXTERNAL_API_TIMEOUT_MS") ?? o.ExternalCallTimeout;
        o.ValidatorStaleThreshold = env.Milliseconds("VALIDATOR_STALE_THRESHOLD_MS") ?? o.ValidatorStaleThreshold;
        o.Validate();
        return o;
    }
}
