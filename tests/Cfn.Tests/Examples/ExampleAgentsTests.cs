using System.Diagnostics;
using System.Globalization;
using Cfn.Tests.Infrastructure;
using StackExchange.Redis;

namespace Cfn.Tests.Examples;

#pragma warning disable CA1416 // the examples are bash and python scripts: these tests run on Linux only, as the whole suite does

/// <summary>
/// The agents of <c>examples/bash</c> and <c>examples/python</c> run exactly as their READMEs say, against the real
/// redis-server (database 48) and, for the HTTP agents, a real <c>cfn serve --role swarm-manager</c>: each completes
/// its CFN loops with the verdicts the validators give.
/// </summary>
public sealed class ExampleAgentsTests : IAsyncLifetime
{
    private const int Db = 48;
    private const string Secret = "example-agents-secret-0123456789abcdef0123456789";
    private readonly string _bin = Directory.CreateTempSubdirectory("cfn-examples-").FullName;
    private ConnectionMultiplexer _redis = null!;
    private IServer _server = null!;

    public async Task InitializeAsync()
    {
        (_redis, _server, _) = await TestRedis.OpenEmptyAsync(Db);
        await CfnRun.InstallLauncherAsync(_bin);
    }

    public async Task DisposeAsync()
    {
        await _server.FlushDatabaseAsync(Db);
        await _redis.DisposeAsync();
        Directory.Delete(_bin, recursive: true);
    }

    private Dictionary<string, string?> Environment() => new()
    {
        ["REDIS_URL"] = $"redis://{TestRedis.Endpoint}/{Db}",
        ["BLOCKING_COORDINATION_SECRET"] = Secret,
        ["PATH"] = _bin + ":" + System.Environment.GetEnvironmentVariable("PATH"),
    };

    [Fact]
    public async Task BashExample_RunScript_CompletesThreeLoopsWithTheValidatorsVerdicts()
    {
        var (code, stdout, stderr) = await RunAsync("bash", [Repository.PathOf("examples/bash/run.sh"), "2", "3", "4"], Environment(),
            TimeSpan.FromSeconds(120));

        Assert.True(code == 0, $"exit {code}\n{stdout}\n{stderr}");
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(["loop 2: pass val-a=pass val-b=pass", "loop 3: fail val-a=fail val-b=fail", "loop 4: pass val-a=pass val-b=pass"], lines);
        // Every agent stopped gracefully: nothing of theirs is registered any more.
        Assert.Equal(0, await _redis.GetDatabase(Db).SortedSetLengthAsync("blocking:coordinators"));
    }

    [PythonFact]
    public async Task PythonExample_ValidatorsAndCoordinatorOverHttp_CompleteThreeLoops()
    {
        var port = CfnRun.FreePort();
        var serveEnv = Environment();
        serveEnv["HTTP_PORT"] = port.ToString(CultureInfo.InvariantCulture);
        await using var serve = CfnRun.Start(["serve", "--role", "swarm-manager"], serveEnv);
        await serve.WaitReadyAsync(port);
        var env = new Dictionary<string, string?> { ["CFN_URL"] = $"http://127.0.0.1:{port}", ["IDLE_SECONDS"] = "5" };
        var folder = Repository.PathOf("examples/python");
        var validators = new[] { "val-py-a", "val-py-b" }
            .Select(id => RunAsync("python3", [Path.Combine(folder, "validator.py"), id], env, TimeSpan.FromSeconds(120))).ToList();
        // The coordinator starts once both validators hold a session (it sends to them at once).
        Assert.True(await EventuallyAsync(async () => await _redis.GetDatabase(Db).HashLengthAsync("coordinator:agents") == 2, TimeSpan.FromSeconds(30)),
            serve.Tail(20));

        var (code, stdout, stderr) = await RunAsync("python3", [Path.Combine(folder, "coordinator.py"), "coord-py", "val-py-a,val-py-b", "2", "3", "4"], env,
            TimeSpan.FromSeconds(120));

        Assert.True(code == 0, $"exit {code}\n{stdout}\n{stderr}\n{serve.Tail(30)}");
        Assert.Equal(
            ["loop 2: pass {'val-py-a': 'pass', 'val-py-b': 'pass'}", "loop 3: fail {'val-py-a': 'fail', 'val-py-b': 'fail'}", "loop 4: pass {'val-py-a': 'pass', 'val-py-b': 'pass'}"],
            stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        foreach (var validator in validators)
        {
            var (validatorCode, validatorOut, validatorErr) = await validator;
            Assert.True(validatorCode == 0, $"validator exit {validatorCode}\n{validatorOut}\n{validatorErr}");
        }
    }

    private static async Task<(int Code, string Stdout, string Stderr)> RunAsync(string program, string[] args, Dictionary<string, string?> env, TimeSpan limit)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        foreach (var (key, value) in env)
        {
            start.Environment[key] = value;
        }

        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(limit);
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
        }

        return (process.ExitCode, await stdout, await stderr);
    }
}

/// <summary>A fact that is skipped, with its reason printed, where python3 is not installed (the only place it may be).</summary>
public sealed class PythonFactAttribute : FactAttribute
{
    public PythonFactAttribute()
    {
        var found = (System.Environment.GetEnvironmentVariable("PATH") ?? "").Split(':')
            .Any(dir => dir.Length > 0 && File.Exists(Path.Combine(dir, "python3")));
        if (!found)
        {
            Skip = "python3 is not installed: the Python example cannot run here (apt-get install -y python3 to run it)";
        }
    }
}
