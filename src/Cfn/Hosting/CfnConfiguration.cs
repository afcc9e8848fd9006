using System.Collections;
using System.ComponentModel.DataAnnotations;
using Cfn.Coordination;
using Cfn.Coordination.Hooks;
using Cfn.Coordination.Identity;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Resilience;
using Cfn.Coordination.Security;
using Cfn.Coordination.Loop;
using Cfn.Coordination.Swarms;
using Cfn.Coordination.Validation;

namespace Cfn.Hosting;

/// <summary>
/// Everything a cfn process reads from its environment (SPEC §3.6), read and validated once at start. Any bad value
/// stops the process with one line naming the variable (<see cref="CfnConfigurationException"/>).
/// </summary>
internal sealed record CfnConfiguration
{
    public required RedisSettings Redis { get; init; }

    public required CoordinationOptions Coordination { get; init; }

    public required RecoveryOptions Recovery { get; init; }

    public required CircuitBreakerOptions Breakers { get; init; }

    /// <summary>Swarm manager and coordinator hosts (<c>COORDINATOR_HOST_CAPACITY</c>, <c>SPAWN_TIMEOUT_MS</c>, <c>SWARM_MANAGER_INTERVAL_MS</c>).</summary>
    public required SwarmManagerOptions Swarms { get; init; }

    /// <summary>Null when the secret is generated (only <c>cfn up</c> may do that, D12).</summary>
    public required SigningKeys? Keys { get; init; }

    /// <summary>
    /// <c>REDIS_POOL_SIZE</c> (2): multiplexers per process, two connections each. A process runs one coordinator in
    /// production, so more only multiplies connections (1,000 pods × 10 × 2 were twice Redis's default maxclients).
    /// </summary>
    public int RedisPoolSize { get; init; } = 2;

    /// <summary><c>HTTP_PORT</c> (8080).</summary>
    public int HttpPort { get; init; } = 8080;

