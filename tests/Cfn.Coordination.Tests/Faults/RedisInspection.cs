using System.Text.Json;
using StackExchange.Redis;

namespace Cfn.Coordination.Tests.Faults;

/// <summary>Reads a test's private Redis the way an operator would (SCAN, GET, TIME).</summary>
internal static class RedisInspection
{
    public static async Task<List<string>> ScanAsync(this ConnectionMultiplexer redis, string pattern)
    {
        var keys = new List<string>();
        await foreach (var key in redis.GetServer(redis.GetEndPoints()[0]).KeysAsync(pattern: pattern, pageSize: 1000))
        {
            keys.Add(key!);
        }

        return keys;
    }

    public static async Task<JsonElement> ReadJsonAsync(this IDatabase database, string key)
    {
        var raw = (string?)await database.StringGetAsync(key);
        Assert.True(raw is not null, $"{key} is missing");
        using var document = JsonDocument.Parse(raw);
        return document.RootElement.Clone();
    }

    /// <summary>Every value of the keys matching <paramref name="pattern"/>, by key.</summary>
    public static async Task<Dictionary<string, string>> SnapshotAsync(this ConnectionMultiplexer redis, string pattern)
    {
        var database = redis.GetDatabase();
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var key in await redis.ScanAsync(pattern))
        {
            values[key] = (string?)await database.StringGetAsync(key) ?? "(gone)";
        }

        return values;
    }

    public static async Task<long> NowMsAsync(this IDatabase database)
    {
        var parts = (RedisResult[])(await database.ExecuteAsync("TIME"))!;
        return ((long)parts[0] * 1000) + ((long)parts[1] / 1000);
    }

    public static string Str(this JsonElement element, string property) =>
        element.TryGetProperty(property, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString()! : "";
}
