namespace Cfn.Coordination.Background;

/// <summary>
/// The names of the background loops: the only values of the <c>loop</c> label of the <c>background_loop_*</c> metrics.
/// "Periodic" loops go stale after three intervals without a completed pass; "wake-driven" ones only count as failing
/// when they stop (they sleep until a signal or an item arrives, so a quiet one is not a stuck one).
/// </summary>
internal static class LoopNames
{
    /// <summary>Timeout handler: dead-coordinator detection (periodic, MONITOR_INTERVAL).</summary>
    public const string HeartbeatMonitor = "heartbeat_monitor";

    /// <summary>Timeout handler: stuck waits and deadlocks (periodic, STUCK_WAIT_GRACE).</summary>
    public const string StuckWaits = "stuck_waits";

    /// <summary>Timeout handler: the batch cleanup (periodic, CLEANUP_INTERVAL).</summary>
    public const string BatchCleanup = "batch_cleanup";

    /// <summary>Timeout handler with CFN_TS_COMPAT: the slow scan that finds TS coordinators' heartbeats (periodic, CLEANUP_INTERVAL).</summary>
    public const string TsDiscovery = "ts_discovery";

    /// <summary>Swarm manager: spawn requests and reconciliation (periodic, its interval).</summary>
    public const string SwarmManager = "swarm_manager";

    /// <summary>Coordinator host: host commands and the host record (periodic, the host report interval).</summary>
    public const string CoordinatorHost = "coordinator_host";

    /// <summary>Each coordinator's heartbeat writer (periodic, HEARTBEAT_INTERVAL; instance = coordinator ID).</summary>
    public const string Heartbeat = "heartbeat";

    /// <summary>The ACK fallback check of a connection's wake-up hub (periodic, the ACK fallback poll interval).</summary>
    public const string AckFallback = "ack_fallback";

    /// <summary>The circuit-breaker state publisher (periodic, its period).</summary>
    public const string BreakerStates = "breaker_states";

    /// <summary><c>cfn up</c>'s work generator (periodic, its interval).</summary>
    public const string WorkGenerator = "work_generator";

    /// <summary>A validator's registration refresh (periodic; instance = validator ID).</summary>
    public const string ValidatorRegistration = "validator_registration";

    /// <summary>A coordinator's work loop (wake-driven; instance = coordinator ID).</summary>
    public const string WorkLoop = "work_loop";

    /// <summary>A coordinator's inbox pump that routes verdicts to the work loop (wake-driven; instance = coordinator ID).</summary>
    public const string InboxPump = "inbox_pump";

    /// <summary>A validator's inbox loop (wake-driven; instance = validator ID).</summary>
    public const string ValidatorWorker = "validator_worker";

    /// <summary>The HTTP agent sessions' lease watchdog of a process that hosts them (periodic, 250 ms).</summary>
    public const string AgentSessions = "agent_sessions";

    /// <summary>The live dashboard's reader of a swarm-manager or timeout-handler process (periodic, DASHBOARD_REFRESH_MS).</summary>
    public const string LiveView = "live_view";

    /// <summary>Every name.</summary>
    public static readonly IReadOnlySet<string> All = new HashSet<string>(StringComparer.Ordinal)
    {
        HeartbeatMonitor, StuckWaits, BatchCleanup, SwarmManager, CoordinatorHost, Heartbeat, AckFallback, BreakerStates,
        WorkGenerator, ValidatorRegistration, WorkLoop, InboxPump, ValidatorWorker, AgentSessions, LiveView, TsDiscovery,
    };
}