    /// <summary><c>DASHBOARD_REFRESH_MS</c> (1000): how often the live dashboard's one reader per process reads Redis.</summary>
    public TimeSpan DashboardRefresh { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary><c>CFN_ADMIN_TOKEN</c>: bearer token for mutating endpoints from outside loopback (D12); at least 32 characters (SPEC D20).</summary>
    public string? AdminToken { get; init; }

    /// <summary>
    /// <c>CFN_ADMIN_LOOPBACK</c> (true): mutating endpoints trust a connection that arrived on a loopback local address
    /// (SPEC D20); false leaves only <see cref="AdminToken"/>.
    /// </summary>
    public bool AdminLoopback { get; init; } = true;

    /// <summary>HTTP agent sessions: <c>CFN_AGENT_TOKEN</c> and <c>CFN_AGENT_SESSIONS_MAX</c> (SPEC D21).</summary>
    public Agents.AgentSessionOptions AgentSessions { get; init; } = new();

    /// <summary><c>COORDINATOR_ID</c> (defaults to the host name, i.e. the pod name).</summary>
    public string? CoordinatorId { get; init; }

    /// <summary><c>SWARM_ID</c>.</summary>
    public string? SwarmId { get; init; }

    /// <summary><c>SWARM_EXPECTED_COORDINATORS</c> (the runbook's configmap value).</summary>
    public int? ExpectedCoordinators { get; init; }

    /// <summary>Variables that were set but are deprecated or not used; the process logs each at start (WARN).</summary>
    public IReadOnlyList<string> Warnings { get; init; } = [];

    /// <summary><c>LOG_FORMAT</c>: <c>text</c> (default; the runbook greps it) or <c>json</c>.</summary>
    public string LogFormat { get; init; } = "text";

    /// <summary>Validators: <c>ENABLE_VALIDATION_CACHE</c>, the built-in validation's durations and failure rate, the statistics window.</summary>
    public required ValidatorOptions Validators { get; init; }

    /// <summary>The coordinators' work loop: <c>VALIDATORS_PER_ITEM</c>, <c>EXTERNAL_API_URL</c>, <c>EXTERNAL_CALL_RATE</c>, …</summary>
    public required LoopOptions Loop { get; init; }

    /// <summary>Lifecycle hooks (SPEC §2.15): <c>ENABLE_TIMEOUT_HOOKS</c> (false), <c>TIMEOUT_HOOKS_DIR</c>, <c>TIMEOUT_HOOK_TIMEOUT_MS</c>.</summary>
    public required HookOptions Hooks { get; init; }

    /// <summary><c>ENABLE_TIMEOUT_HOOKS</c> (false).</summary>
    public bool TimeoutHooks => Hooks.Enabled;

    /// <summary>
    /// The effective settings by variable name, secrets shown as <c>&lt;redacted&gt;</c> (SPEC §3.6: logged at start and
    /// shown in <c>/api/coordinator/state</c>).
    /// </summary>
    public IReadOnlyDictionary<string, string> Redacted()
    {
        static string Ms(TimeSpan t) => ((long)t.TotalMilliseconds).ToString(System.Globalization.CultureInfo.InvariantCulture);
        static string B(bool b) => b ? "true" : "false";
        var c = Coordination;
        var r = Recovery;
        return new SortedDictionary<string, string>(StringComparer.Ordinal)
        {
            ["REDIS"] = Redis.Display,
            ["REDIS_PASSWORD"] = Redis.HasPassword ? "<redacted>" : "",
            ["REDIS_POOL_SIZE"] = $"{RedisPoolSize}",
            ["BLOCKING_TIMEOUT_MS"] = Ms(c.BlockingTimeout),
            ["HEARTBEAT_INTERVAL_MS"] = Ms(c.HeartbeatInterval),
            ["HEARTBEAT_TTL_SECONDS"] = $"{c.HeartbeatTtlSeconds}",
            ["HEARTBEAT_DEBUG"] = B(c.HeartbeatDebug),
            ["ACK_TTL_SECONDS"] = $"{c.AckTtlSeconds}",
            ["ACK_RETENTION_SECONDS"] = $"{c.AckRetentionSeconds}",
            ["SIGNAL_TTL_SECONDS"] = $"{c.SignalTtlSeconds}",
            ["IDEMPOTENCY_TTL_SECONDS"] = $"{c.IdempotencyTtlSeconds}",
            ["SIGNAL_INBOX_MAX_LENGTH"] = $"{c.SignalInboxMaxLength}",
            ["ACK_POLL_INTERVAL_MS"] = Ms(c.AckFallbackPollInterval),
            ["CFN_TS_COMPAT"] = B(c.TsCompat),
            ["ACTIVITY_CHECK_INTERVAL_MS"] = Ms(c.ActivityCheckInterval),
            ["WORK_RESULT_TTL_SECONDS"] = $"{c.WorkResultTtlSeconds}",
            ["FINISHED_WORK_RETENTION_SECONDS"] = $"{c.FinishedWorkRetentionSeconds}",
            ["WORK_TTL_SECONDS"] = $"{c.WorkTtlSeconds}",
            ["HEARTBEAT_STALE_THRESHOLD_MS"] = Ms(r.HeartbeatStaleThreshold),
            ["HEARTBEAT_MONITOR_INTERVAL_MS"] = Ms(r.MonitorInterval),
            ["HEARTBEAT_MAX_WARNINGS"] = $"{r.MaxWarnings}",
            ["ENABLE_HEARTBEAT_MONITORING"] = B(r.EnableHeartbeatMonitoring),
            ["ENABLE_AUTO_ESCALATION"] = B(r.EnableAutoEscalation),
            ["CLEANUP_STALE_THRESHOLD_SECONDS"] = $"{r.CleanupStaleThresholdSeconds}",
            ["CLEANUP_INTERVAL_MS"] = Ms(r.CleanupInterval),
            ["ENABLE_CIRCUIT_BREAKER"] = B(Breakers.Enabled),
            ["ENABLE_VALIDATION_CACHE"] = B(Validators.EnableCache),
            ["VALIDATION_CACHE_TTL_SECONDS"] = $"{Validators.CacheTtlSeconds}",
            ["VALIDATION_DURATION_MEDIAN_MS"] = Ms(Validators.DurationMedian),
            ["VALIDATION_DURATION_P95_MS"] = Ms(Validators.DurationP95),
            ["VALIDATION_FAILURE_RATE"] = Validators.FailureRate.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["VALIDATOR_STATS_WINDOW_MS"] = Ms(Validators.StatsWindow),
            ["VALIDATOR_REGISTRATION_INTERVAL_MS"] = Ms(Validators.RegistrationInterval),
            ["VALIDATOR_CONCURRENCY"] = $"{Validators.Concurrency}",
            ["VALIDATOR_QUEUE_CAPACITY"] = $"{Validators.QueueCapacity}",
            // The program and how many arguments, not the arguments: they may carry a token.
            ["VALIDATION_COMMAND"] = Validators.Command is { } argv ? $"{argv[0]} (+{argv.Count - 1} args)" : "",
            ["VALIDATION_URL"] = Validators.Url is null ? "" : Cfn.Coordination.Resilience.ExternalCallHandler.SafeUrl(Validators.Url),
            ["VALIDATION_TIMEOUT_MS"] = Ms(Validators.Timeout),
            ["VALIDATORS_PER_ITEM"] = $"{Loop.ValidatorsPerItem}",
            ["EXTERNAL_API_URL"] = Loop.ExternalApiUrl is null ? "" : Cfn.Coordination.Resilience.ExternalCallHandler.SafeUrl(Loop.ExternalApiUrl),
            ["EXTERNAL_CALL_RATE"] = Loop.ExternalCallRate.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["EXTERNAL_API_TIMEOUT_MS"] = Ms(Loop.ExternalCallTimeout),
            ["VALIDATOR_STALE_THRESHOLD_MS"] = Ms(Loop.ValidatorStaleThreshold),
            ["ENABLE_TIMEOUT_HOOKS"] = B(TimeoutHooks),
            ["TIMEOUT_HOOKS_DIR"] = Hooks.Directory,
            ["TIMEOUT_HOOK_TIMEOUT_MS"] = Ms(Hooks.Timeout),
            ["BLOCKING_COORDINATION_SECRET"] = "<redacted>",
            ["CFN_ADMIN_TOKEN"] = AdminToken is null ? "" : "<redacted>",
            ["CFN_ADMIN_LOOPBACK"] = B(AdminLoopback),
            ["CFN_AGENT_TOKEN"] = AgentSessions.Token is null ? "" : "<redacted>",
            ["CFN_AGENT_SESSIONS_MAX"] = $"{AgentSessions.MaxSessions}",
            ["COORDINATOR_ID"] = CoordinatorId ?? "",
            ["SWARM_ID"] = SwarmId ?? "",
            ["SWARM_EXPECTED_COORDINATORS"] = ExpectedCoordinators?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "",
            ["HTTP_PORT"] = $"{HttpPort}",
            ["DASHBOARD_REFRESH_MS"] = Ms(DashboardRefresh),
            ["COORDINATOR_HOST_CAPACITY"] = $"{Swarms.HostCapacity}",
            ["SPAWN_TIMEOUT_MS"] = Ms(Swarms.SpawnTimeout),
            ["SWARM_MANAGER_INTERVAL_MS"] = Ms(Swarms.Interval),
            ["SWARM_DEFICIT_GRACE_MS"] = Ms(Swarms.DeficitGrace),
            ["LOG_FORMAT"] = LogFormat,
        };
    }

    /// <summary>Reads and validates; <paramref name="secretRequired"/> is false only for <c>cfn up</c>.</summary>
    /// <exception cref="CfnConfigurationException">A value is invalid; the message is one line naming it.</exception>
    public static CfnConfiguration Load(IDictionary? environment = null, bool secretRequired = true)
    {
        environment ??= Environment.GetEnvironmentVariables();
        var env = new EnvironmentSettings(environment);
        try
        {
            var coordination = CoordinationOptions.FromEnvironment(environment);
            var secret = env.Text("BLOCKING_COORDINATION_SECRET");
            var logFormat = env.Text("LOG_FORMAT") ?? "text";
            if (logFormat is not ("text" or "json"))
            {
                throw new ValidationException($"LOG_FORMAT must be text or json (got \"{logFormat}\")");
            }

            var warnings = new List<string>();
            if (env.Text("BLOCKING_TIMEOUT") is not null)
            {
                warnings.Add(env.Text("BLOCKING_TIMEOUT_MS") is null
                    ? "BLOCKING_TIMEOUT is deprecated: it still sets the blocking timeout, but use BLOCKING_TIMEOUT_MS"
                    : "BLOCKING_TIMEOUT is deprecated and ignored: BLOCKING_TIMEOUT_MS is set");
            }

            if (env.Text("ACTIVITY_TIMEOUT_MS") is not null)
            {
                warnings.Add("ACTIVITY_TIMEOUT_MS is not used by cfn: a wait is stuck when it runs past its own timeout (BLOCKING_TIMEOUT_MS) " +
                             "plus ACTIVITY_CHECK_INTERVAL_MS, and a coordinator is dead when its heartbeat is stale (HEARTBEAT_STALE_THRESHOLD_MS)");
            }

            var coordinatorId = env.Text("COORDINATOR_ID");
            var swarmId = env.Text("SWARM_ID");
            return new CfnConfiguration
            {
                Redis = RedisSettings.FromEnvironment(environment),
                Coordination = coordination,
                Recovery = RecoveryOptions.FromEnvironment(environment, coordination),
                Breakers = CircuitBreakerOptions.FromEnvironment(environment),
                Swarms = SwarmManagerOptions.FromEnvironment(environment),
                Keys = secret is null && !secretRequired
                    ? null
                    : new SigningKeys(secret, env.Text("BLOCKING_COORDINATION_SECRET_NEW"), env.Flag("BLOCKING_COORDINATION_SIGN_WITH_NEW") ?? false),
                RedisPoolSize = Range(env.PositiveInt("REDIS_POOL_SIZE") ?? 2, "REDIS_POOL_SIZE", 1, 64),
                HttpPort = Range(env.PositiveInt("HTTP_PORT") ?? 8080, "HTTP_PORT", 1, 65535),
                DashboardRefresh = TimeSpan.FromMilliseconds(Range(env.PositiveInt("DASHBOARD_REFRESH_MS") ?? 1000, "DASHBOARD_REFRESH_MS", 100, 60_000)),
                // A short token can be guessed by whoever reaches the pod; the secret and the agent token have the same rule.
                AdminToken = env.Text("CFN_ADMIN_TOKEN") is { } adminToken
                    ? adminToken.Length >= 32 ? adminToken : throw new ValidationException($"CFN_ADMIN_TOKEN must be at least 32 characters (got {adminToken.Length})")
                    : null,
                AdminLoopback = env.Flag("CFN_ADMIN_LOOPBACK") ?? true,
                AgentSessions = new Agents.AgentSessionOptions
                {
                    Token = env.Text("CFN_AGENT_TOKEN") is { } agentToken
                        ? agentToken.Length >= 32 ? agentToken : throw new ValidationException("CFN_AGENT_TOKEN must be at least 32 characters")
                        : null,
                    MaxSessions = Range(env.PositiveInt("CFN_AGENT_SESSIONS_MAX") ?? 1000, "CFN_AGENT_SESSIONS_MAX", 1, 100_000),
                },
                CoordinatorId = coordinatorId is null ? null : Ids.RequireName(coordinatorId, "COORDINATOR_ID"),
                SwarmId = swarmId is null ? null : Ids.RequireName(swarmId, "SWARM_ID"),
                ExpectedCoordinators = env.PositiveInt("SWARM_EXPECTED_COORDINATORS"),
                LogFormat = logFormat,
                Warnings = warnings,
                Validators = ValidatorOptions.FromEnvironment(environment),
                Loop = LoopOptions.FromEnvironment(environment),
                Hooks = HookOptions.FromEnvironment(environment),
            };
        }
        catch (Exception e) when (e is ValidationException or ArgumentException)
        {
            var message = e is ArgumentException { ParamName: { } param } ? e.Message.Replace($" (Parameter '{param}')", "", StringComparison.Ordinal) : e.Message;
            throw new CfnConfigurationException(message.ReplaceLineEndings(" "), e);
        }
    }

    private static int Range(int value, string name, int min, int max) =>
        value >= min && value <= max ? value : throw new ValidationException($"{name} must be from {min} to {max} (got {value})");
}

/// <summary>An invalid configuration value; the message is the one line the process prints before it stops.</summary>
internal sealed class CfnConfigurationException(string message, Exception inner) : Exception(message, inner);
