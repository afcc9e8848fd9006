using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;

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
        // Generated code first (JsonContext); reflection only for a type it does not list.
        TypeInfoResolver = JsonTypeInfoResolver.Combine(JsonContext.Default, new DefaultJsonTypeInfoResolver()),
    };

    public static string Serialize<T>(T value) => JsonSerializer.Serialize(value, Options);

    /// <summary>
    /// The same JSON as <see cref="Serialize{T}"/>, as the UTF-8 bytes Redis stores: for a value that is only written,
    /// this skips building a string that the client would encode back to UTF-8.
    /// </summary>
    public static byte[] SerializeToUtf8<T>(T value) => JsonSerializer.SerializeToUtf8Bytes(value, Options);

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

    /// <summary>A long value that stands for "Redis now": such fields are left out and stamped by the script.</summary>
    public const long NowMarker = long.MinValue;

    private static readonly JsonSerializerOptions StampOptions = new(Options)
    {
        TypeInfoResolver = JsonTypeInfoResolver.Combine(JsonContext.Default, new DefaultJsonTypeInfoResolver()).WithAddedModifier(SkipNowMarkers),
    };

    /// <summary>
    /// Serializes a record whose time fields must come from the Redis clock (D5). Fields holding
    /// <see cref="NowMarker"/> are left out of the JSON and their names returned, comma-separated; the script then
    /// writes them first in the object with the server time. Nothing in the record's data is ever rewritten.
    /// </summary>
    public static (string Json, string StampFields) SerializeForStamp<T>(T value)
    {
        // Runs for every activity, heartbeat and work write: a plain loop, no LINQ, and the typed metadata.
        var info = (JsonTypeInfo<T>)StampOptions.GetTypeInfo(typeof(T));
        string? stamped = null;
        foreach (var property in info.Properties)
        {
            if ((property.PropertyType == typeof(long) || property.PropertyType == typeof(long?)) &&
                property.Get?.Invoke(value!) is long v && v == NowMarker)
            {
                stamped = stamped is null ? property.Name : stamped + "," + property.Name;
            }
        }

        return (JsonSerializer.Serialize(value, info), stamped ?? string.Empty);
    }

    private static void SkipNowMarkers(JsonTypeInfo info)
    {
        foreach (var property in info.Properties)
        {
            if (property.PropertyType == typeof(long) || property.PropertyType == typeof(long?))
            {
                // Absent stays absent (null long? fields are omitted as everywhere else); the marker is left for the script.
                property.ShouldSerialize = (_, v) => v is long l ? l != NowMarker : v is not null;
            }
        }
    }
}
