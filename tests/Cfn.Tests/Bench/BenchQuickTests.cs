using System.Diagnostics;
using System.Text.Json;
using Cfn.Hosting;

namespace Cfn.Tests.Bench;

/// <summary>Runs alone: the quick bench loads both cores for most of a minute.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class BenchCollection
{
    public const string Name = "bench";
}

/// <summary>
/// Smoke test of the benchmark program (issue 6): `Cfn.Bench --quick` completes against a redis-server of its own
/// (its INFO commandstats, SLOWLOG and FLUSHDB readings are server-wide, so it must not share the test Redis) and
/// writes JSON with every row and the floor. Figures are not asserted: performance is measured, never timed in tests.
/// </summary>
[Collection(BenchCollection.Name)]
public sealed class BenchQuickTests
{
    private static readonly string[] RowKeys = ["a", "a2", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"];

    [Fact]
    public async Task QuickMode_Completes_WritesJsonWithEveryRowAndTheFloor()
    {
        var root = Infrastructure.Repository.Root;
        var configuration = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Debug{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Debug" : "Release";
        var dll = Path.Combine(root, "bench", "Cfn.Bench", "bin", configuration, "net10.0", "Cfn.Bench.dll");
        Assert.True(File.Exists(dll), $"{dll} is missing: the solution build builds bench/Cfn.Bench");
        var work = Directory.CreateTempSubdirectory("cfn-bench-");
        var output = Path.Combine(work.FullName, "bench.json");
        var table = Path.Combine(work.FullName, "benchmarks.md");
        await File.WriteAllTextAsync(table, "# t\n<!-- bench:table:start -->\nold\n<!-- bench:table:end -->\nNotes kept.\n");
        await using var redis = await PrivateRedisServer.StartAsync();
        try
        {
            var bench = new ProcessStartInfo("dotnet")
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                WorkingDirectory = work.FullName,
            };
            foreach (var arg in new[] { dll, "--redis", redis.Endpoint, "--quick", "--out", output, "--table", table })
            {
                bench.ArgumentList.Add(arg);
            }

            bench.Environment["CFN_BENCH_REDIS_PID"] = redis.ProcessId!.Value.ToString(System.Globalization.CultureInfo.InvariantCulture);
            using var process = Process.Start(bench)!;
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(5));
            try
            {
                await process.WaitForExitAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
                process.Kill(entireProcessTree: true);
                Assert.Fail("the quick bench ran over 5 minutes: " + await stdout);
            }

            Assert.True(process.ExitCode == 0, $"exit {process.ExitCode}: {await stdout}\n{await stderr}");
            using var json = JsonDocument.Parse(await File.ReadAllTextAsync(output));
            var result = json.RootElement;
            foreach (var key in RowKeys)
            {
                Assert.True(result.TryGetProperty(key, out var row) && row.ValueKind == JsonValueKind.Object, $"row {key} is missing");
            }

            Assert.True(result.GetProperty("floor").GetProperty("ping_p50_ms").GetDouble() > 0);
            Assert.True(result.GetProperty("floor").GetProperty("ping_p99_ms").GetDouble() > 0);
            Assert.Equal("quick", result.GetProperty("mode").GetString());
            Assert.True(result.GetProperty("a").GetProperty("p99_ms").GetDouble() > 0);
            Assert.Equal(1000, result.GetProperty("g").GetProperty("keys_deleted").GetInt64() / 6);
            var markdown = await File.ReadAllTextAsync(table);
            Assert.Contains("| # | measure | setup | result | × PING floor | original | target | met? |", markdown, StringComparison.Ordinal);
            Assert.DoesNotContain("\nold\n", markdown, StringComparison.Ordinal);
            Assert.EndsWith("<!-- bench:table:end -->\nNotes kept.\n", markdown, StringComparison.Ordinal);
        }
        finally
        {
            redis.Kill();
            work.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task BadArguments_RefusedWithAMessage()
    {
        var dll = Path.Combine(Infrastructure.Repository.Root, "bench", "Cfn.Bench", "bin", "Release", "net10.0", "Cfn.Bench.dll");
        if (!File.Exists(dll))
        {
            dll = dll.Replace("Release", "Debug", StringComparison.Ordinal);
        }

        var (code, error) = await RunAsync(dll, "--redis", "127.0.0.1:1", "--db", "x");
        Assert.Equal(2, code);
        Assert.Contains("--db must be a database index", error, StringComparison.Ordinal);
        (code, error) = await RunAsync(dll, "--quick");
        Assert.Equal(2, code);
        Assert.Contains("--redis HOST:PORT is required", error, StringComparison.Ordinal);
    }

    private static async Task<(int Code, string Error)> RunAsync(string dll, params string[] args)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardError = true, RedirectStandardOutput = true };
        info.ArgumentList.Add(dll);
        foreach (var a in args)
        {
            info.ArgumentList.Add(a);
        }

        using var process = Process.Start(info)!;
        var error = process.StandardError.ReadToEndAsync();
        await process.StandardOutput.ReadToEndAsync();
        await process.WaitForExitAsync();
        return (process.ExitCode, await error);
    }
}
