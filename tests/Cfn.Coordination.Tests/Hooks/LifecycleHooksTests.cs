using System.Globalization;
using System.Text.Json;
using Cfn.Coordination.Acks;
using Cfn.Coordination.Hooks;
using Cfn.Coordination.Signals;
using Cfn.Coordination.Tests.Infrastructure;
using Microsoft.Extensions.Logging;

namespace Cfn.Coordination.Tests.Hooks;

[Collection(RedisCollection.Name)]
public sealed class LifecycleHooksTests(RedisServer server)
{
    private static readonly TimeSpan Idle = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task CompletedWait_RunsStartAndSignalReceived_WithTheirVariables()
    {
        using var dir = new HookDir();
        dir.WriteRecorder(HookNames.OnBlockingStart);
        dir.WriteRecorder(HookNames.OnSignalReceived);
        dir.WriteRecorder(HookNames.OnBlockingTimeout);
        await using var h = Harness.Create(server);
        await using var hooks = dir.Hooks(h);
        var sender = await h.StartAsync(swarmId: "swarm-hooks");
        hooks.Attach(sender);
        Assert.Same(hooks, sender.WaitObserver);
        await sender.SetIterationAsync(3, "validation");
        var r1 = await h.StartAsync();
        var r2 = await h.StartAsync();
        await r2.SetIterationAsync(7);
        var s1 = await sender.Signals.SendAsync(r1.Id, SignalTypes.Validation, 3);
        var s2 = await sender.Signals.SendAsync(r2.Id, SignalTypes.Validation, 3);

        var waiting = sender.Waiter.WaitForAcksAsync(
            new Dictionary<string, string> { [r1.Id] = s1.MessageId, [r2.Id] = s2.MessageId }, TimeSpan.FromSeconds(20));
        await EventuallyAsync(() => sender.Status == "blocking", "the sender never started waiting");
        var a1 = await r1.Acks.AcknowledgeAsync(s1.MessageId, sender.Id, SignalTypes.Validation, null, s1.Timestamp);
        var a2 = await r2.Acks.AcknowledgeAsync(s2.MessageId, sender.Id, SignalTypes.Validation, null, s2.Timestamp);
        var result = await waiting.WaitAsync(TimeSpan.FromSeconds(10));
        await hooks.WhenIdleAsync().WaitAsync(Idle);

        Assert.Equal(AckWaitStatus.Completed, result.Status);
        var start = dir.Recorded(HookNames.OnBlockingStart);
        Assert.Equal("on_blocking_start", start["HOOK_NAME"]);
        Assert.Equal(sender.Id, start["AGENT_ID"]);
        Assert.Equal("waiting-for-acks", start["TASK"]);
        Assert.Equal("swarm-hooks", start["SWARM_ID"]);
        Assert.Equal("3", start["ITERATION"]);
        Assert.Equal("validation", start["PHASE"]);
        Assert.Equal("consensus-validation", start["BLOCKING_TYPE"]);
        Assert.Equal("20000", start["TIMEOUT_THRESHOLD"]);
        Assert.Equal($"{s1.MessageId},{s2.MessageId}", start["SIGNAL_ID"]);
        Assert.Equal("2", start["COORDINATOR_COUNT"]);
        Assert.False(string.IsNullOrEmpty(start["PATH"])); // the process environment is passed on

        var received = dir.Recorded(HookNames.OnSignalReceived);
        Assert.Equal("on_signal_received", received["HOOK_NAME"]);
        Assert.Equal(sender.Id, received["AGENT_ID"]);
        Assert.Equal("2", received["RECEIVED_COUNT"]);
        Assert.Equal((long)result.Duration.TotalMilliseconds, long.Parse(received["WAIT_DURATION"], CultureInfo.InvariantCulture));
        using var data = JsonDocument.Parse(received["SIGNAL_DATA"]);
        var root = data.RootElement;
        Assert.Equal(2, root.GetProperty("receivedCount").GetInt32());
        Assert.Equal([r1.Id, r2.Id], root.GetProperty("coordinators").EnumerateArray().Select(e => e.GetString()));
        var acks = root.GetProperty("acks").EnumerateArray().ToList();
        Assert.Equal(2, acks.Count);
        Assert.Equal(r1.Id, acks[0].GetProperty("coordinatorId").GetString());
        Assert.Equal(a1.Timestamp, acks[0].GetProperty("timestamp").GetInt64());
        Assert.Equal(0, acks[0].GetProperty("iteration").GetInt64());
        Assert.Equal(r2.Id, acks[1].GetProperty("coordinatorId").GetString());
        Assert.Equal(a2.Timestamp, acks[1].GetProperty("timestamp").GetInt64());
        Assert.Equal(7, acks[1].GetProperty("iteration").GetInt64());

        Assert.False(File.Exists(dir.OutputOf(HookNames.OnBlockingTimeout)));
        var m = hooks.Metrics;
        Assert.Equal(2, m.HooksExecuted);
        Assert.Equal(0, m.HooksFailed);
        Assert.Equal(1, hooks.Runs.WithLabels(HookNames.OnBlockingStart, "success").Value);
        Assert.Equal(1, hooks.Runs.WithLabels(HookNames.OnSignalReceived, "success").Value);
    }

