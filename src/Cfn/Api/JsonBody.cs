using System.Text.Json;

namespace Cfn.Api;

/// <summary>
/// Parses small JSON request bodies by hand, so every error names the field and its rule (a 400 from model binding
/// would not) and the raw text stays available for signature checks; <see cref="RequestBody"/> reads them.
/// </summary>
internal static class JsonBody
{
    /// <summary>Parses <paramref name="text"/> as a JSON object; an empty body is an empty object.</summary>
    public static bool TryParseObject(string text, out JsonElement body, out IResult? error)
    {
        error = null;
        body = default;
        if (string.IsNullOrWhiteSpace(text))
        {
            text = "{}";
        }

        try
        {
            using var document = JsonDocument.Parse(text);
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                error = ApiErrors.Invalid("body", "the request body must be a JSON object");
                return false;
            }

            body = document.RootElement.Clone();
            return true;
        }
        catch (JsonException e)
        {
            error = ApiErrors.Invalid("body", "the request body is not valid JSON: " + e.Message);
            return false;
        }
    }

    /// <summary>An optional string field; a present non-string value is an error.</summary>
    public static bool TryString(JsonElement body, string field, out string? value, out IResult? error)
    {
        value = null;
        error = null;
        if (!body.TryGetProperty(field, out var element) || element.ValueKind == JsonValueKind.Null)
        {
            return true;
        }

        if (element.ValueKind != JsonValueKind.String)
        {
            error = ApiErrors.Invalid(field, $"{field} must be a string");
            return false;
        }

        value = element.GetString();
        return true;
    }

    /// <summary>An optional integer field within [<paramref name="min"/>, <paramref name="max"/>].</summary>
    public static bool TryInt(JsonElement body, string field, int min, int max, out int? value, out IResult? error)
    {
        value = null;
        error = null;
        if (!body.TryGetProperty(field, out var element) || element.ValueKind == JsonValueKind.Null)
        {
            return true;
        }

        if (element.ValueKind != JsonValueKind.Number || !element.TryGetInt32(out var number) || number < min || number > max)
        {
            error = ApiErrors.Invalid(field, $"{field} must be an integer from {min} to {max}");
            return false;
        }

        value = number;
        return true;
    }
}
