using System.Diagnostics;
using System.Net.Http;

namespace Cfn.Chaos;

/// <summary>One fault the injector applied (or tried to).</summary>
public sealed record FaultRecord(string Kind, string Target, int Run, DateTimeOffset At, string Detail)
{
    /// <summary>For a SIGSTOP: when the SIGCONT was sent.</summary>
    public DateTimeOffset? Until { get; set; }
}

/// <summary>One OS process of a <see cref="ManagedProcess"/>: a pod's container run, with its own log file.</summary>
public sealed class ProcessRun
{
    public required string Name { get; init; }

    public required string Role { get; init; }

    public required int Index { get; init; }

    public required int Pid { get; init; }

    public required string LogPath { get; init; }

    public required DateTimeOffset StartedAt { get; init; }

    public DateTimeOffset? ExitedAt { get; set; }

    public int? ExitCode { get; set; }

    /// <summary>The runner SIGKILLed this run (a fault); its last lines may be lost, its waits are not judged.</summary>
    public bool Killed { get; set; }

    /// <summary>The runner began the graceful stop at the end of the run: lines after it are not judged.</summary>
    public DateTimeOffset? FinalStopAt { get; set; }

    /// <summary>SIGKILL and SIGSTOP faults of this run (a run hosting other coordinators faults them too).</summary>
    public List<FaultRecord> Faults { get; } = [];

    public DateTimeOffset? FirstFaultAt => Faults.Count == 0 ? null : Faults.Min(f => f.At);

    internal Process? Process { get; set; }

    public override string ToString() => $"{Name}#{Index} (pid {Pid}, {Path.GetFileName(LogPath)})";
}

/// <summary>
/// A cfn process as Kubernetes would run it: a name (the pod, also its <c>COORDINATOR_ID</c>), a role, a fixed HTTP port
/// and environment, and successive runs under the same ID (a restart is a new instance). stdout and stderr of each run go
/// straight to its own log file (the shell redirects them), so a slow runner can never block a process on a full pipe.
/// </summary>
public sealed class ManagedProcess
{
    private readonly string _cfnDll;
    private readonly string _logDirectory;
    private readonly Lock _gate = new();
    private readonly List<ProcessRun> _runs = [];

    internal ManagedProcess(string name, string role, int httpPort, IReadOnlyDictionary<string, string> environment, string cfnDll, string logDirectory)
    {
        Name = name;
        Role = role;
        HttpPort = httpPort;
        Environment = environment;
        _cfnDll = cfnDll;
        _logDirectory = logDirectory;
    }

    public string Name { get; }

    /// <summary><c>coordinator</c>, <c>validator</c>, <c>timeout-handler</c> or <c>swarm-manager</c>.</summary>
    public string Role { get; }

    public int HttpPort { get; }

    public IReadOnlyDictionary<string, string> Environment { get; }

    /// <summary>Paused with SIGSTOP right now.</summary>
    public bool Paused { get; private set; }

    /// <summary>Left dead on purpose: the replacement path runs and nothing restarts it.</summary>
    public bool Retired { get; set; }

    /// <summary>A restart is scheduled (after a SIGKILL or an exit).</summary>
    public bool RestartPending { get; set; }

    /// <summary>The end of the run began: exits are expected and nothing is restarted.</summary>
    public bool Finishing { get; set; }

    /// <summary>Called when a run exits without the runner having killed or stopped it (exit code 3 = superseded, else a crash).</summary>
    public Action<ManagedProcess, ProcessRun>? UnexpectedExit { get; set; }

    public IReadOnlyList<ProcessRun> Runs
    {
        get
        {
            lock (_gate)
            {
                return [.. _runs];
            }
        }
    }

    public ProcessRun? Current
    {
        get
        {
            lock (_gate)
            {
                return _runs.Count > 0 && _runs[^1].ExitedAt is null ? _runs[^1] : null;
            }
        }
    }

    public bool IsUp => Current is not null && !Paused;