    [Fact]
    public async Task TimedOutWait_RunsBlockingTimeout_WithTheMissingCoordinators()
    {
        using var dir = new HookDir();
        dir.WriteRecorder(HookNames.OnBlockingStart);
        dir.WriteRecorder(HookNames.OnSignalReceived);
        dir.WriteRecorder(HookNames.OnBlockingTimeout);
        await using var h = Harness.Create(server);
        await using var hooks = dir.Hooks(h);
        var sender = await h.StartAsync();
        hooks.Attach(sender);
        var r1 = await h.StartAsync();
        var r2 = TestIds.New("gone");
        var r3 = TestIds.New("gone");
        var sent = await sender.Signals.SendAsync(r1.Id, SignalTypes.Validation, 1);
        await r1.Acks.AcknowledgeAsync(sent.MessageId, sender.Id, SignalTypes.Validation, null, sent.Timestamp);

        var result = await sender.Waiter.WaitForAcksAsync([r1.Id, r2, r3], sent.MessageId, TimeSpan.FromMilliseconds(400));
        await hooks.WhenIdleAsync().WaitAsync(Idle);

        Assert.Equal(AckWaitStatus.Timeout, result.Status);
        var timeout = dir.Recorded(HookNames.OnBlockingTimeout);
        Assert.Equal("on_blocking_timeout", timeout["HOOK_NAME"]);
        Assert.Equal(sender.Id, timeout["AGENT_ID"]);
        Assert.Equal("blocking-coordination", timeout["PHASE"]);
        Assert.Equal(sent.MessageId, timeout["SIGNAL_ID"]);
        Assert.Equal("400", timeout["TIMEOUT_THRESHOLD"]);
        Assert.Equal("1", timeout["RECEIVED_COUNT"]);
        Assert.Equal("2", timeout["MISSING_COUNT"]);
        Assert.Equal($"{r2},{r3}", timeout["MISSING_COORDINATORS"]);
        var duration = long.Parse(timeout["TIMEOUT_DURATION"], CultureInfo.InvariantCulture);
        Assert.Equal((long)result.Duration.TotalMilliseconds, duration);
        Assert.Equal(Math.Max(0, duration - 400), long.Parse(timeout["EXCEEDED_BY"], CultureInfo.InvariantCulture));
        Assert.True(File.Exists(dir.OutputOf(HookNames.OnBlockingStart)));
        Assert.False(File.Exists(dir.OutputOf(HookNames.OnSignalReceived)));
        Assert.Equal(1, hooks.Runs.WithLabels(HookNames.OnBlockingTimeout, "success").Value);
    }

