using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Cfn.Tests.Infrastructure;

/// <summary>
/// The real <c>cfn</c> executable as a child process: its stdout and stderr collected line by line, signals sent with
/// <c>kill</c>, and helpers to wait for a line or run the runbook's shell commands against it.
/// </summary>
public sealed class CfnRun : IAsyncDisposable
{
    private readonly Process _process;
    private readonly ConcurrentQueue<string> _lines = new();
    private readonly SemaphoreSlim _lineAdded = new(0);

    private CfnRun(Process process)
    {
        _process = process;
        process.OutputDataReceived += (_, e) => Add(e.Data);
        process.ErrorDataReceived += (_, e) => Add(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    public int Pid => _process.Id;

    public bool HasExited => _process.HasExited;

    public int ExitCode => _process.ExitCode;

    /// <summary>Every line so far (stdout and stderr interleaved as they came).</summary>
    public IReadOnlyList<string> Lines => [.. _lines];

    public string Output => string.Join('\n', _lines);

    /// <summary>Starts <c>dotnet cfn.dll args…</c> with the given extra environment (null removes a variable).</summary>
    public static CfnRun Start(IEnumerable<string> args, IDictionary<string, string?>? environment = null) =>
        new(Process.Start(StartInfo(args, environment)) ?? throw new InvalidOperationException("cfn did not start"));

    /// <summary>Runs <c>cfn args…</c> to its end (at most a minute) and returns its exit code, stdout and stderr, each trimmed.</summary>
    public static async Task<(int Code, string Stdout, string Stderr)> RunToEndAsync(IEnumerable<string> args, IDictionary<string, string?>? environment = null)
    {
        using var process = Process.Start(StartInfo(args, environment)) ?? throw new InvalidOperationException("cfn did not start");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(timeout.Token);
        return (process.ExitCode, (await stdout).Trim(), (await stderr).Trim());
    }

    private static ProcessStartInfo StartInfo(IEnumerable<string> args, IDictionary<string, string?>? environment)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "cfn.dll"));
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        foreach (var (name, value) in environment ?? new Dictionary<string, string?>())
        {
            if (value is null)
            {
                start.Environment.Remove(name);
            }
            else
            {
                start.Environment[name] = value;
            }
        }

        return start;
    }

    /// <summary>The first line matching <paramref name="predicate"/>, waiting up to <paramref name="timeout"/>; fails with the output so far.</summary>
    public async Task<string> WaitForLineAsync(Func<string, bool> predicate, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var found = _lines.FirstOrDefault(predicate);
            if (found is not null)
            {
                return found;
            }

            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero || (_process.HasExited && _lines.FirstOrDefault(predicate) is null && !await _lineAdded.WaitAsync(200)))
            {
                throw new TimeoutException($"no matching line within {timeout.TotalSeconds}s (exited: {_process.HasExited}); output:\n{Tail(60)}");
            }

            await _lineAdded.WaitAsync(left < TimeSpan.FromMilliseconds(500) ? left : TimeSpan.FromMilliseconds(500));
        }
    }

    /// <summary>The last lines of output, for failure messages.</summary>
    public string Tail(int count) => string.Join('\n', _lines.TakeLast(count));

    /// <summary>Sends a POSIX signal by name (<c>QUIT</c>, <c>TERM</c>) with bash's <c>kill</c>, as an operator would.</summary>
    public Task SignalAsync(string signal) => ShellAsync($"kill -{signal} {_process.Id}");

    /// <summary>Waits for the exit; kills the process and fails when it takes longer than <paramref name="timeout"/>.</summary>
    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cts.Token);
            return _process.ExitCode;
        }
        catch (OperationCanceledException)
        {
            _process.Kill(entireProcessTree: true);
            throw new TimeoutException($"cfn did not exit within {timeout.TotalSeconds}s; output:\n{Tail(40)}");
        }
    }

    /// <summary>Runs a bash command line (the runbook's pipelines); returns stdout, failing on a non-zero exit.</summary>
    public static async Task<string> ShellAsync(string command, bool allowFailure = false)
    {
        var start = new ProcessStartInfo("bash", ["-o", "pipefail", "-c", command])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var shell = Process.Start(start)!;
        var output = shell.StandardOutput.ReadToEndAsync();
        var error = shell.StandardError.ReadToEndAsync();
        await shell.WaitForExitAsync();
        if (shell.ExitCode != 0 && !allowFailure)
        {
            throw new InvalidOperationException($"`{command}` exited {shell.ExitCode}: {await error}");
        }

        return await output;
    }

    /// <summary>
    /// Waits until this process answers 200 on <paramref name="path"/> of its HTTP port (readiness by default);
    /// fails at once with its output when it exits first, and after <paramref name="within"/> (60 s) otherwise.
    /// </summary>
    public async Task WaitReadyAsync(int port, string path = "/health/ready", TimeSpan? within = null)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        var ready = await EventuallyAsync(async () =>
        {
            Assert.False(HasExited, $"cfn exited before {path} answered 200:\n" + Tail(30));
            try
            {
                return (await http.GetAsync($"http://127.0.0.1:{port}{path}")).StatusCode == HttpStatusCode.OK;
            }
            catch (HttpRequestException)
            {
                return false; // not listening yet
            }
        }, within ?? TimeSpan.FromSeconds(60), pollMs: 100);
        Assert.True(ready, $"{path} never answered 200 on port {port}; output:\n" + Tail(30));
    }

    /// <summary>Writes a <c>cfn</c> launcher into <paramref name="directory"/>, for a PATH that has <c>cfn</c> as an installed binary would.</summary>
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public static async Task InstallLauncherAsync(string directory)
    {
        var cfn = Path.Combine(directory, "cfn");
        await File.WriteAllTextAsync(cfn, $"#!/bin/bash\nexec dotnet {Path.Combine(AppContext.BaseDirectory, "cfn.dll")} \"$@\"\n");
        File.SetUnixFileMode(cfn, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
    }

    /// <summary>
    /// A loopback port nothing listens on, below Linux's ephemeral range (32768–60999): a port the kernel handed out for
    /// port 0 is also what it hands to outgoing connections, so one could take it between this check and the process's
    /// bind (seen in CI: "Address already in use"). Never the same port twice in one test process.
    /// </summary>
    public static int FreePort()
    {
        while (true)
        {
            var port = Random.Shared.Next(20_000, 32_000);
            lock (HandedOut)
            {
                if (!HandedOut.Add(port))
                {
                    continue;
                }
            }

            try
            {
                using var listener = new TcpListener(IPAddress.Loopback, port);
                listener.Start();
                return port;
            }
            catch (SocketException)
            {
                // taken: try another
            }
        }
    }

    private static readonly HashSet<int> HandedOut = [];

    private void Add(string? line)
    {
        if (line is not null)
        {
            _lines.Enqueue(line);
            _lineAdded.Release();
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
        _lineAdded.Dispose();
    }
}
