using System.Globalization;
using StackExchange.Redis;

namespace Cfn.Bench;

/// <summary>
/// Redis's own count of the commands it ran (INFO commandstats), server-wide. The one reader of that format: the bench
/// rows and the idle-cost tests (which compile this file) both use it.
/// </summary>
internal static class CommandStats
{
    /// <summary>INFO commandstats as command → calls (<c>cmdstat_mget:calls=3,usec=12,…</c> gives <c>mget → 3</c>).</summary>
    public static async Task<Dictionary<string, long>> CallsAsync(IServer server)
    {
        var info = (string?)await server.ExecuteAsync("INFO", "commandstats").ConfigureAwait(false) ?? "";
        return Parse(info);
    }

    /// <summary>The command → calls pairs of an INFO commandstats reply.</summary>
    public static Dictionary<string, long> Parse(string info) => ParseField(info, "calls=");

    /// <summary>INFO commandstats as command → microseconds of Redis CPU spent in it (<c>usec=</c>).</summary>
    public static async Task<Dictionary<string, long>> MicrosecondsAsync(IServer server)
    {
        var info = (string?)await server.ExecuteAsync("INFO", "commandstats").ConfigureAwait(false) ?? "";
        return ParseField(info, "usec=");
    }

    private static Dictionary<string, long> ParseField(string info, string prefix)
    {
        var calls = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var line in info.Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            if (!line.StartsWith("cmdstat_", StringComparison.Ordinal))
            {
                continue;
            }

            var colon = line.IndexOf(':', StringComparison.Ordinal);
            var name = line["cmdstat_".Length..colon];
            var field = line[(colon + 1)..].Split(',').First(f => f.StartsWith(prefix, StringComparison.Ordinal));
            calls[name] = long.Parse(field[prefix.Length..], CultureInfo.InvariantCulture);
        }

        return calls;
    }
}