    [Fact]
    public async Task Disabled_RunsNothing_EvenWhenSetAsObserver()
    {
        using var dir = new HookDir();
        foreach (var hook in HookNames.All)
        {
            dir.WriteRecorder(hook);
        }

        await using var h = Harness.Create(server);
        await using var hooks = dir.Hooks(h, o => o.Enabled = false);
        var sender = await h.StartAsync();
        hooks.Attach(sender);
        Assert.Null(sender.WaitObserver); // Attach does nothing when disabled
        sender.WaitObserver = hooks;      // and the hooks gate themselves too
        var receiver = await h.StartAsync();
        var sent = await sender.Signals.SendAsync(receiver.Id, SignalTypes.Validation, 1);
        await receiver.Acks.AcknowledgeAsync(sent.MessageId, sender.Id, SignalTypes.Validation, null, sent.Timestamp);

        var completed = await sender.Waiter.WaitForAcksAsync([receiver.Id], sent.MessageId, TimeSpan.FromSeconds(10));
        var timedOut = await sender.Waiter.WaitForAcksAsync([TestIds.New("gone")], sent.MessageId, TimeSpan.FromMilliseconds(200));
        await hooks.WhenIdleAsync().WaitAsync(Idle);

        Assert.Equal(AckWaitStatus.Completed, completed.Status);
        Assert.Equal(AckWaitStatus.Timeout, timedOut.Status);
        Assert.False(hooks.TryRun(HookNames.OnBlockingStart, new Dictionary<string, string>()));
        Assert.Empty(Directory.GetFiles(dir.Output));
        Assert.Equal(new HookMetrics(0, 0, 0, 0, 0), hooks.Metrics);
        Assert.Empty(RecoveryKit.Lines(h, "Lifecycle hooks enabled"));
    }

    [Fact]
    public async Task Enabled_NoScripts_WaitsAsUsualAndCountsNothing()
    {
        using var dir = new HookDir();
        await using var h = Harness.Create(server);
        await using var hooks = dir.Hooks(h);
        var sender = await h.StartAsync();
        hooks.Attach(sender);

        var result = await sender.Waiter.WaitForAcksAsync([TestIds.New("gone")], TestIds.New("sig"), TimeSpan.FromMilliseconds(200));
        await hooks.WhenIdleAsync().WaitAsync(Idle);

        Assert.Equal(AckWaitStatus.Timeout, result.Status);
        Assert.Equal(0, hooks.Metrics.HooksExecuted);
        Assert.Single(RecoveryKit.Lines(h, "Lifecycle hooks enabled", "configured=none"));
    }

    [Fact]
    public async Task SlowHook_IsKilledAndCountedFailed_AndNeverDelaysTheWait()
    {
        using var dir = new HookDir();
        // The hook would take 30 s; its child sleep proves the whole process tree is killed.
        dir.Write(HookNames.OnBlockingStart, $"""
            sleep 30 &
            echo $! > '{dir.Output}/child.pid'
            wait
            echo finished > '{dir.Output}/finished'
            """);
        await using var h = Harness.Create(server);
        await using var hooks = dir.Hooks(h, o => o.Timeout = TimeSpan.FromSeconds(2));
        var sender = await h.StartAsync();
        hooks.Attach(sender);
        var receiver = await h.StartAsync();
        var sent = await sender.Signals.SendAsync(receiver.Id, SignalTypes.Validation, 1);
        await receiver.Acks.AcknowledgeAsync(sent.MessageId, sender.Id, SignalTypes.Validation, null, sent.Timestamp);

        var result = await sender.Waiter.WaitForAcksAsync([receiver.Id], sent.MessageId, TimeSpan.FromSeconds(10));
        var runningWhenWaitReturned = hooks.Running;
        var failedWhenWaitReturned = hooks.Metrics.HooksFailed;
        await hooks.WhenIdleAsync().WaitAsync(Idle);

        Assert.Equal(AckWaitStatus.Completed, result.Status);
        // The wait returned while the slow hook was still running (on_signal_received may still be looking for its script,
        // which does not exist, so it may count too).
        Assert.InRange(runningWhenWaitReturned, 1, 2);
        Assert.Equal(0, failedWhenWaitReturned);
        Assert.False(File.Exists(Path.Combine(dir.Output, "finished")));
        var m = hooks.Metrics;
        Assert.Equal(1, m.HooksExecuted);
        Assert.Equal(1, m.HooksFailed);
        Assert.Equal(1, hooks.Runs.WithLabels(HookNames.OnBlockingStart, "timeout").Value);
        var line = Assert.Single(RecoveryKit.Lines(h, "Hook execution failed (non-fatal)", "hook=on_blocking_start"));
        Assert.Equal(LogLevel.Warning, line.Level);
        Assert.Contains("timed out after 2000 ms", line.Message, StringComparison.Ordinal);
        var child = int.Parse(File.ReadAllText(Path.Combine(dir.Output, "child.pid")).Trim(), CultureInfo.InvariantCulture);
        Assert.True(await EventuallyAsync(() => Task.FromResult(!IsAlive(child)), TimeSpan.FromSeconds(5)),
            $"the hook's child process {child} survived the kill");
    }

