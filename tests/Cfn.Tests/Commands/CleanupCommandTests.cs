using System.Diagnostics;
using Cfn.Tests.Infrastructure;
using StackExchange.Redis;

namespace Cfn.Tests.Commands;

/// <summary>
/// <c>cfn cleanup</c> and its legacy wrapper, run as real processes against the test command's redis-server
/// (<c>CFN_TEST_REDIS</c>), each test in its own database so they never see each other's keys.
/// </summary>
public sealed class CleanupCommandTests
{
    private static readonly string Endpoint = TestRedis.Endpoint;

    private static string Root => Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "../../../../.."));

    [Fact]
    public async Task Cleanup_StaleAndFreshCoordinators_DeletesOnlyStaleAndPrintsSummary()
    {
        const int db = 9;
        await using var redis = await ConnectAsync(db);
        var database = redis.GetDatabase(db);
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        await database.SortedSetAddAsync("blocking:coordinators", [new("old-1", now - 3_600_000), new("live-1", now)]);
        await database.StringSetAsync("blocking:heartbeat:old-1", $"{{\"coordinatorId\":\"old-1\",\"timestamp\":{now - 3_600_000}}}");
        await database.StringSetAsync("blocking:heartbeat:live-1", $"{{\"coordinatorId\":\"live-1\",\"timestamp\":{now}}}");
        await database.StringSetAsync("blocking:idempotency:old-1:live-1:completion:1:1", "1");
        await database.StringSetAsync("blocking:idempotency:old-10:live-1:completion:1:1", "1");

        var dry = await RunAsync(db, "cleanup", "--dry-run");
        Assert.Equal(0, dry.ExitCode);
        Assert.Contains("[DRY-RUN] Would delete 2 keys for coordinator old-1", dry.Stdout, StringComparison.Ordinal);
        Assert.True(await database.KeyExistsAsync("blocking:heartbeat:old-1"));

        var run = await RunAsync(db, "cleanup", "--execute");

        Assert.Equal(0, run.ExitCode);
        Assert.Matches(@"\[\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\] \[INFO\] Total coordinators checked: 2", run.Stdout);
        Assert.Contains("Stale coordinators found: 1", run.Stdout, StringComparison.Ordinal);
        Assert.Contains("Keys deleted: 2", run.Stdout, StringComparison.Ordinal);
        Assert.Contains("Cleanup completed successfully", run.Stdout, StringComparison.Ordinal);
        Assert.False(await database.KeyExistsAsync("blocking:heartbeat:old-1"));
        Assert.True(await database.KeyExistsAsync("blocking:heartbeat:live-1"));
        Assert.True(await database.KeyExistsAsync("blocking:idempotency:old-10:live-1:completion:1:1"));
        await database.ExecuteAsync("FLUSHDB");
    }

    [Fact]
    public async Task Cleanup_UnknownOption_ExitsTwoWithUsage()
    {
        var result = await RunAsync(8, "cleanup", "--bogus");

        Assert.Equal(2, result.ExitCode);
        Assert.Contains("--bogus", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Cleanup_RedisUnreachable_AbortsWithExitOne()
    {
        var result = await RunAsync(0, new Dictionary<string, string> { ["REDIS_HOST"] = "127.0.0.1", ["REDIS_PORT"] = "1" }, "cleanup");

        Assert.Equal(1, result.ExitCode);
        Assert.Contains("[ERROR] Redis connection failed (host: 127.0.0.1, port: 1)", result.Stdout, StringComparison.Ordinal);
        Assert.Contains("[ERROR] Cleanup aborted", result.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task LegacyWrapper_DryRun_RunsTheSameCommand()
    {
        const int db = 7;
        var result = await RunProcessAsync("bash", db, [], Path.Combine(Root, "scripts", "cleanup-blocking-coordination.sh"), "--dry-run");

        Assert.Equal(0, result.ExitCode);
        Assert.Contains("No coordinator heartbeats found", result.Stdout, StringComparison.Ordinal);
        Assert.Contains("Cleanup complete (nothing to do)", result.Stdout, StringComparison.Ordinal);
    }

    private static Task<ConnectionMultiplexer> ConnectAsync(int db) =>
        ConnectionMultiplexer.ConnectAsync($"{Endpoint},allowAdmin=true,defaultDatabase={db}");

    private static Task<ProcessResult> RunAsync(int db, params string[] args) => RunAsync(db, [], args);

    private static Task<ProcessResult> RunAsync(int db, Dictionary<string, string> env, params string[] args) =>
        RunProcessAsync("dotnet", db, env, [Path.Combine(AppContext.BaseDirectory, "cfn.dll"), .. args]);

    private static async Task<ProcessResult> RunProcessAsync(string file, int db, Dictionary<string, string> env, params string[] args)
    {
        var colon = Endpoint.LastIndexOf(':');
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        start.Environment["REDIS_HOST"] = Endpoint[..colon];
        start.Environment["REDIS_PORT"] = Endpoint[(colon + 1)..];
        start.Environment["REDIS_DB"] = db.ToString(System.Globalization.CultureInfo.InvariantCulture);
        start.Environment["CLEANUP_LOG_FILE"] = Path.Combine(Path.GetTempPath(), $"cfn-cleanup-{Guid.NewGuid():N}.log");
        foreach (var (name, value) in env)
        {
            start.Environment[name] = value;
        }

        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(timeout.Token);
        return new ProcessResult(process.ExitCode, await stdout, await stderr);
    }

    private sealed record ProcessResult(int ExitCode, string Stdout, string Stderr);
}
