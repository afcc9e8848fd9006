using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Text;

namespace Cfn.Coordination.Tests.Faults;

/// <summary>
/// One coordinator process (tests/Cfn.TestHost) run with <c>dotnet Cfn.TestHost.dll ...</c>. Its stdout lines are read
/// asynchronously and kept; stderr is kept for diagnostics. Disposal always kills it (SIGKILL also ends a stopped one).
/// </summary>
internal sealed class HostProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly List<string> _lines = [];
    private readonly StringBuilder _stderr = new();
    private readonly Task _readOut;
    private readonly Task _readErr;

    private HostProcess(Process process, string name)
    {
        _process = process;
        Name = name;
        _readOut = Task.Run(async () =>
        {
            while (await process.StandardOutput.ReadLineAsync() is { } line)
            {
                lock (_lines)
                {
                    _lines.Add(line);
                }
            }
        });
        _readErr = Task.Run(async () =>
        {
            while (await process.StandardError.ReadLineAsync() is { } line)
            {
                lock (_stderr)
                {
                    _stderr.AppendLine(line);
                }
            }
        });
    }

    /// <summary>Where the host's DLL is: <c>CFN_TEST_HOST_DLL</c>, else the path the build baked into this assembly.</summary>
    public static string DllPath { get; } =
        Environment.GetEnvironmentVariable("CFN_TEST_HOST_DLL") is { Length: > 0 } overridden
            ? overridden
            : typeof(HostProcess).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
                  .FirstOrDefault(a => a.Key == "CfnTestHostDll")?.Value
              ?? throw new InvalidOperationException("the CfnTestHostDll assembly metadata is missing (see the test .csproj)");

    public string Name { get; }

    public int Pid => _process.Id;

    public bool HasExited => _process.HasExited;

    /// <summary>Every stdout line so far.</summary>
    public IReadOnlyList<string> Lines
    {
        get
        {
            lock (_lines)
            {
                return [.. _lines];
            }
        }
    }

    public static HostProcess Start(string name, params string[] args)
    {
        if (!File.Exists(DllPath))
        {
            throw new FileNotFoundException($"the test host is not built: {DllPath} (build the solution, e.g. bash scripts/test.sh)");
        }

        var dotnet = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host) ? host : "dotnet";
        var start = new ProcessStartInfo(dotnet)
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
        };
        start.ArgumentList.Add(DllPath);
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        return new HostProcess(Process.Start(start) ?? throw new InvalidOperationException("could not start the test host"), name);
    }

    /// <summary>Waits for a stdout line matching <paramref name="match"/>; throws with the output so far when it does not come.</summary>
    public async Task<string> WaitForLineAsync(Func<string, bool> match, TimeSpan timeout, string what)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var found = Lines.FirstOrDefault(match);
            if (found is not null)
            {
                return found;
            }

            if (DateTime.UtcNow > deadline || (_process.HasExited && await OutputDrainedAsync() && Lines.FirstOrDefault(match) is null))
            {
                throw new TimeoutException($"{Name}: no line '{what}' within {timeout.TotalSeconds} s (exited: {_process.HasExited})\n{Dump()}");
            }

            await Task.Delay(10);
        }
    }

    /// <summary>Waits until at least <paramref name="count"/> stdout lines match.</summary>
    public async Task WaitForCountAsync(Func<string, bool> match, int count, TimeSpan timeout, string what)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (Lines.Count(match) < count)
        {
            if (DateTime.UtcNow > deadline || _process.HasExited)
            {
                throw new TimeoutException($"{Name}: fewer than {count} lines '{what}' within {timeout.TotalSeconds} s\n{Dump()}");
            }

            await Task.Delay(10);
        }
    }

    /// <summary>Sends a signal by name (<c>STOP</c>, <c>CONT</c>, <c>TERM</c>, <c>KILL</c>) with kill(1).</summary>
    public void Signal(string name)
    {
        using var kill = Process.Start(new ProcessStartInfo("kill") { ArgumentList = { "-" + name, Pid.ToString(CultureInfo.InvariantCulture) }, UseShellExecute = false })!;
        kill.WaitForExit();
        if (kill.ExitCode != 0)
        {
            throw new InvalidOperationException($"kill -{name} {Pid} failed with {kill.ExitCode}");
        }
    }

    /// <summary>SIGKILL (Process.Kill on Unix).</summary>
    public void Kill() => _process.Kill();

    /// <summary>Waits for the exit and returns the exit code; throws with the output when it does not exit in time.</summary>
    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"{Name}: did not exit within {timeout.TotalSeconds} s\n{Dump()}");
        }

        await OutputDrainedAsync();
        return _process.ExitCode;
    }

    /// <summary>The output so far, for test logs and failure messages.</summary>
    public string Dump()
    {
        string stderr;
        lock (_stderr)
        {
            stderr = _stderr.ToString();
        }

        var lines = Lines;
        var shown = lines.Count > 60 ? lines.Take(20).Append($"... ({lines.Count - 40} lines) ...").Concat(lines.Skip(lines.Count - 20)) : lines;
        return $"--- {Name} (pid {Pid}) stdout ---\n{string.Join('\n', shown)}\n--- {Name} stderr ---\n{stderr}";
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
            }

            await _process.WaitForExitAsync();
            await OutputDrainedAsync();
        }
        catch (InvalidOperationException)
        {
        }

        _process.Dispose();
    }

    private async Task<bool> OutputDrainedAsync()
    {
        var drained = Task.WhenAll(_readOut, _readErr);
        return await Task.WhenAny(drained, Task.Delay(TimeSpan.FromSeconds(5))) == drained;
    }
}
