using System.Security.Cryptography;
using System.Text.Json;

namespace Cfn.Coordination.Validation;

/// <summary>
/// The cache identity of a validation input: its JSON with object members sorted by name (ordinal) and no whitespace,
/// hashed with SHA-256. Two inputs that differ only in member order or formatting share a cache entry.
/// </summary>
internal static class CanonicalJson
{
    /// <summary>Lowercase hex SHA-256 of the canonical form of <paramref name="input"/>.</summary>
    public static string Sha256Hex(JsonElement input) => Convert.ToHexStringLower(SHA256.HashData(Bytes(input)));

    /// <summary>The canonical UTF-8 form of <paramref name="input"/>.</summary>
    public static byte[] Bytes(JsonElement input)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = false, SkipValidation = false }))
        {
            Write(writer, input);
        }

        return buffer.ToArray();
    }

    private static void Write(Utf8JsonWriter writer, JsonElement element)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                writer.WriteStartObject();
                foreach (var property in element.EnumerateObject().OrderBy(p => p.Name, StringComparer.Ordinal))
                {
                    writer.WritePropertyName(property.Name);
                    Write(writer, property.Value);
                }

                writer.WriteEndObject();
                break;
            case JsonValueKind.Array:
                writer.WriteStartArray();
                foreach (var item in element.EnumerateArray())
                {
                    Write(writer, item);
                }

                writer.WriteEndArray();
                break;
            default:
                element.WriteTo(writer);
                break;
        }
    }
}
