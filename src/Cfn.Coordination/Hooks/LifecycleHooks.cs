using System.Collections.Concurrent;
using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Cfn.Coordination.Acks;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Prometheus;

namespace Cfn.Coordination.Hooks;

/// <summary>
/// Runs the lifecycle hooks of ACK waits (SPEC §2.15) when <c>ENABLE_TIMEOUT_HOOKS</c> is true:
/// <c>on_blocking_start</c> when a wait starts, <c>on_blocking_timeout</c> when one times out, <c>on_signal_received</c>
/// when one completes. A hook is <c>/bin/bash {dir}/{hook}</c> with the process environment plus the hook's variables
/// and <c>HOOK_NAME</c>. Hooks run in the background, a bounded number at once, so they never delay a wait or an ACK;
/// a failure (non-zero exit, timeout, no start) is logged and counted, never thrown. Attach to each coordinator with
/// <see cref="Attach"/>; dispose at shutdown to kill what still runs.
/// </summary>
public sealed class LifecycleHooks : IWaitObserver, IAsyncDisposable
{
    /// <summary><c>TASK</c> of every hook.</summary>
    public const string DefaultTask = "waiting-for-acks";

    /// <summary><c>PHASE</c> when the coordinator has none.</summary>
    public const string DefaultPhase = "blocking-coordination";

    /// <summary><c>BLOCKING_TYPE</c> of every hook.</summary>
    public const string BlockingType = "consensus-validation";

    /// <summary>At most this many IDs (or ACKs) go into one variable, so the environment stays below the kernel's per-variable limit.</summary>
    public const int MaxListed = 500;

    /// <summary>At most this many characters of a hook's stdout and of its stderr are logged.</summary>
    public const int MaxLoggedOutput = 4096;

    private static readonly TimeSpan OutputGrace = TimeSpan.FromSeconds(1);

    private readonly HookOptions _options;
    private readonly ILogger _logger;
    private readonly Counter _runs;
    private readonly SemaphoreSlim _slots;
    private readonly CancellationTokenSource _stopping = new();
    private readonly ConcurrentDictionary<long, Task> _running = new();
    private long _nextRun;
    private long _executed;
    private long _failed;
    private long _timeMs;
    private long _skipped;
    private int _disposed;

    /// <summary>Creates the runner; counts <c>lifecycle_hooks_total{hook,result}</c> in <paramref name="registry"/> (the default registry when null).</summary>
    /// <exception cref="System.ComponentModel.DataAnnotations.ValidationException">The options are invalid.</exception>
    public LifecycleHooks(HookOptions options, ILogger? logger = null, CollectorRegistry? registry = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        _logger = logger ?? NullLogger.Instance;
        _slots = new SemaphoreSlim(options.MaxConcurrentHooks, options.MaxConcurrentHooks);
        _runs = Prometheus.Metrics.WithCustomRegistry(registry ?? Prometheus.Metrics.DefaultRegistry).CreateCounter(
            "lifecycle_hooks_total", "Lifecycle hook runs by hook and result (success, failed, timeout, skipped).", "hook", "result");
        if (options.Enabled)
        {
            var configured = HookNames.All.Where(h => File.Exists(Path.Combine(options.Directory, h))).ToList();
            _logger.LogInformation("Lifecycle hooks enabled dir={Directory} timeout={TimeoutMs} configured={Configured}",
                options.Directory, (long)options.Timeout.TotalMilliseconds, configured.Count == 0 ? "none" : string.Join(',', configured));
        }
    }

    /// <summary>True when <c>ENABLE_TIMEOUT_HOOKS</c> is on.</summary>
    public bool Enabled => _options.Enabled;

    /// <summary>Hook runs in flight now.</summary>
    public int Running => _running.Count;

    /// <summary><c>lifecycle_hooks_total{hook,result}</c>.</summary>
    internal Counter Runs => _runs;

    /// <summary>A snapshot of the counts.</summary>
    public HookMetrics Metrics
    {
        get
        {
            var executed = Interlocked.Read(ref _executed);
            var time = Interlocked.Read(ref _timeMs);
            return new HookMetrics(executed, Interlocked.Read(ref _failed), time, executed == 0 ? 0 : (double)time / executed,
                Interlocked.Read(ref _skipped));
        }
    }

    /// <summary>Makes this the wait observer of <paramref name="coordinator"/>; does nothing when hooks are disabled.</summary>
    public void Attach(Coordinator coordinator)
    {
        ArgumentNullException.ThrowIfNull(coordinator);
        if (Enabled)
        {
            coordinator.WaitObserver = this;
        }
    }

    /// <inheritdoc/>
    public void OnWaitStarted(AckWaitInfo wait)
    {
        ArgumentNullException.ThrowIfNull(wait);
        if (!Enabled)
        {
            return;
        }

        var variables = Common(wait);
        TryRun(HookNames.OnBlockingStart, variables);
    }

