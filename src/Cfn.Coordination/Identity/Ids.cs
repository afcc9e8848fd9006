namespace Cfn.Coordination.Identity;

/// <summary>
/// The one identifier validator (D7, SPEC §0.4). IDs are refused, never rewritten: every key is built from IDs
/// that passed here, so glob metacharacters, whitespace, control characters and separators can never reach a
/// key name or a <c>SCAN MATCH</c> pattern.
/// </summary>
public static class Ids
{
    /// <summary>Longest coordinator, swarm, agent or work ID.</summary>
    public const int MaxNameLength = 64;

    /// <summary>Longest signal or message ID.</summary>
    public const int MaxSignalIdLength = 256;

    /// <summary>The rule for names, as quoted in errors.</summary>
    public const string NameRule = "must match ^[A-Za-z0-9_-]{1,64}$ (letters, digits, '_' and '-', 1 to 64 characters)";

    /// <summary>The rule for signal IDs, as quoted in errors.</summary>
    public const string SignalRule =
        "must be ':'-separated non-empty segments of [A-Za-z0-9_-], at most 256 characters in total";

    /// <summary>Throws <see cref="InvalidIdException"/> unless <paramref name="value"/> is a valid name; returns it.</summary>
    public static string RequireName(string? value, string field)
    {
        if (!IsValidName(value))
        {
            throw new InvalidIdException(field, NameRule, value);
        }

        return value!;
    }

    /// <summary>Throws <see cref="InvalidIdException"/> unless <paramref name="value"/> is a valid signal ID; returns it.</summary>
    public static string RequireSignalId(string? value, string field)
    {
        if (!IsValidSignalId(value))
        {
            throw new InvalidIdException(field, SignalRule, value);
        }

        return value!;
    }

    /// <summary>Validates by kind.</summary>
    public static string Require(string? value, string field, IdKind kind) =>
        kind == IdKind.Name ? RequireName(value, field) : RequireSignalId(value, field);

    /// <summary>True when <paramref name="value"/> is a valid coordinator, swarm, agent or work ID.</summary>
    public static bool IsValidName(string? value) =>
        value is { Length: > 0 and <= MaxNameLength } && !value.AsSpan().ContainsAnyExcept(SegmentChars);

    /// <summary>[A-Za-z0-9_-]: checked on every key built, so vectorised and allocation-free (not LINQ over a string).</summary>
    private static readonly System.Buffers.SearchValues<char> SegmentChars =
        System.Buffers.SearchValues.Create("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-");

    /// <summary>True when <paramref name="value"/> is a valid signal or message ID.</summary>
    public static bool IsValidSignalId(string? value)
    {
        if (value is not { Length: > 0 and <= MaxSignalIdLength })
        {
            return false;
        }

        var segmentLength = 0;
        foreach (var c in value)
        {
            if (c == ':')
            {
                if (segmentLength == 0)
                {
                    return false;
                }

                segmentLength = 0;
            }
            else if (IsSegmentChar(c))
            {
                segmentLength++;
            }
            else
            {
                return false;
            }
        }

        return segmentLength > 0;
    }

    private static bool IsSegmentChar(char c) =>
        c is (>= 'a' and <= 'z') or (>= 'A' and <= 'Z') or (>= '0' and <= '9') or '_' or '-';
}
