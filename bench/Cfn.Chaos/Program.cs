// The chaos test of issue 11 (item 7): real `cfn serve` processes on a private redis-server with AOF, a ledger of
// enqueued items, random SIGKILL/SIGSTOP faults, a timeout handler killed mid-escalation, a Redis restart; then the
// checker. Usage:
//   dotnet Cfn.Chaos.dll [--cfn PATH/cfn.dll] [--minutes N | --seconds N] [--rate ITEMS_PER_S] [--seed N]
//                        [--drain-seconds N] [--work-dir DIR] [--out FILE.json]
// `bash bench/chaos.sh --minutes N` builds in Release and runs it. Exit code 0: no violation; 1: violations; 2: the run
// itself could not be done (bad arguments, cfn or redis-server missing, processes not ready).
using System.Globalization;
using Cfn.Chaos;

string[] valued = ["--cfn", "--minutes", "--seconds", "--rate", "--seed", "--drain-seconds", "--work-dir", "--out"];
for (var i = 0; i < args.Length; i++)
{
    if (valued.Contains(args[i]) && i + 1 < args.Length)
    {
        i++;
    }
    else
    {
        return Fail($"unknown or incomplete argument '{args[i]}' (expected {string.Join(", ", valued.Select(v => v + " VALUE"))})");
    }
}

var root = RepositoryRoot();
var cfn = Arg("--cfn") ?? Path.Combine(root, "src", "Cfn", "bin", "Release", "net10.0", "cfn.dll");
TimeSpan duration;
if (Arg("--minutes") is { } minutes)
{
    if (!double.TryParse(minutes, NumberStyles.Float, CultureInfo.InvariantCulture, out var m) || m <= 0 || m > 600)
    {
        return Fail($"--minutes must be a number of minutes from 0 to 600 (got '{minutes}')");
    }

    duration = TimeSpan.FromMinutes(m);
}
else if (Arg("--seconds") is { } seconds)
{
    if (!int.TryParse(seconds, NumberStyles.None, CultureInfo.InvariantCulture, out var s) || s < 10)
    {
        return Fail($"--seconds must be an integer of at least 10 (got '{seconds}')");
    }

    duration = TimeSpan.FromSeconds(s);
}
else
{
    duration = TimeSpan.FromSeconds(60);
}

var rate = 5.0;
if (Arg("--rate") is { } r && (!double.TryParse(r, NumberStyles.Float, CultureInfo.InvariantCulture, out rate) || rate <= 0 || rate > 100))
{
    return Fail($"--rate must be items per second, more than 0 and at most 100 (got '{r}')");
}

var seed = Environment.TickCount & int.MaxValue;
if (Arg("--seed") is { } sd && !int.TryParse(sd, NumberStyles.None, CultureInfo.InvariantCulture, out seed))
{
    return Fail($"--seed must be a non-negative integer (got '{sd}')");
}

var drain = TimeSpan.FromSeconds(Math.Max(40, duration.TotalSeconds / 4));
if (Arg("--drain-seconds") is { } ds)
{
    if (!int.TryParse(ds, NumberStyles.None, CultureInfo.InvariantCulture, out var d) || d < 5)
    {
        return Fail($"--drain-seconds must be an integer of at least 5 (got '{ds}')");
    }

    drain = TimeSpan.FromSeconds(d);
}

var work = Arg("--work-dir") ?? Path.Combine(Path.GetTempPath(), $"cfn-chaos-{DateTime.UtcNow:yyyyMMdd-HHmmss}");
var output = Arg("--out") ?? Path.Combine(work, "chaos-report.json");
var options = new ChaosOptions
{
    CfnDll = Path.GetFullPath(cfn),
    WorkDirectory = Path.GetFullPath(work),
    Duration = duration,
    DrainTimeout = drain,
    Rate = rate,
    Seed = seed,
    Log = line => Console.Error.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} {line}"),
};

ChaosReport report;
try
{
    report = await ChaosRunner.RunAsync(options);
}
catch (Exception e) when (e is InvalidOperationException or FileNotFoundException or System.ComponentModel.Win32Exception)
{
    return Fail(e.Message);
}

Console.WriteLine(report.ToTable());
Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(output))!);
await File.WriteAllTextAsync(output, report.ToJson());
Console.WriteLine($"json: {Path.GetFullPath(output)}");
return report.Passed ? 0 : 1;

string? Arg(string name)
{
    var index = Array.IndexOf(args, name);
    return index >= 0 && index + 1 < args.Length ? args[index + 1] : null;
}

static int Fail(string message)
{
    Console.Error.WriteLine("chaos: " + message);
    return 2;
}

static string RepositoryRoot()
{
    var directory = new DirectoryInfo(AppContext.BaseDirectory);
    while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "cfn.slnx")))
    {
        directory = directory.Parent;
    }

    return directory?.FullName ?? Directory.GetCurrentDirectory();
}
