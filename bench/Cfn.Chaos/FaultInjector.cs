using System.Collections.Concurrent;
using System.Diagnostics;

namespace Cfn.Chaos;

/// <summary>
/// Injects the faults of a run, at random (seeded) times and targets:
/// <list type="bullet">
/// <item>SIGKILL of a coordinator or validator process; like Kubernetes, the runner starts it again under the same ID
/// after a random delay: short (before its death can be declared) or long (after: the replacement path runs first); a
/// few are left dead for good.</item>
/// <item>SIGSTOP … SIGCONT, long enough to be declared dead (the process then finds itself superseded, exits 3 and is
/// restarted), or short (a GC pause; no death may follow).</item>
/// <item>Once (and every <see cref="ChaosOptions.EscalationKillEvery"/> in long runs): SIGKILL of a timeout handler in
/// the middle of an escalation. The second handler runs with <c>ESCALATION_STEP_DELAY_MS</c>, which makes it sleep
/// after each escalation step and log <c>Escalation step coordinator=… step=… handler=…</c>. The first handler is held
/// with SIGSTOP meanwhile, so the death of the coordinator killed for the purpose is escalated by the second one; at its
/// first <c>Escalation step</c> line it is SIGKILLed, the first handler is let go (it must resume the escalation), and
/// the killed one is started again a few seconds later. A build without the knob never logs the line: then the fault is
/// reported as not injected and counted.</item>
/// <item>Once: a redis-server restart (SIGTERM, start again on the same port and AOF directory).</item>
/// </list>
/// At most two coordinator processes and two validator processes are faulted at a time, so the swarms keep moving.
/// </summary>
internal sealed class FaultInjector
{
    private const int MaxFaultedCoordinators = 2;
    private const int MaxFaultedValidators = 2;
    private const int MaxRetiredPerRole = 1;

    private readonly ChaosOptions _options;
    private readonly IReadOnlyList<ManagedProcess> _coordinators;
    private readonly IReadOnlyList<ManagedProcess> _validators;
    private readonly ManagedProcess _heldHandler;
    private readonly ManagedProcess _knobHandler;
    private readonly RedisServer _redis;
    private readonly Random _random;
    private readonly Lock _randomGate = new();
    private readonly ConcurrentQueue<FaultRecord> _faults = new();
    private readonly ConcurrentQueue<string> _notInjected = new();
    private readonly ConcurrentDictionary<Task, byte> _pending = new();
    private readonly CancellationTokenSource _hurry = new();
    private readonly Stopwatch _clock = Stopwatch.StartNew();

    public FaultInjector(ChaosOptions options, IReadOnlyList<ManagedProcess> coordinators, IReadOnlyList<ManagedProcess> validators,
        ManagedProcess heldHandler, ManagedProcess knobHandler, RedisServer redis, Random random)
    {
        _options = options;
        _coordinators = coordinators;
        _validators = validators;
        _heldHandler = heldHandler;
        _knobHandler = knobHandler;
        _redis = redis;
        _random = random;
        foreach (var process in coordinators.Concat(validators).Append(heldHandler).Append(knobHandler))
        {
            process.UnexpectedExit = OnUnexpectedExit;
        }
    }

    public IReadOnlyList<FaultRecord> Faults => [.. _faults];

    /// <summary>One line per fault that could not be injected, with the reason.</summary>
    public IReadOnlyList<string> NotInjected => [.. _notInjected];

    /// <summary>The dead coordinator whose escalation was cut by each mid-escalation kill, and when.</summary>
    public ConcurrentQueue<(string DeadId, DateTimeOffset At, string StepLine)> EscalationKills { get; } = new();

    /// <summary>Exits the runner did not cause: exit code 3 is a superseded instance, anything else a crash.</summary>
    public ConcurrentQueue<ProcessRun> UnexpectedExits { get; } = new();

