using System.ComponentModel.DataAnnotations;

namespace Cfn.Coordination;

/// <summary>
/// The checks every options class runs in its <c>Validate()</c>, written once: its data annotations (<c>[Range]</c> and
/// the like, each message naming the setting), and the rules annotations cannot express. Each failure is a
/// <see cref="ValidationException"/> whose message names the setting and the rule, which the executable prints as its
/// one line before exiting 2.
/// </summary>
internal static class OptionsValidation
{
    /// <summary>Throws when any data annotation of <paramref name="options"/> fails, with every failing message.</summary>
    public static void Annotations(object options)
    {
        var results = new List<ValidationResult>();
        if (!Validator.TryValidateObject(options, new ValidationContext(options), results, validateAllProperties: true))
        {
            throw new ValidationException(string.Join("; ", results.Select(r => r.ErrorMessage)));
        }
    }

    /// <summary>Throws when <paramref name="value"/> is zero or negative; <paramref name="name"/> is the setting (its variable).</summary>
    public static void Positive(TimeSpan value, string name)
    {
        if (value <= TimeSpan.Zero)
        {
            throw new ValidationException($"{name} must be positive");
        }
    }
}
