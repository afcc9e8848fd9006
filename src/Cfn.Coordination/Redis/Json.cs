using System.Text.Json;
using System.Text.Json.Serialization;

namespace Cfn.Coordination.Redis;

/// <summary>
/// JSON settings for every value cfn stores: camelCase, no whitespace (so <c>"timestamp":123</c> matches the legacy
/// <c>"timestamp":(\d+)</c> regexes), absent fields omitted, integers as bare numbers.
/// </summary>
internal static class Json
{
    public static readonly JsonSerializerOptions Options = new(JsonSerializerDefaults.Web)
    {
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        WriteIndented = false,
        NumberHandling = JsonNumberHandling.Strict,
    };

    public static string Serialize<T>(T value) => JsonSerializer.Serialize(value, Options);

    /// <summary>Parses a value read from Redis; a malformed one gives false and a reason, never an exception.</summary>
    public static bool TryDeserialize<T>(string? text, out T? value, out string? error)
        where T : class
    {
        value = null;
        error = null;
        if (string.IsNullOrEmpty(text))
        {
            error = "empty value";
            return false;
        }

        try
        {
            value = JsonSerializer.Deserialize<T>(text, Options);
            if (value is null)
            {
                error = "JSON null";
                return false;
            }

            return true;
        }
        catch (JsonException e)
        {
            error = "malformed JSON: " + e.Message;
            return false;
        }
    }

    /// <summary>
    /// Serializes a record whose time fields must come from the Redis clock: those fields hold
    /// <see cref="NowMarker"/> and the script replaces the quoted marker with the server time in ms.
    /// </summary>
    public static string SerializeTemplate<T>(T value) => Serialize(value).Replace("-9223372036854775808", RedisScripts.NowPlaceholder, StringComparison.Ordinal);

    /// <summary>A long value that stands for "Redis now" in <see cref="SerializeTemplate{T}"/>.</summary>
    public const long NowMarker = long.MinValue;
}
