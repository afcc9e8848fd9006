using System.Text.Json;

namespace Cfn.Coordination.Validation;

/// <summary>
/// The payload of a <c>validation</c> signal (coordinator → validator), camelCase on the wire:
/// <c>{ "workId", "input", "requestedAt" }</c>.
/// </summary>
public sealed record ValidationRequest
{
    /// <summary>The work item being validated; the verdict names it so the coordinator can route it.</summary>
    public required string WorkId { get; init; }

    /// <summary>What to validate (any JSON).</summary>
    public required JsonElement Input { get; init; }

    /// <summary>When the coordinator asked (its clock, ms since the epoch).</summary>
    public required long RequestedAt { get; init; }
}

/// <summary>The two verdict values on the wire.</summary>
internal static class Verdicts
{
    /// <summary>The input passed validation.</summary>
    public const string Pass = "pass";

    /// <summary>The input failed validation.</summary>
    public const string Fail = "fail";
}

/// <summary>
/// The payload of the <c>completion</c> signal a validator answers with (validator → coordinator):
/// <c>{ "workId", "validatorId", "verdict": "pass"|"fail", "reason"?, "durationMs", "cached", "requestMessageId" }</c>.
/// </summary>
internal sealed record ValidationCompletion
{
    /// <summary>The validated work item.</summary>
    public required string WorkId { get; init; }

    /// <summary>The validator that decided.</summary>
    public required string ValidatorId { get; init; }

    /// <summary><see cref="Verdicts.Pass"/> or <see cref="Verdicts.Fail"/>.</summary>
    public required string Verdict { get; init; }

    /// <summary>Why it failed (or any note); omitted when absent.</summary>
    public string? Reason { get; init; }

    /// <summary>How long the validator took, from the validation signal entering its inbox to the verdict (ms).</summary>
    public required long DurationMs { get; init; }

    /// <summary>True when the verdict came from the validation cache (<c>ENABLE_VALIDATION_CACHE</c>).</summary>
    public bool Cached { get; init; }

    /// <summary>
    /// The message ID of the request this answers, as the requester sent it (for a request handed over from a dead
    /// validator, the original one): the requester, or the replacement that adopted its item, matches verdicts by it (D16).
    /// </summary>
    public string? RequestMessageId { get; init; }

    /// <summary>True when <see cref="Verdict"/> is <see cref="Verdicts.Pass"/>.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public bool Passed => string.Equals(Verdict, Verdicts.Pass, StringComparison.Ordinal);
}

/// <summary>What an <see cref="IValidation"/> decided.</summary>
/// <param name="Passed">True for a pass.</param>
/// <param name="Reason">Why it failed (optional).</param>
public sealed record ValidationVerdict(bool Passed, string? Reason = null)
{
    /// <summary>A pass.</summary>
    public static ValidationVerdict Pass { get; } = new(true);

    /// <summary>A fail with its reason.</summary>
    public static ValidationVerdict Fail(string reason) => new(false, reason);

    /// <summary>The wire value: <see cref="Verdicts.Pass"/> or <see cref="Verdicts.Fail"/>.</summary>
    public string Wire => Passed ? Verdicts.Pass : Verdicts.Fail;
}

/// <summary>A validation (pluggable): decides about one input. It may take long; it must honour cancellation.</summary>
public interface IValidation
{
    /// <summary>Validates <paramref name="request"/>. An exception counts as a fail verdict naming it.</summary>
    Task<ValidationVerdict> ValidateAsync(ValidationRequest request, CancellationToken cancellationToken);
}