    /// <inheritdoc/>
    public void OnWaitEnded(AckWaitInfo wait, AckWaitResult result)
    {
        ArgumentNullException.ThrowIfNull(wait);
        ArgumentNullException.ThrowIfNull(result);
        if (!Enabled)
        {
            return;
        }

        var durationMs = (long)result.Duration.TotalMilliseconds;
        var variables = Common(wait);
        switch (result.Status)
        {
            case AckWaitStatus.Timeout:
                var timeoutMs = (long)wait.Timeout.TotalMilliseconds;
                variables["TIMEOUT_DURATION"] = Number(durationMs);
                variables["EXCEEDED_BY"] = Number(Math.Max(0, durationMs - timeoutMs));
                variables["RECEIVED_COUNT"] = Number(result.Acks.Count);
                variables["MISSING_COUNT"] = Number(result.Missing.Count);
                variables["MISSING_COORDINATORS"] = string.Join(',', result.Missing.Take(MaxListed));
                TryRun(HookNames.OnBlockingTimeout, variables);
                break;
            case AckWaitStatus.Completed:
                variables["SIGNAL_DATA"] = SignalData(wait, result);
                variables["WAIT_DURATION"] = Number(durationMs);
                variables["RECEIVED_COUNT"] = Number(result.Acks.Count);
                TryRun(HookNames.OnSignalReceived, variables);
                break;
        }
    }

    /// <summary>
    /// Starts <paramref name="hook"/> in the background with <paramref name="variables"/> (and <c>HOOK_NAME</c>) added to
    /// the process environment. Returns false, running nothing, when hooks are disabled, stopped, or the most allowed
    /// already run (counted as skipped). A missing script is looked up in the background and is not a failure.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="hook"/> is not one of <see cref="HookNames.All"/>.</exception>
    public bool TryRun(string hook, IReadOnlyDictionary<string, string> variables)
    {
        ArgumentNullException.ThrowIfNull(variables);
        if (!HookNames.All.Contains(hook))
        {
            throw new ArgumentException($"hook must be one of {string.Join(", ", HookNames.All)} (got \"{hook}\")", nameof(hook));
        }

        if (!Enabled || _stopping.IsCancellationRequested)
        {
            return false;
        }

        if (!_slots.Wait(0))
        {
            Interlocked.Increment(ref _skipped);
            _runs.WithLabels(hook, "skipped").Inc();
            _logger.LogWarning("Hook skipped (too many running) hook={Hook} running={Running}", hook, _running.Count);
            return false;
        }

        var id = Interlocked.Increment(ref _nextRun);
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _running[id] = done.Task;
        _ = Task.Run(async () =>
        {
            try
            {
                await ExecuteAsync(hook, variables).ConfigureAwait(false);
            }
            finally
            {
                _running.TryRemove(id, out _);
                _slots.Release();
                done.SetResult();
            }
        });
        return true;
    }

    /// <summary>Completes when no hook runs any more (hooks started meanwhile are awaited too).</summary>
    public async Task WhenIdleAsync(CancellationToken cancellationToken = default)
    {
        while (!_running.IsEmpty)
        {
            await Task.WhenAll(_running.Values.ToArray()).WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Stops starting hooks, kills the running ones (with their process trees) and waits for them.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }

        await _stopping.CancelAsync().ConfigureAwait(false);
        await WhenIdleAsync().ConfigureAwait(false);
        _stopping.Dispose();
        _slots.Dispose();
    }

    private async Task ExecuteAsync(string hook, IReadOnlyDictionary<string, string> variables)
    {
        var path = Path.Combine(_options.Directory, hook);
        if (!File.Exists(path))
        {
            _logger.LogDebug("Hook not configured hook={Hook} path={Path}", hook, path);
            return;
        }

        var start = new ProcessStartInfo("/bin/bash")
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = _options.Directory,
        };
        start.ArgumentList.Add(path);
        foreach (var (name, value) in variables)
        {
            start.Environment[name] = value;
        }

        start.Environment["HOOK_NAME"] = hook;
        var started = Stopwatch.GetTimestamp();
        var result = "success";
        string? error = null;
        try
        {
            using var process = new Process { StartInfo = start };
            process.Start();
            process.StandardInput.Close(); // a hook that reads stdin gets EOF, not the coordinator's input
            var stdout = ReadBoundedAsync(process.StandardOutput);
            var stderr = ReadBoundedAsync(process.StandardError);
            using (var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token))
            {
                timeout.CancelAfter(_options.Timeout);
                try
                {
                    await process.WaitForExitAsync(timeout.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    KillTree(process);
                    result = "timeout";
                    error = _stopping.IsCancellationRequested
                        ? "stopped during shutdown; process tree killed"
                        : $"timed out after {(long)_options.Timeout.TotalMilliseconds} ms; process tree killed";
                }
            }

            // A detached grandchild may keep a pipe open: log what came within a grace period, never wait for more.
            await Task.WhenAny(Task.WhenAll(stdout, stderr), Task.Delay(OutputGrace)).ConfigureAwait(false);
            if (result == "success" && process.ExitCode != 0)
            {
                result = "failed";
                error = $"exit code {process.ExitCode}";
            }

            LogOutput(hook, stdout, stderr);
        }
        catch (Exception e) when (e is Win32Exception or InvalidOperationException or IOException or UnauthorizedAccessException)
        {
            result = "failed";
            error = e.Message;
        }

