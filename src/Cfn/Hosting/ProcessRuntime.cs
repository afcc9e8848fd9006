using Cfn.Api;
using Cfn.Coordination;
using Cfn.Coordination.Background;
using Cfn.Coordination.Hooks;
using Cfn.Coordination.Loop;
using Cfn.Coordination.Metrics;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Resilience;
using Cfn.Coordination.Security;
using Cfn.Coordination.Validation;
using StackExchange.Redis;

namespace Cfn.Hosting;

/// <summary>
/// What the roles of one cfn process share (D1): the configuration bound once, the Redis connection pool, the metrics
/// and background-loop registries, the coordinators running here, the lifecycle hooks and the exit code. One per process,
/// a singleton of the host's container; <see cref="ConnectAsync"/> runs before any role starts.
/// </summary>
internal sealed class ProcessRuntime : IReadinessSource, IAsyncDisposable
{
    /// <summary>How long a graceful stop may take before the remaining parts are abandoned (their keys expire).</summary>
    public static readonly TimeSpan StopBudget = TimeSpan.FromSeconds(8);

    /// <summary>Exit code when the process's own coordinator was superseded (declared dead and replaced): the pod restarts as a new instance.</summary>
    public const int SupersededExitCode = 3;

    private readonly IHostApplicationLifetime _lifetime;
    private RedisPool? _pool;
    private LifecycleHooks? _hooks;
    private int _exitCode;
    private int _budgetUsedUp;

    public ProcessRuntime(CfnConfiguration config, ProcessPlan plan, ILoggerFactory loggers, IHostApplicationLifetime lifetime)
    {
        Config = config;
        Plan = plan;
        Loggers = loggers;
        _lifetime = lifetime;
        Log = loggers.CreateLogger<ProcessRuntime>();
        Breakers = new CircuitBreakerRegistry(Prometheus.Metrics.DefaultRegistry, config.Breakers, loggerFactory: loggers);
        // One registry of background loops for the whole process (every pooled connection shares it): /health/ready reads it.
        Loops = new LoopHealth(Prometheus.Metrics.DefaultRegistry);
        Admin = new AdminAccess(config.AdminToken);
        Keys = config.Keys ?? throw new InvalidOperationException("no signing keys");
        LoopOptions = plan.Up is not null && config.Loop.ExternalApiUrl is null
            // `cfn up` points its external calls at its own health endpoint when none is set.
            ? config.Loop with { ExternalApiUrl = new Uri($"http://127.0.0.1:{config.HttpPort}/health/live") }
            : config.Loop;
    }

    public CfnConfiguration Config { get; }

    public ProcessPlan Plan { get; }

    public ILoggerFactory Loggers { get; }

    /// <summary>The <c>Cfn.Process</c> logger (start, stop, configuration).</summary>
    public ILogger Log { get; }

    public CircuitBreakerRegistry Breakers { get; }

    public LoopHealth Loops { get; }

    public AdminAccess Admin { get; }

    public SigningKeys Keys { get; }

    public LoopOptions LoopOptions { get; }

    public CoordinationMetrics Metrics { get; } = CoordinationMetrics.Default;

    /// <summary>The coordinators and validators running here (endpoints, the dump and the stop read it).</summary>
    public LocalCoordinators Local { get; } = new();

    /// <summary>REDIS_POOL_SIZE multiplexers (D2); each coordinator keeps the one it rented, so its commands stay in order.</summary>
    public RedisPool Pool => _pool ?? throw new InvalidOperationException("the process is not connected to Redis yet");

    /// <summary>The pool's first connection: the roles' and endpoints' shared one.</summary>
    public RedisContext Redis => Pool.Primary;

    public WorkQueue Queue { get; private set; } = null!;

    public ValidatorRegistry Validators { get; private set; } = null!;

    public ValidatorPerformance Performance { get; private set; } = null!;

    /// <summary>One set of hooks per process, so the in-flight limit and the counts are process-wide (SPEC §2.15).</summary>
    public LifecycleHooks Hooks => _hooks ?? throw new InvalidOperationException("the process is not connected to Redis yet");

    /// <summary>0, or <see cref="SupersededExitCode"/> once the process's own coordinator was superseded.</summary>
    public int ExitCode => Volatile.Read(ref _exitCode);