    public async Task RunAsync(CancellationToken stop)
    {
        var escalationKillAt = _options.Duration * _options.EscalationKillAt;
        var redisRestartAt = _options.Duration * _options.RedisRestartAt;
        var redisRestarted = false;
        var nextRandom = NextInterval();
        while (!stop.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(100, stop);
            }
            catch (OperationCanceledException)
            {
                break;
            }

            var elapsed = _clock.Elapsed;
            if (elapsed >= escalationKillAt)
            {
                escalationKillAt += _options.EscalationKillEvery;
                await KillHandlerMidEscalationAsync(stop);
            }
            else if (!redisRestarted && elapsed >= redisRestartAt)
            {
                redisRestarted = true;
                await RestartRedisAsync();
            }
            else if (elapsed >= nextRandom)
            {
                RandomFault();
                nextRandom = elapsed + NextInterval();
            }
        }
    }

    /// <summary>Ends the faults: every paused process is let go and every scheduled restart happens now.</summary>
    public async Task QuiesceAsync()
    {
        await _hurry.CancelAsync();
        while (!_pending.IsEmpty)
        {
            await Task.WhenAll(_pending.Keys);
        }

        foreach (var process in _coordinators.Concat(_validators).Append(_heldHandler).Append(_knobHandler))
        {
            process.Resume();
        }
    }

    private TimeSpan NextInterval()
    {
        // Exponential (a Poisson process of faults), clamped so a run neither bunches nor starves.
        var mean = _options.FaultInterval.TotalMilliseconds;
        var draw = -Math.Log(1 - Next()) * mean;
        return TimeSpan.FromMilliseconds(Math.Clamp(draw, mean * 0.25, mean * 3));
    }

    private void RandomFault()
    {
        var faultedCoordinators = _coordinators.Count(p => !p.IsUp);
        var faultedValidators = _validators.Count(p => !p.IsUp);
        var candidates = new List<ManagedProcess>();
        if (faultedCoordinators < MaxFaultedCoordinators)
        {
            candidates.AddRange(_coordinators.Where(p => p.IsUp));
        }

        if (faultedValidators < MaxFaultedValidators)
        {
            candidates.AddRange(_validators.Where(p => p.IsUp));
        }

        if (candidates.Count == 0)
        {
            return;
        }

        var target = candidates[NextInt(candidates.Count)];
        var roll = Next();
        if (roll < 0.45)
        {
            KillAndMaybeRestart(target);
        }
        else if (roll < 0.75)
        {
            PauseFor(target, "sigstop_long", TimeSpan.FromMilliseconds(_options.DeathMs + 1000 + NextInt(2000)));
        }
        else
        {
            PauseFor(target, "sigstop_short", TimeSpan.FromMilliseconds(_options.StaleThresholdMs * (0.15 + (Next() * 0.3))));
        }
    }

    private void KillAndMaybeRestart(ManagedProcess target, string? why = null)
    {
        var role = target.Role;
        var retiredOfRole = (role == "coordinator" ? _coordinators : _validators).Count(p => p.Retired);
        var retire = why is null && retiredOfRole < MaxRetiredPerRole && _clock.Elapsed < _options.Duration * 0.7 && Next() < 0.2;
        // A kill made for a death (why is set) is restarted only after the death, so the death does happen.
        TimeSpan? restartAfter = retire ? null
            : why is null && Next() < 0.5 ? TimeSpan.FromMilliseconds(300 + (Next() * 0.6 * _options.DeathMs))
            : why is not null ? TimeSpan.FromMilliseconds(_options.DeathMs + 9000 + NextInt(2000))
            : TimeSpan.FromMilliseconds(_options.DeathMs + 1000 + NextInt(3000));
        var detail = (why is null ? "" : why + "; ") + (retire ? "left dead (replacement path)" : $"restart after {restartAfter!.Value.TotalMilliseconds:0} ms");
        var fault = Record($"sigkill_{role}", target, detail);
        target.Retired = retire;
        if (target.Kill(fault) is null)
        {
            return;
        }

        if (restartAfter is { } delay)
        {
            target.RestartPending = true;
            Track(RestartLaterAsync(target, delay));
        }
    }

    private void PauseFor(ManagedProcess target, string kind, TimeSpan duration)
    {
        var fault = Record($"{kind}_{target.Role}", target, $"SIGSTOP for {duration.TotalMilliseconds:0} ms");
        if (target.Pause(fault) is null)
        {
            return;
        }

        Track(ResumeLaterAsync(target, fault, duration));
    }

    private async Task ResumeLaterAsync(ManagedProcess target, FaultRecord fault, TimeSpan duration)
    {
        await DelayOrHurryAsync(duration);
        target.Resume();
        fault.Until = DateTimeOffset.UtcNow;
    }

    private async Task RestartLaterAsync(ManagedProcess target, TimeSpan delay)
    {
        await DelayOrHurryAsync(delay);
        if (!target.Finishing && !target.Retired)
        {
            var run = target.Start();
            _options.Log($"restart {run}");
        }
    }

    private void OnUnexpectedExit(ManagedProcess process, ProcessRun run)
    {
        UnexpectedExits.Enqueue(run);
        _options.Log($"exit {run} code {run.ExitCode}{(run.ExitCode == 3 ? " (superseded)" : " (CRASH)")}");
        if (process.Finishing || process.Retired)
        {
            return;
        }

        // Kubernetes restarts an exited container: so does the runner, after a short back-off.
        process.RestartPending = true;
        Track(RestartLaterAsync(process, TimeSpan.FromMilliseconds(300 + NextInt(1200))));
    }

    private async Task KillHandlerMidEscalationAsync(CancellationToken stop)
    {
        var victim = _coordinators.Where(p => p.IsUp).OrderBy(_ => Next()).FirstOrDefault();
        var knobRun = _knobHandler.Current;
        if (victim is null || knobRun is null || _heldHandler.Current is null)
        {
            NotInjectedBecause($"no coordinator up or a handler down (coordinator up: {victim is not null}, {_knobHandler.Name} up: {knobRun is not null})");
            return;
        }

        var follower = new LogFollower(knobRun);
        follower.ReadNew(); // only lines from now on
        var hold = Record("sigstop_hold_timeout-handler", _heldHandler, $"held so that {_knobHandler.Name} escalates the next death");
        _heldHandler.Pause(hold);
        KillAndMaybeRestart(victim, $"death for {_knobHandler.Name} to escalate");
        var window = TimeSpan.FromMilliseconds(_options.DeathMs + 8000);
        var deadline = DateTime.UtcNow + window;
        LogLine? step = null;
        while (step is null && DateTime.UtcNow < deadline && !stop.IsCancellationRequested)
        {
            // A step line with something left to do: after `cleaned` (another death's escalation finishing) nothing is left
            // to resume, and a kill there proved nothing (a false `escalation_resumed` violation). After any other step
            // the handler pauses (ESCALATION_STEP_DELAY_MS), so the kill lands while the escalation is not final.
            step = follower.ReadNew().FirstOrDefault(l => l.Message.StartsWith("Escalation step coordinator=", StringComparison.Ordinal) &&
                                                          l.Field("step") != "cleaned");
            if (step is null)
            {
                await Task.Delay(20, CancellationToken.None);
            }
        }

        if (step is not null)
        {
            var kill = Record("sigkill_timeout-handler_mid_escalation", _knobHandler, $"at {step.Evidence}");
            _knobHandler.Kill(kill);
            EscalationKills.Enqueue((step.Field("coordinator") ?? "?", kill.At, step.Evidence));
            _knobHandler.RestartPending = true;
            Track(RestartLaterAsync(_knobHandler, TimeSpan.FromSeconds(3)));
        }
        else
        {
            NotInjectedBecause($"{_knobHandler.Name} logged no `Escalation step coordinator=` line within {window.TotalSeconds:0} s of the death of {victim.Name} " +
                               "(ESCALATION_STEP_DELAY_MS is not in this build of cfn, or the death was not escalated)");
        }

        _heldHandler.Resume();
        hold.Until = DateTimeOffset.UtcNow;
    }

    private void NotInjectedBecause(string reason)
    {
        var line = $"could not inject fault sigkill_timeout-handler_mid_escalation: {reason}";
        _notInjected.Enqueue(line);
        _options.Log(line);
    }

    private async Task RestartRedisAsync()
    {
        var fault = Record("redis_restart", null, "SIGTERM, then redis-server again on the same port and AOF directory");
        var down = await _redis.RestartAsync();
        fault.Until = DateTimeOffset.UtcNow;
        _options.Log($"redis-server restarted, down {down.TotalMilliseconds:0} ms");
    }

    private FaultRecord Record(string kind, ManagedProcess? target, string detail)
    {
        var fault = new FaultRecord(kind, target?.Name ?? "redis-server", target?.Current?.Index ?? 0, DateTimeOffset.UtcNow, detail);
        _faults.Enqueue(fault);
        _options.Log($"fault {kind} {fault.Target}#{fault.Run}: {detail}");
        return fault;
    }

    private void Track(Task task)
    {
        _pending[task] = 0;
        _ = task.ContinueWith(t => _pending.TryRemove(t, out _), TaskScheduler.Default);
    }

    private async Task DelayOrHurryAsync(TimeSpan delay)
    {
        try
        {
            await Task.Delay(delay, _hurry.Token);
        }
        catch (OperationCanceledException)
        {
            // quiescing: act now
        }
    }

    private double Next()
    {
        lock (_randomGate)
        {
            return _random.NextDouble();
        }
    }

    private int NextInt(int max)
    {
        lock (_randomGate)
        {
            return _random.Next(max);
        }
    }
}