    /// <summary>Starts a new run (a new instance under the same ID).</summary>
    public ProcessRun Start()
    {
        lock (_gate)
        {
            if (_runs.Count > 0 && _runs[^1].ExitedAt is null)
            {
                return _runs[^1];
            }

            var index = _runs.Count + 1;
            var log = Path.Combine(_logDirectory, $"{Name}.{index}.log");
            // exec: the shell becomes dotnet, so the PID we signal is cfn's own.
            var start = new ProcessStartInfo("bash")
            {
                UseShellExecute = false,
                RedirectStandardInput = true,
            };
            start.ArgumentList.Add("-c");
            start.ArgumentList.Add("exec dotnet \"$0\" serve --role \"$1\" >>\"$2\" 2>&1 </dev/null");
            start.ArgumentList.Add(_cfnDll);
            start.ArgumentList.Add(Role);
            start.ArgumentList.Add(log);
            foreach (var (name, value) in Environment)
            {
                start.Environment[name] = value;
            }

            var process = System.Diagnostics.Process.Start(start) ?? throw new InvalidOperationException($"{Name}: bash did not start");
            var run = new ProcessRun
            {
                Name = Name,
                Role = Role,
                Index = index,
                Pid = process.Id,
                LogPath = log,
                StartedAt = DateTimeOffset.UtcNow,
                Process = process,
            };
            _runs.Add(run);
            Paused = false;
            RestartPending = false;
            _ = WatchAsync(run, process);
            return run;
        }
    }

    private async Task WatchAsync(ProcessRun run, Process process)
    {
        await process.WaitForExitAsync();
        bool unexpected;
        lock (_gate)
        {
            run.ExitedAt = DateTimeOffset.UtcNow;
            run.ExitCode = process.ExitCode;
            Paused = false;
            unexpected = !run.Killed && run.FinalStopAt is null;
        }

        process.Dispose();
        if (unexpected)
        {
            UnexpectedExit?.Invoke(this, run);
        }
    }

    /// <summary>SIGKILL of the current run; returns it (null when nothing runs).</summary>
    public ProcessRun? Kill(FaultRecord? fault)
    {
        lock (_gate)
        {
            var run = Current;
            if (run is null)
            {
                return null;
            }

            run.Killed = true;
            if (fault is not null)
            {
                run.Faults.Add(fault);
            }

            Posix.Send(run.Pid, Posix.SigKill);
            return run;
        }
    }

    public ProcessRun? Pause(FaultRecord fault)
    {
        lock (_gate)
        {
            var run = Current;
            if (run is null || Paused)
            {
                return null;
            }

            run.Faults.Add(fault);
            Posix.Send(run.Pid, Posix.SigStop);
            Paused = true;
            return run;
        }
    }

    public void Resume()
    {
        lock (_gate)
        {
            if (Current is { } run && Paused)
            {
                Posix.Send(run.Pid, Posix.SigCont);
            }

            Paused = false;
        }
    }

    /// <summary>The graceful stop at the end (SIGTERM, then SIGKILL after <paramref name="grace"/>).</summary>
    public async Task StopAsync(TimeSpan grace)
    {
        ProcessRun? run;
        Process? process;
        lock (_gate)
        {
            Finishing = true;
            run = Current;
            process = run?.Process;
            if (run is null)
            {
                return;
            }

            run.FinalStopAt = DateTimeOffset.UtcNow;
            if (Paused)
            {
                Posix.Send(run.Pid, Posix.SigCont);
                Paused = false;
            }

            Posix.Send(run.Pid, Posix.SigTerm);
        }

        var deadline = DateTime.UtcNow + grace;
        while (run.ExitedAt is null && DateTime.UtcNow < deadline)
        {
            await Task.Delay(100);
        }

        if (run.ExitedAt is null)
        {
            Posix.Send(run.Pid, Posix.SigKill);
            while (run.ExitedAt is null)
            {
                await Task.Delay(50);
            }
        }
    }

    /// <summary>Polls <c>/health/ready</c> of the current run until it answers 200.</summary>
    public async Task<bool> WaitReadyAsync(HttpClient http, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (Current is null)
            {
                return false;
            }

            try
            {
                using var response = await http.GetAsync(new Uri($"http://127.0.0.1:{HttpPort}/health/ready"));
                if (response.IsSuccessStatusCode)
                {
                    return true;
                }
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                // not listening yet
            }

            await Task.Delay(200);
        }

        return false;
    }

    public override string ToString() => Name;
}
