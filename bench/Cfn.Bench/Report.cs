using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Cfn.Bench;

/// <summary>The run's JSON result and the Markdown table in docs/benchmarks.md.</summary>
internal static class Report
{
    public const string TableStart = "<!-- bench:table:start -->";
    public const string TableEnd = "<!-- bench:table:end -->";

    public static JsonObject Header(bool quick, Floor floor, string redisVersion) => new()
    {
        ["date"] = DateTimeOffset.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture),
        ["commit"] = Commit(),
        ["mode"] = quick ? "quick" : "full",
        ["machine"] = new JsonObject
        {
            ["cores"] = Environment.ProcessorCount,
            ["os"] = System.Runtime.InteropServices.RuntimeInformation.OSDescription,
            ["cpu_model"] = CpuModel(),
            ["dotnet"] = Environment.Version.ToString(),
            ["redis_version"] = redisVersion,
        },
        ["floor"] = floor.ToJson(),
    };

    public static async Task WriteJsonAsync(string path, JsonObject result)
    {
        var json = result.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
        var directory = Path.GetDirectoryName(Path.GetFullPath(path));
        if (directory is not null)
        {
            Directory.CreateDirectory(directory);
        }

        await File.WriteAllTextAsync(path, json + "\n");
    }

    /// <summary>Replaces what lies between the table markers of <paramref name="path"/> (the rest of the file is kept; a missing file is created).</summary>
    public static async Task WriteTableAsync(string path, JsonObject header, IEnumerable<TableLine> lines)
    {
        // A new file (e.g. --table /tmp/h.md) gets just the table.
        var text = File.Exists(path) ? await File.ReadAllTextAsync(path) : $"{TableStart}\n{TableEnd}\n";
        var start = text.IndexOf(TableStart, StringComparison.Ordinal);
        var end = text.IndexOf(TableEnd, StringComparison.Ordinal);
        if (start < 0 || end < start)
        {
            throw new InvalidOperationException($"{path} has no {TableStart} … {TableEnd} section to rewrite");
        }

        var machine = header["machine"]!.AsObject();
        var floor = header["floor"]!.AsObject();
        var table = new StringBuilder();
        table.AppendLine(TableStart);
        table.AppendLine(CultureInfo.InvariantCulture,
            $"Run of {header["date"]} ({header["mode"]} mode), commit {header["commit"]}: {machine["cores"]} cores, {machine["cpu_model"]}, {machine["os"]}, Redis {machine["redis_version"]}, .NET {machine["dotnet"]}.");
        table.AppendLine();
        table.AppendLine(CultureInfo.InvariantCulture,
            $"PING floor (same run, same connection): p50 {Stats.F(floor["ping_p50_ms"]!.GetValue<double>())} ms, p99 {Stats.F(floor["ping_p99_ms"]!.GetValue<double>())} ms.");
        table.AppendLine();
        table.AppendLine("| # | measure | setup | result | × PING floor | original | target | met? |");
        table.AppendLine("|---|---|---|---|---|---|---|---|");
        foreach (var l in lines)
        {
            var met = l.Met switch { true => "yes", false => "**no**", null => "—" };
            table.AppendLine(CultureInfo.InvariantCulture,
                $"| {l.Row} | {Cell(l.Measure)} | {Cell(l.Setup)} | {Cell(l.Result)} | {Cell(l.FloorMultiple)} | {Cell(l.Original)} | {Cell(l.Target)} | {met} |");
        }

        table.Append(TableEnd);
        await File.WriteAllTextAsync(path, text[..start] + table + text[(end + TableEnd.Length)..]);
    }

    private static string Cell(string s) => s.Replace("|", "\\|", StringComparison.Ordinal);

    private static string CpuModel()
    {
        try
        {
            var line = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal));
            return line?[(line.IndexOf(':', StringComparison.Ordinal) + 1)..].Trim() ?? "unknown";
        }
        catch (IOException)
        {
            return "unknown";
        }
    }

    private static string Commit()
    {
        try
        {
            using var git = Process.Start(new ProcessStartInfo("git", "rev-parse --short HEAD")
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            });
            if (git is null)
            {
                return "unknown";
            }

            var output = git.StandardOutput.ReadToEnd().Trim();
            git.WaitForExit();
            return git.ExitCode == 0 && output.Length > 0 ? output : "unknown";
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return "unknown"; // no git on this machine
        }
    }

    /// <summary>The folder holding cfn.slnx above the working directory, or the working directory.</summary>
    public static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(Environment.CurrentDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "cfn.slnx")))
            {
                return dir.FullName;
            }
        }

        return Environment.CurrentDirectory;
    }
}