    [Fact]
    public async Task FailingHook_LogsNonFatalWarningAndStderr_StdoutAtDebug()
    {
        using var dir = new HookDir();
        dir.Write(HookNames.OnBlockingStart, "echo hello-from-hook");
        dir.Write(HookNames.OnSignalReceived, "echo oops-from-hook >&2\nexit 3");
        await using var h = Harness.Create(server);
        await using var hooks = dir.Hooks(h);
        var sender = await h.StartAsync();
        hooks.Attach(sender);
        var receiver = await h.StartAsync();
        var sent = await sender.Signals.SendAsync(receiver.Id, SignalTypes.Validation, 1);
        await receiver.Acks.AcknowledgeAsync(sent.MessageId, sender.Id, SignalTypes.Validation, null, sent.Timestamp);

        var result = await sender.Waiter.WaitForAcksAsync([receiver.Id], sent.MessageId, TimeSpan.FromSeconds(10));
        await hooks.WhenIdleAsync().WaitAsync(Idle);

        Assert.Equal(AckWaitStatus.Completed, result.Status);
        var failed = Assert.Single(RecoveryKit.Lines(h, "Hook execution failed (non-fatal)"));
        Assert.Equal(LogLevel.Warning, failed.Level);
        Assert.Contains("hook=on_signal_received error=exit code 3", failed.Message, StringComparison.Ordinal);
        var stderr = Assert.Single(RecoveryKit.Lines(h, "oops-from-hook"));
        Assert.Equal(LogLevel.Warning, stderr.Level);
        var stdout = Assert.Single(RecoveryKit.Lines(h, "hello-from-hook"));
        Assert.Equal(LogLevel.Debug, stdout.Level);
        Assert.Contains("hook=on_blocking_start", stdout.Message, StringComparison.Ordinal);
        var m = hooks.Metrics;
        Assert.Equal(2, m.HooksExecuted);
        Assert.Equal(1, m.HooksFailed);
        Assert.Equal(1, hooks.Runs.WithLabels(HookNames.OnSignalReceived, "failed").Value);
        Assert.Equal(1, hooks.Runs.WithLabels(HookNames.OnBlockingStart, "success").Value);
    }

    [Fact]
    public async Task AllSlotsBusy_SkipsAndCounts_DisposeKillsTheRunningHook()
    {
        using var dir = new HookDir();
        dir.Write(HookNames.OnBlockingStart, $"touch '{dir.Output}/started'\nsleep 30\necho finished > '{dir.Output}/finished'");
        await using var h = Harness.Create(server);
        var hooks = dir.Hooks(h, o =>
        {
            o.MaxConcurrentHooks = 1;
            o.Timeout = TimeSpan.FromSeconds(60);
        });
        var variables = new Dictionary<string, string> { ["SIGNAL_ID"] = "x" };

        Assert.True(hooks.TryRun(HookNames.OnBlockingStart, variables));
        Assert.False(hooks.TryRun(HookNames.OnBlockingStart, variables));
        Assert.True(await EventuallyAsync(
            () => Task.FromResult(File.Exists(Path.Combine(dir.Output, "started"))), TimeSpan.FromSeconds(10)));
        await hooks.DisposeAsync().AsTask().WaitAsync(Idle);

        Assert.Equal(0, hooks.Running);
        Assert.False(File.Exists(Path.Combine(dir.Output, "finished")));
        var m = hooks.Metrics;
        Assert.Equal(1, m.HooksSkipped);
        Assert.Equal(1, m.HooksFailed);
        Assert.Equal(1, hooks.Runs.WithLabels(HookNames.OnBlockingStart, "skipped").Value);
        Assert.Single(RecoveryKit.Lines(h, "Hook skipped (too many running)"));
        Assert.Single(RecoveryKit.Lines(h, "Hook execution failed (non-fatal)", "stopped during shutdown"));
        Assert.False(hooks.TryRun(HookNames.OnBlockingStart, variables));
    }