    /// <summary>The process ID the breaker states and the timeout handler's leases are published under.</summary>
    public static string ProcessId => $"{HostId()}-{Environment.ProcessId}";

    /// <summary>The pod name (or host name), the default identity of a process (SPEC §3.6 COORDINATOR_ID).</summary>
    public static string HostId() => Environment.MachineName.ToLowerInvariant();

    string IReadinessSource.Roles => Plan.Roles;

    RedisContext IReadinessSource.Redis => Redis;

    IReadOnlyList<string> IReadinessSource.NoHeartbeatYet() =>
        [.. Local.All.Where(r => r.Coordinator.HeartbeatSequence == 0).Select(r => r.Coordinator.Id)];

    /// <summary>Connects the pool and waits until Redis answers; false when stopped first (nothing then starts).</summary>
    public async Task<bool> ConnectAsync(CancellationToken cancellationToken)
    {
        _pool = await RedisPool.ConnectAsync(Config.Redis.ToOptions(), Config.RedisPoolSize, Config.Coordination,
            loggerFactory: Loggers, breakers: Breakers, loops: Loops).ConfigureAwait(false);
        if (!await WaitForRedisAsync(cancellationToken).ConfigureAwait(false))
        {
            return false;
        }

        var redis = _pool.Primary;
        await WarnAboutDurabilityAsync(redis).ConfigureAwait(false);
        Queue = new WorkQueue(redis, logger: Loggers.CreateLogger<WorkQueue>());
        Validators = new ValidatorRegistry(redis);
        Performance = new ValidatorPerformance(redis, Config.Validators.StatsWindow);
        _hooks = new LifecycleHooks(Config.Hooks, Loggers.CreateLogger<LifecycleHooks>(), Prometheus.Metrics.DefaultRegistry);
        return true;
    }

    /// <summary>Logs, once at start, each of the server's settings that could drop coordination state (SPEC D19).</summary>
    private async Task WarnAboutDurabilityAsync(RedisContext redis)
    {
        try
        {
            foreach (var warning in await redis.CheckDurabilityAsync().ConfigureAwait(false))
            {
                Log.LogWarning("{Warning}", warning);
            }
        }
        catch (Exception e) when (RedisErrors.IsTransient(e) || e is RedisServerException)
        {
            Log.LogWarning("Could not read Redis's eviction and persistence settings: {Error}", RedisErrors.FirstClause(e));
        }
    }

    /// <summary>
    /// In <c>serve</c> the process IS its coordinator (the pod): superseded means restart as a new instance, so exit
    /// non-zero and let Kubernetes do it. Spawned coordinators are just stopped by their host.
    /// </summary>
    public void StopProcessSuperseded(CoordinatorRuntime runtime)
    {
        Log.LogError("Coordinator {CoordinatorId} of this process was superseded (declared dead and replaced); exiting with code {ExitCode} to restart as a new instance",
            runtime.Coordinator.Id, SupersededExitCode);
        Interlocked.Exchange(ref _exitCode, SupersededExitCode);
        _lifetime.StopApplication();
    }

    /// <summary>
    /// Superseded while starting (declared dead, or restarted elsewhere, before the start finished): like superseded
    /// later, the process restarts as a new instance rather than crash.
    /// </summary>
    public void SupersededWhileStarting(CoordinatorSupersededException e)
    {
        Log.LogError("Coordinator {CoordinatorId} of this process was superseded while starting; exiting with code {ExitCode} to restart as a new instance",
            e.CoordinatorId, SupersededExitCode);
        Interlocked.Exchange(ref _exitCode, SupersededExitCode);
    }

    /// <summary>
    /// Runs one part's graceful stop within what is left of <see cref="StopBudget"/> (<paramref name="budget"/> fires when
    /// it is used up): once it is, the remaining parts are abandoned and their keys expire on their own.
    /// </summary>
    public async Task StopWithinBudgetAsync(Func<Task> stop, CancellationToken budget)
    {
        if (budget.IsCancellationRequested)
        {
            BudgetUsedUp();
            return;
        }

        try
        {
            await stop().WaitAsync(budget).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            BudgetUsedUp();
        }
        catch (Exception e) when (RedisErrors.IsTransient(e) || e is ObjectDisposedException)
        {
            Log.LogWarning("Redis error while stopping: {Error}", RedisErrors.FirstClause(e));
        }
    }

