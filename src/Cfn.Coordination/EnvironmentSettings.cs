using System.Collections;
using System.ComponentModel.DataAnnotations;
using System.Globalization;

namespace Cfn.Coordination;

/// <summary>
/// Reads configuration variables (SPEC §3.6) the same way everywhere: blank means unset, and a bad value is a
/// <see cref="ValidationException"/> that names the variable and the rule.
/// </summary>
public sealed class EnvironmentSettings(IDictionary? environment = null)
{
    private readonly IDictionary _environment = environment ?? Environment.GetEnvironmentVariables();

    /// <summary>The trimmed value, or null when unset or blank.</summary>
    public string? Text(string name) => _environment[name] as string is { Length: > 0 } v && v.Trim().Length > 0 ? v.Trim() : null;

    /// <summary>A positive integer, or null when unset.</summary>
    public long? Positive(string name) => Text(name) is not { } text
        ? null
        : long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var value) && value > 0
            ? value
            : throw new ValidationException($"{name} must be a positive integer (got \"{text}\")");

    /// <summary>A positive integer that fits an <see cref="int"/>, or null when unset.</summary>
    public int? PositiveInt(string name) => Positive(name) is not { } value
        ? null
        : value <= int.MaxValue ? (int)value : throw new ValidationException($"{name} is too large (got {value})");

    /// <summary>A whole number from 0 (zero allowed, unlike <see cref="PositiveInt"/>), or null when unset.</summary>
    internal int? WholeNumber(string name) => Text(name) is not { } text
        ? null
        : int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var value)
            ? value
            : throw new ValidationException($"{name} must be a whole number from 0 (got \"{text}\")");

    /// <summary>A duration in milliseconds, or null when unset.</summary>
    public TimeSpan? Milliseconds(string name) => Positive(name) is { } ms ? TimeSpan.FromMilliseconds(ms) : null;

    /// <summary><c>true</c>/<c>false</c> (or 1/0), or null when unset.</summary>
    public bool? Flag(string name) => Text(name) switch
    {
        null => null,
        var t when t.Equals("true", StringComparison.OrdinalIgnoreCase) || t == "1" => true,
        var t when t.Equals("false", StringComparison.OrdinalIgnoreCase) || t == "0" => false,
        var t => throw new ValidationException($"{name} must be true or false (got \"{t}\")"),
    };
}