    [Fact]
    public void TryRun_UnknownHook_Throws()
    {
        using var dir = new HookDir();
        var hooks = new LifecycleHooks(new HookOptions { Enabled = true, Directory = dir.Path });

        var e = Assert.Throws<ArgumentException>(() => hooks.TryRun("on_anything", new Dictionary<string, string>()));

        Assert.Contains("on_blocking_start", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ThrowingObserver_DoesNotChangeTheWait()
    {
        await using var h = Harness.Create(server);
        var sender = await h.StartAsync();
        sender.WaitObserver = new ThrowingObserver();
        var receiver = await h.StartAsync();
        var sent = await sender.Signals.SendAsync(receiver.Id, SignalTypes.Validation, 1);
        await receiver.Acks.AcknowledgeAsync(sent.MessageId, sender.Id, SignalTypes.Validation, null, sent.Timestamp);

        var result = await sender.Waiter.WaitForAcksAsync([receiver.Id], sent.MessageId, TimeSpan.FromSeconds(10));

        Assert.Equal(AckWaitStatus.Completed, result.Status);
        Assert.Equal(2, RecoveryKit.Lines(h, "Wait observer failed", sender.Id).Count);
    }

    private static bool IsAlive(int pid)
    {
        var stat = $"/proc/{pid}/stat";
        if (!File.Exists(stat))
        {
            return false;
        }

        try
        {
            // "pid (comm) S ...": a zombie (Z) or dead (X) process is not running, whoever reaps it.
            var text = File.ReadAllText(stat);
            var state = text[(text.LastIndexOf(')') + 2)..].Split(' ')[0];
            return state is not ("Z" or "X");
        }
        catch (IOException)
        {
            return false;
        }
    }

    private sealed class ThrowingObserver : IWaitObserver
    {
        public void OnWaitStarted(AckWaitInfo wait) => throw new InvalidOperationException("observer broke");

        public void OnWaitEnded(AckWaitInfo wait, AckWaitResult result) => throw new InvalidOperationException("observer broke");
    }

    /// <summary>A temporary hooks directory, with an <c>out</c> folder the scripts write into.</summary>
    private sealed class HookDir : IDisposable
    {
        private static readonly string[] RecordedVariables =
        [
            "HOOK_NAME", "AGENT_ID", "TASK", "SWARM_ID", "ITERATION", "PHASE", "BLOCKING_TYPE", "TIMEOUT_THRESHOLD", "SIGNAL_ID",
            "COORDINATOR_COUNT", "TIMEOUT_DURATION", "EXCEEDED_BY", "RECEIVED_COUNT", "MISSING_COUNT", "MISSING_COORDINATORS",
            "SIGNAL_DATA", "WAIT_DURATION", "PATH",
        ];

        public HookDir()
        {
            Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), TestIds.New("cfn-hooks"));
            Output = System.IO.Path.Combine(Path, "out");
            Directory.CreateDirectory(Output);
        }

        public string Path { get; }

        public string Output { get; }

        public LifecycleHooks Hooks(Harness h, Action<HookOptions>? configure = null)
        {
            var options = new HookOptions { Enabled = true, Directory = Path };
            configure?.Invoke(options);
            return new LifecycleHooks(options, h.LoggerFactory.CreateLogger("Cfn.Coordination.Hooks"), h.Registry);
        }

        /// <summary>A plain script file (not executable: hooks are run with bash).</summary>
        public void Write(string hook, string body) => File.WriteAllText(System.IO.Path.Combine(Path, hook), body + "\n");

        /// <summary>A hook that writes the hook variables it sees to <c>out/{hook}.env</c>.</summary>
        public void WriteRecorder(string hook) => Write(hook, $$"""
            for v in {{string.Join(' ', RecordedVariables)}}; do
              if [ -n "${!v+x}" ]; then printf '%s=%s\n' "$v" "${!v}"; fi
            done > '{{OutputOf(hook)}}.tmp'
            mv '{{OutputOf(hook)}}.tmp' '{{OutputOf(hook)}}'
            """);

        public string OutputOf(string hook) => System.IO.Path.Combine(Output, hook + ".env");

        public Dictionary<string, string> Recorded(string hook) => File.ReadAllLines(OutputOf(hook))
            .Select(l => l.Split('=', 2))
            .ToDictionary(p => p[0], p => p[1], StringComparer.Ordinal);

        public void Dispose()
        {
            try
            {
                Directory.Delete(Path, recursive: true);
            }
            catch (IOException)
            {
                // A killed hook's leftover; the temp folder is cleaned by the OS.
            }
        }
    }
}
