namespace Cfn.Chaos;

/// <summary>
/// The shape of one chaos run: which processes, how fast, how hard. Defaults keep the whole run on about two cores
/// (4 coordinators in 2 swarms, 3 validators, 2 timeout handlers, 1 swarm manager, ~6 items/s) and make every timer of
/// cfn short, so a death is declared in ~2.5 s and no wait lasts 300 s.
/// </summary>
public sealed class ChaosOptions
{
    /// <summary>The built <c>cfn.dll</c> the processes run (<c>dotnet cfn.dll serve --role …</c>).</summary>
    public required string CfnDll { get; init; }

    /// <summary>Where the logs (one file per process run), the redis AOF and the report go.</summary>
    public required string WorkDirectory { get; init; }

    /// <summary>How long the generator enqueues and the injector injects.</summary>
    public TimeSpan Duration { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>The drain after the generator stops: at least this long before it may give up on a stall, at most three times it.</summary>
    public TimeSpan DrainTimeout { get; init; } = TimeSpan.FromSeconds(40);

    /// <summary>Items enqueued per second.</summary>
    public double Rate { get; init; } = 5;

    /// <summary>Seed of every random choice (fault targets, kinds, delays); printed so a run can be repeated.</summary>
    public int Seed { get; init; } = Environment.TickCount;

    public int Coordinators { get; init; } = 4;

    public int Swarms { get; init; } = 2;

    public int Validators { get; init; } = 3;

    /// <summary>Mean time between two random faults (exponentially distributed, clamped).</summary>
    public TimeSpan FaultInterval { get; init; } = TimeSpan.FromSeconds(4);

    /// <summary>When the one-off faults happen, as a share of <see cref="Duration"/>.</summary>
    public double EscalationKillAt { get; init; } = 0.3;

    public double RedisRestartAt { get; init; } = 0.55;

    /// <summary>In long runs the handler-mid-escalation fault is tried again this often (the first try at <see cref="EscalationKillAt"/>).</summary>
    public TimeSpan EscalationKillEvery { get; init; } = TimeSpan.FromMinutes(4);

    // cfn's timers (docs/configuration.md), short so faults play out within seconds.
    public int HeartbeatIntervalMs { get; init; } = 400;

    public int StaleThresholdMs { get; init; } = 2000;

    public int MonitorIntervalMs { get; init; } = 250;

    public int MaxWarnings { get; init; } = 3;

    public int BlockingTimeoutMs { get; init; } = 6000;

    public int SpawnTimeoutMs { get; init; } = 6000;

    public int ValidationMedianMs { get; init; } = 60;

    public int ValidationP95Ms { get; init; } = 250;

    /// <summary>
    /// <c>ESCALATION_STEP_DELAY_MS</c> of the second timeout handler: it sleeps that long after each escalation step
    /// (a fault-injection knob of cfn), which gives the injector a window to SIGKILL it mid-escalation.
    /// </summary>
    public int EscalationStepDelayMs { get; init; } = 2500;

    /// <summary>Silence after which a timeout handler declares a coordinator dead.</summary>
    public int DeathMs => StaleThresholdMs + ((MaxWarnings - 1) * MonitorIntervalMs);

    /// <summary>Extra environment for every process (tests use it to flip a feature).</summary>
    public IDictionary<string, string> ExtraEnvironment { get; init; } = new Dictionary<string, string>();

    /// <summary>Progress lines (phases, faults); the report is returned, not written here.</summary>
    public Action<string> Log { get; init; } = Console.WriteLine;
}
