using System.Text;
using System.Text.Json;

namespace Cfn.Api;

/// <summary>
/// Reads small JSON request bodies by hand, so every error names the field and its rule (a 400 from model binding
/// would not) and the raw text stays available for signature checks.
/// </summary>
internal static class JsonBody
{
    /// <summary>Reads at most <paramref name="maxBytes"/> bytes of body as UTF-8; null when it is longer.</summary>
    public static async Task<string?> ReadTextAsync(HttpRequest request, int maxBytes, CancellationToken cancellationToken)
    {
        using var buffer = new MemoryStream();
        var chunk = new byte[8192];
        while (true)
        {
            var read = await request.Body.ReadAsync(chunk, cancellationToken).ConfigureAwait(false);
            if (read == 0)
            {
                break;
            }

            if (buffer.Length + read > maxBytes)
            {
                return null;
            }

            buffer.Write(chunk, 0, read);
        }

        return Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
    }

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
                error = Invalid("body", "the request body must be a JSON object");
                return false;
            }

            body = document.RootElement.Clone();
            return true;
        }
        catch (JsonException e)
        {
            error = Invalid("body", "the request body is not valid JSON: " + e.Message);
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
            error = Invalid(field, $"{field} must be a string");
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
            error = Invalid(field, $"{field} must be an integer from {min} to {max}");
            return false;
        }

        value = number;
        return true;
    }

    /// <summary>400 <c>{error, code, field}</c>; <c>INVALID_ID</c> for ID fields, <c>VALIDATION_ERROR</c> otherwise.</summary>
    public static IResult Invalid(string field, string error, string code = "VALIDATION_ERROR") =>
        Results.Json(new { error, code, field }, statusCode: StatusCodes.Status400BadRequest);

    /// <summary>400 for an ID that broke its rule.</summary>
    public static IResult InvalidId(string field, string rule) => Invalid(field, $"Invalid {field}: {rule}", "INVALID_ID");
}