        var elapsedMs = (long)Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        Interlocked.Increment(ref _executed);
        Interlocked.Add(ref _timeMs, elapsedMs);
        _runs.WithLabels(hook, result).Inc();
        if (error is null)
        {
            _logger.LogDebug("Hook executed hook={Hook} duration={DurationMs}", hook, elapsedMs);
            return;
        }

        Interlocked.Increment(ref _failed);
        _logger.LogWarning("Hook execution failed (non-fatal) hook={Hook} error={Error} duration={DurationMs}", hook, error, elapsedMs);
    }

    private void LogOutput(string hook, Task<string> stdout, Task<string> stderr)
    {
        if (stdout.IsCompletedSuccessfully && stdout.Result.Length > 0)
        {
            _logger.LogDebug("Hook output hook={Hook} stdout={Stdout}", hook, stdout.Result);
        }

        if (stderr.IsCompletedSuccessfully && stderr.Result.Length > 0)
        {
            _logger.LogWarning("Hook stderr hook={Hook} stderr={Stderr}", hook, stderr.Result);
        }
    }

    private void KillTree(Process process)
    {
        try
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit(1000);
        }
        catch (Exception e) when (e is InvalidOperationException or Win32Exception or NotSupportedException)
        {
            // It exited between the timeout and the kill.
            _logger.LogDebug("Hook kill: {Error}", e.Message);
        }
    }

    /// <summary>Drains a pipe to its end, keeping the first <see cref="MaxLoggedOutput"/> characters; never throws.</summary>
    private static async Task<string> ReadBoundedAsync(StreamReader reader)
    {
        var kept = new StringBuilder();
        var buffer = new char[1024];
        try
        {
            int read;
            while ((read = await reader.ReadAsync(buffer).ConfigureAwait(false)) > 0)
            {
                var room = MaxLoggedOutput - kept.Length;
                if (room > 0)
                {
                    kept.Append(buffer, 0, Math.Min(room, read));
                }
            }
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or InvalidOperationException)
        {
            // The process object was disposed while a detached child held the pipe; what was read is enough.
        }

        return kept.ToString().TrimEnd();
    }

    /// <summary>The variables every hook gets (SPEC §2.15), read from the coordinator now, on the waiter's path.</summary>
    private static Dictionary<string, string> Common(AckWaitInfo wait)
    {
        var coordinator = wait.Coordinator;
        return new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["AGENT_ID"] = coordinator.Id,
            ["TASK"] = DefaultTask,
            ["SWARM_ID"] = coordinator.SwarmId,
            ["ITERATION"] = Number(coordinator.Iteration),
            ["PHASE"] = coordinator.Phase ?? DefaultPhase,
            ["BLOCKING_TYPE"] = BlockingType,
            ["TIMEOUT_THRESHOLD"] = Number((long)wait.Timeout.TotalMilliseconds),
            ["SIGNAL_ID"] = wait.SignalId,
            ["COORDINATOR_COUNT"] = Number(wait.CoordinatorIds.Count),
        };
    }

    /// <summary><c>{receivedCount, coordinators, acks:[{coordinatorId,timestamp,iteration}]}</c>, in request order.</summary>
    private static string SignalData(AckWaitInfo wait, AckWaitResult result)
    {
        var acked = wait.CoordinatorIds.Where(result.Acks.ContainsKey).Take(MaxListed).ToList();
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream))
        {
            json.WriteStartObject();
            json.WriteNumber("receivedCount", result.Acks.Count);
            json.WriteStartArray("coordinators");
            foreach (var id in acked)
            {
                json.WriteStringValue(id);
            }

            json.WriteEndArray();
            json.WriteStartArray("acks");
            foreach (var id in acked)
            {
                var ack = result.Acks[id];
                json.WriteStartObject();
                json.WriteString("coordinatorId", ack.CoordinatorId);
                json.WriteNumber("timestamp", ack.Timestamp);
                json.WriteNumber("iteration", ack.Iteration);
                json.WriteEndObject();
            }

            json.WriteEndArray();
            json.WriteEndObject();
        }

        return Encoding.UTF8.GetString(stream.ToArray());
    }

    private static string Number(long value) => value.ToString(CultureInfo.InvariantCulture);
}
