namespace Cfn.Coordination.Identity;

/// <summary>
/// An identifier broke its rule. Thrown before anything is written to Redis, so a refused ID leaves no trace.
/// </summary>
public sealed class InvalidIdException : ArgumentException
{
    /// <summary>Creates the exception for <paramref name="field"/>, which broke <paramref name="rule"/>.</summary>
    public InvalidIdException(string field, string rule, string? value)
        : base($"Invalid {field}: {rule} (got {Describe(value)})", field)
    {
        Field = field;
        Rule = rule;
    }

    /// <summary>The name of the field that carried the bad value, e.g. <c>coordinatorId</c>.</summary>
    public string Field { get; }

    /// <summary>The rule that was broken, in words.</summary>
    public string Rule { get; }

    private static string Describe(string? value)
    {
        if (value is null)
        {
            return "null";
        }

        // Never echo control characters or huge values into a log line.
        var shown = value.Length > 80 ? value[..80] + "…" : value;
        var safe = string.Concat(shown.Select(c => char.IsControl(c) ? $"\\u{(int)c:x4}" : c.ToString()));
        return $"\"{safe}\", {value.Length} characters";
    }
}
