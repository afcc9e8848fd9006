using System.CommandLine;
using System.Globalization;
using Cfn.Coordination;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;

namespace Cfn.Commands;

/// <summary>
/// <c>cfn cleanup [--dry-run|--execute]</c> (SPEC §2.12, D14): the batch cleanup that replaces the legacy Lua and bash
/// scripts, with their lines (<c>[YYYY-MM-DD HH:MM:SS] [LEVEL] message</c> on stdout and in the log file), summary and
/// exit codes: 0 done, 1 aborted (Redis unreachable), 2 finished with errors or a bad option.
/// </summary>
internal static class CleanupCommand
{
    /// <summary>Default log file of the legacy script; <c>CLEANUP_LOG_FILE</c> overrides it.</summary>
    public static string DefaultLogFile => Path.Combine(
        Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".claude-flow", "logs", "blocking-cleanup.log");

    public static Command Create()
    {
        var dryRun = new Option<bool>("--dry-run") { Description = "Report what would be deleted; delete nothing." };
        var execute = new Option<bool>("--execute") { Description = "Delete (the default; accepted for the playbook's command line)." };
        var fallback = new Option<bool>("--fallback") { Description = "Accepted for the legacy script's command line; there is one implementation." };
        var command = new Command("cleanup",
            "Remove the state of coordinators whose heartbeat is older than CLEANUP_STALE_THRESHOLD_SECONDS (600). " +
            "Redis from REDIS_URL or REDIS_HOST/REDIS_PORT/REDIS_PASSWORD/REDIS_DB. Exit codes: 0 done, 1 aborted, 2 errors.")
        {
            dryRun, execute, fallback,
        };
        command.SetAction(async (result, _) =>
        {
            if (result.GetValue(dryRun) && result.GetValue(execute))
            {
                await Console.Error.WriteLineAsync("cleanup: --dry-run and --execute exclude each other").ConfigureAwait(false);
                return 2;
            }

            return await RunAsync(result.GetValue(dryRun)).ConfigureAwait(false);
        });
        return command;
    }

    private static async Task<int> RunAsync(bool dryRun)
    {
        RedisSettings settings;
        RecoveryOptions recovery;
        try
        {
            settings = RedisSettings.FromEnvironment();
            recovery = RecoveryOptions.FromEnvironment();
        }
        catch (Exception e) when (e is ArgumentException or System.ComponentModel.DataAnnotations.ValidationException)
        {
            await Console.Error.WriteLineAsync("cleanup: " + e.Message).ConfigureAwait(false);
            return 2;
        }

        using var log = OpenLog(Environment.GetEnvironmentVariable("CLEANUP_LOG_FILE") ?? DefaultLogFile);
        void Write(CleanupLine line)
        {
            var text = string.Create(CultureInfo.InvariantCulture, $"[{DateTime.Now:yyyy-MM-dd HH:mm:ss}] [{line.Level}] {line.Message}");
            Console.Out.WriteLine(text);
            log?.WriteLine(text);
        }

        await using var redis = await RedisContext.ConnectAsync(settings.ToOptions(), new CoordinationOptions()).ConfigureAwait(false);
        var metrics = new RecoveryMetrics(Prometheus.Metrics.NewCustomRegistry());
        var job = new BatchCleanup(redis, recovery, metrics);
        var report = await job.RunAsync(dryRun, Write, $"{settings.Host}:{settings.Port}").ConfigureAwait(false);
        return report.ExitCode;
    }

    private static StreamWriter? OpenLog(string path)
    {
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            return new StreamWriter(path, append: true) { AutoFlush = true };
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"cleanup: cannot write the log file {path}: {e.Message}; logging to stdout only");
            return null;
        }
    }
}