    /// <summary>
    /// The validation a validator runs: the user's program (<c>VALIDATION_COMMAND</c>), the user's endpoint
    /// (<c>VALIDATION_URL</c>), or the built-in simulated one (the default, as in <c>cfn up</c>).
    /// </summary>
    private IValidation CreateValidation(Coordinator validator) => Config.Validators switch
    {
        { Command: not null } => new CommandValidation(Config.Validators, validator.Id, Loggers.CreateLogger<CommandValidation>()),
        { Url: not null } => new HttpValidation(validator, Config.Validators, Loggers.CreateLogger<HttpValidation>()),
        _ => new BuiltInValidation(Config.Validators),
    };

    /// <summary>Starts a validator's inbox loop for a started validator instance and lists it in <see cref="Local"/>.</summary>
    public CoordinatorRuntime StartValidator(Coordinator validator, Action<CoordinatorRuntime> onSuperseded)
    {
        var worker = new ValidatorWorker(validator, CreateValidation(validator), Config.Validators, Performance, Validators,
            Loggers.CreateLogger<ValidatorWorker>());
        var runtime = new CoordinatorRuntime(validator, "validator", worker.RunAsync,
            describe: () => [$"validator validated={worker.Validated} cacheHits={worker.CacheHits} malformed={worker.Malformed} verdictsSent={worker.VerdictsSent}"],
            snapshot: () => new { worker.ValidatorId, worker.Validated, worker.CacheHits, worker.Malformed, worker.VerdictsSent, worker.Queued, worker.Validating },
            onStopped: Local.Remove, onSuperseded: onSuperseded);
        Local.Add(runtime);
        return runtime;
    }

    /// <summary>
    /// Runs the work loop of a started coordinator and lists it in <see cref="Local"/> until it stops. The swarm
    /// manager's hosts use it for spawned coordinators, <c>serve</c> for COORDINATOR_ID.
    /// </summary>
    public CoordinatorRuntime StartLoop(Coordinator coordinator, Action<CoordinatorRuntime> onSuperseded)
    {
        var loop = new CoordinatorLoop(coordinator, Queue, LoopOptions, Validators, Performance);
        var runtime = new CoordinatorRuntime(coordinator, "coordinator", loop.RunAsync,
            describe: () =>
            {
                var state = loop.State;
                return [$"work current={state.CurrentWorkId ?? "none"} completed={state.ItemsCompleted} failed={state.ItemsFailed} " +
                        $"released={state.ItemsReleased} adopted={state.ItemsAdopted} validatorTimeouts={state.ValidatorTimeouts} lastError={state.LastError ?? "none"}"];
            },
            snapshot: () => loop.State,
            onStopped: Local.Remove,
            onSuperseded: onSuperseded);
        Local.Add(runtime);
        return runtime;
    }

    public async ValueTask DisposeAsync()
    {
        if (_hooks is not null)
        {
            await _hooks.DisposeAsync().ConfigureAwait(false);
        }

        if (_pool is not null)
        {
            await _pool.DisposeAsync().ConfigureAwait(false);
        }
    }

    private void BudgetUsedUp()
    {
        if (Interlocked.Exchange(ref _budgetUsedUp, 1) == 0)
        {
            Log.LogWarning("Stop budget of {Seconds}s used up; the remaining keys expire on their own", StopBudget.TotalSeconds);
        }
    }

    /// <summary>Waits until Redis answers, logging <c>Redis connection failed</c> (the runbook's line for an unreachable Redis) while it does not; false when stopped first.</summary>
    private async Task<bool> WaitForRedisAsync(CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                await Pool.Primary.Database.PingAsync().ConfigureAwait(false);
                return true;
            }
            catch (Exception e) when (RedisErrors.IsTransient(e))
            {
                Log.LogError("Redis connection failed host={Host} port={Port} db={Db} error={Error}",
                    Config.Redis.Host, Config.Redis.Port, Config.Redis.Database, RedisErrors.FirstClause(e));
                try
                {
                    await Task.Delay(TimeSpan.FromSeconds(2), cancellationToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return false;
                }
            }
        }

        return false;
    }
}
