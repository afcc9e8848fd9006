using System.Diagnostics;
using System.Text.Json;
using Prometheus;
using StackExchange.Redis;

namespace Cfn.Coordination.Tests.Infrastructure;

/// <summary>Shared ways for tests to look at the real parts: Redis values, the Redis clock, metric text, shell commands.</summary>
public static class Probe
{
    /// <summary>The JSON stored at <paramref name="key"/>; fails the test when the key is missing.</summary>
    public static async Task<JsonElement> ReadJsonAsync(IDatabase database, string key)
    {
        var raw = (string?)await database.StringGetAsync(key);
        Assert.True(raw is not null, $"{key} is missing");
        using var document = JsonDocument.Parse(raw);
        return document.RootElement.Clone();
    }

    /// <summary>Redis <c>TIME</c> in ms.</summary>
    public static Task<long> RedisNowMsAsync(IDatabase database) => Cfn.Coordination.Redis.RedisTime.NowMsAsync(database);

    /// <summary>The registry's exposition text, as a scrape would see it.</summary>
    public static async Task<string> ExportAsync(CollectorRegistry registry)
    {
        using var stream = new MemoryStream();
        await registry.CollectAndExportAsTextAsync(stream);
        return System.Text.Encoding.UTF8.GetString(stream.ToArray());
    }

    /// <summary>
    /// Runs <paramref name="script"/> with bash, where <c>redis-cli</c> is a function that adds the test server's host
    /// and port, so the runbook's commands stay as written.
    /// </summary>
    public static async Task<ShellResult> ShellAsync(string endpoint, string script)
    {
        var colon = endpoint.LastIndexOf(':');
        var prelude = $"set -o pipefail\nredis-cli() {{ command redis-cli -h {endpoint[..colon]} -p {endpoint[(colon + 1)..]} \"$@\"; }}\n";
        var start = new ProcessStartInfo("bash")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add(prelude + script.Replace("\r\n", "\n", StringComparison.Ordinal));
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(timeout.Token);
        return new ShellResult(process.ExitCode, await stdout, await stderr);
    }
}

/// <summary>What a shell command did.</summary>
public sealed record ShellResult(int ExitCode, string Stdout, string Stderr)
{
    public override string ToString() => $"exit {ExitCode}\nstdout: {Stdout}\nstderr: {Stderr}";
}
