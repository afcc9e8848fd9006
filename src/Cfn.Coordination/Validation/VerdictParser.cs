using System.Text.Json;

namespace Cfn.Coordination.Validation;

/// <summary>
/// Reads the verdict a user's validation program or endpoint answers with: one JSON object
/// <c>{"verdict":"pass"|"fail","reason":"…"}</c> (other fields are ignored; <c>reason</c> is optional and must be a
/// string). Anything else is refused with a reason that names the field and the rule.
/// </summary>
internal static class VerdictParser
{
    /// <summary>Longest reason kept (a verdict's reason travels in the completion signal).</summary>
    public const int MaxReasonLength = 2000;

    public static bool TryParse(string text, out ValidationVerdict? verdict, out string? error)
    {
        verdict = null;
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(text.AsMemory().Trim());
        }
        catch (JsonException e)
        {
            error = "not JSON (" + e.Message.Split('.')[0] + ")";
            return false;
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                error = "the verdict must be a JSON object";
                return false;
            }

            if (!root.TryGetProperty("verdict", out var value) || value.ValueKind != JsonValueKind.String)
            {
                error = "field \"verdict\" must be the string \"pass\" or \"fail\"";
                return false;
            }

            string? reason = null;
            if (root.TryGetProperty("reason", out var reasonValue) && reasonValue.ValueKind != JsonValueKind.Null)
            {
                if (reasonValue.ValueKind != JsonValueKind.String)
                {
                    error = "field \"reason\" must be a string";
                    return false;
                }

                reason = reasonValue.GetString();
                if (reason!.Length > MaxReasonLength)
                {
                    reason = reason[..MaxReasonLength];
                }
            }

            switch (value.GetString())
            {
                case Verdicts.Pass:
                    verdict = new ValidationVerdict(true, reason);
                    break;
                case Verdicts.Fail:
                    verdict = ValidationVerdict.Fail(reason ?? "failed (no reason given)");
                    break;
                default:
                    error = "field \"verdict\" must be the string \"pass\" or \"fail\"";
                    return false;
            }

            error = null;
            return true;
        }
    }
}
