using Cfn.Api;
using Cfn.Coordination;
using Cfn.Coordination.Background;
using Cfn.Coordination.Metrics;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Resilience;
using Cfn.Coordination.Hooks;
using Cfn.Coordination.Loop;
using Cfn.Coordination.Swarms;
using Cfn.Coordination.Validation;
using Microsoft.Extensions.Logging.Console;
using Prometheus;
using StackExchange.Redis;

namespace Cfn.Hosting;

/// <summary>
/// One cfn process (D1): the roles of its <see cref="ProcessPlan"/> on one Redis connection pool, one HTTP port, one
/// metrics registry. Starts them, serves until SIGTERM/SIGINT (or the token), then stops them in the order that loses
/// nothing: the work loops give their items back, the coordinators delete their own keys, then the managers stop.
/// </summary>
internal sealed class CfnProcess
{
    /// <summary>How long a graceful stop may take before the remaining parts are abandoned (their keys expire).</summary>
    private static readonly TimeSpan StopBudget = TimeSpan.FromSeconds(8);

    /// <summary>Exit code when the process's own coordinator was superseded (declared dead and replaced): the pod restarts as a new instance.</summary>
    public const int SupersededExitCode = 3;

    private readonly CfnConfiguration _config;
    private readonly ProcessPlan _plan;
    private int _exitCode;

    public CfnProcess(CfnConfiguration config, ProcessPlan plan)
    {
        _config = config;
        _plan = plan;
    }

    /// <summary>Called once everything runs, with the HTTP base address (<c>cfn up</c> prints its banner and <c>ready</c>).</summary>
    public Action<Uri>? OnReady { get; init; }

    /// <summary>Runs until stopped; returns the exit code.</summary>
    public async Task<int> RunAsync(CancellationToken cancellationToken)
    {
        var builder = WebApplication.CreateSlimBuilder();
        ConfigureLogging(builder.Logging, _config.LogFormat);
        var events = new RecentEvents();
        builder.Logging.AddProvider(events);
        builder.WebHost.UseUrls($"http://{_plan.BindAddress}:{_config.HttpPort}");
        // The generic host's console lifetime would also stop on SIGQUIT; SIGINT/SIGTERM reach us through the command's
        // token instead, and SIGQUIT prints the diagnostic dump (D15).
        builder.Services.AddSingleton<IHostLifetime, SignalFreeLifetime>();
        await using var app = builder.Build();
        var loggers = app.Services.GetRequiredService<ILoggerFactory>();
        var log = loggers.CreateLogger("Cfn.Process");
        LogConfiguration(log);

        var breakers = new CircuitBreakerRegistry(Prometheus.Metrics.DefaultRegistry, _config.Breakers, loggerFactory: loggers);
        // One registry of background loops for the whole process (every pooled connection shares it): /health/ready reads it.
        var loops = new LoopHealth(Prometheus.Metrics.DefaultRegistry);
        // REDIS_POOL_SIZE multiplexers (D2); each coordinator keeps the one it rented, so its commands stay in order.
        await using var pool = await RedisPool.ConnectAsync(_config.Redis.ToConfiguration(), _config.RedisPoolSize, _config.Coordination,
            loggerFactory: loggers, breakers: breakers, loops: loops).ConfigureAwait(false);
        var redis = pool.Primary;
        if (!await WaitForRedisAsync(redis, log, cancellationToken).ConfigureAwait(false))
        {
            return 0; // stopped before Redis ever answered
        }

        var keys = _config.Keys ?? throw new InvalidOperationException("no signing keys");
        var metrics = CoordinationMetrics.Default;
        var local = new LocalCoordinators();
        var stops = new Stack<Func<Task>>();
        var admin = new AdminAccess(_config.AdminToken);
        var queue = new WorkQueue(redis, logger: loggers.CreateLogger("Cfn.Coordination.Loop.WorkQueue"));
        var validators = new ValidatorRegistry(redis);
        var performance = new ValidatorPerformance(redis, _config.Validators.StatsWindow);
        var loopOptions = LoopOptionsFor(_config);
        CoordinatorRuntime StartValidator(Coordinator validator, Action<CoordinatorRuntime> onSuperseded)
        {
            var worker = new ValidatorWorker(validator, new BuiltInValidation(_config.Validators), _config.Validators, performance, validators,
                loggers.CreateLogger("Cfn.Coordination.Validation.ValidatorWorker"));
            var runtime = new CoordinatorRuntime(validator, "validator", worker.RunAsync,
                describe: () => [$"validator validated={worker.Validated} cacheHits={worker.CacheHits} malformed={worker.Malformed} verdictsSent={worker.VerdictsSent}"],
                snapshot: () => new { worker.ValidatorId, worker.Validated, worker.CacheHits, worker.Malformed, worker.VerdictsSent },
                onStopped: local.Remove, onSuperseded: onSuperseded);
            local.Add(runtime);
            return runtime;
        }

        // One set of hooks per process, so the in-flight limit and the counts are process-wide (SPEC §2.15).
        await using var hooks = new LifecycleHooks(_config.Hooks, loggers.CreateLogger("Cfn.Coordination.Hooks"), Prometheus.Metrics.DefaultRegistry);
        using var generatorStop = new CancellationTokenSource();
        // In `serve`, the process IS its coordinator (the pod): superseded means restart as a new instance, so exit non-zero
        // and let Kubernetes do it. Spawned coordinators are just stopped by their host.
        void StopProcessSuperseded(CoordinatorRuntime runtime)
        {
            log.LogError("Coordinator {CoordinatorId} of this process was superseded (declared dead and replaced); exiting with code {ExitCode} to restart as a new instance",
                runtime.Coordinator.Id, SupersededExitCode);
            Interlocked.Exchange(ref _exitCode, SupersededExitCode);
            app.Lifetime.StopApplication();
        }

        var processId = $"{HostId()}-{Environment.ProcessId}";
        await using var breakerStates = new BreakerStatePublisher(breakers, redis.Database, processId[..Math.Min(processId.Length, 64)], _plan.Roles,
            logger: loggers.CreateLogger("Cfn.Coordination.Resilience.BreakerStates"), loops: loops);
        breakerStates.Start();
        try
        {
            if (_plan.TimeoutHandler)
            {
                // The process ID tells two handlers on one machine apart (they hold escalation leases under this name, D17).
                var handler = new TimeoutHandler(redis, keys, _config.Recovery, metrics, new RecoveryMetrics(Prometheus.Metrics.DefaultRegistry),
                    $"timeout-handler-{HostId()}-{Environment.ProcessId}");
                app.MapTimeoutHandlerApi(handler, admin);
                handler.Start();
                stops.Push(async () => await handler.DisposeAsync().ConfigureAwait(false));
            }

            SwarmManager? manager = null;
            if (_plan.SwarmManager)
            {
                manager = new SwarmManager(redis, _config.Swarms, _config.Recovery, new SwarmMetrics(Prometheus.Metrics.DefaultRegistry),
                    $"swarm-manager-{HostId()}", _config.ExpectedCoordinators);
                app.MapSwarmManagerApi(manager, admin);
                app.MapWorkIntakeApi(queue, admin);
                app.MapValidatorApi(performance);
                manager.Start();
                stops.Push(async () => await manager.DisposeAsync().ConfigureAwait(false));
            }

            CoordinatorHost? host = null;
            if (_plan.Coordinator)
            {
                // Every coordinator process is also a host the swarm manager can start replacements and scale-ups on.
                var hostOptions = _config.Swarms;
                if (_plan.Up is { } shape)
                {
                    hostOptions = new SwarmManagerOptions
                    {
                        HostCapacity = Math.Max(hostOptions.HostCapacity, (shape.Swarms * shape.CoordinatorsPerSwarm) + 8),
                        SpawnTimeout = hostOptions.SpawnTimeout,
                        Interval = hostOptions.Interval,
                        HostReportInterval = hostOptions.HostReportInterval,
                        DeficitGrace = hostOptions.DeficitGrace,
                        SpawnTtlSeconds = hostOptions.SpawnTtlSeconds,
                    };
                }

                CoordinatorRuntime Start(Coordinator c, Action<CoordinatorRuntime> onSuperseded)
                {
                    hooks.Attach(c);
                    // A dead validator's replacement is a validator (it answers the validations handed over to it).
                    return c.SwarmId == ValidatorSwarm
                        ? StartValidator(c, onSuperseded)
                        : StartLoop(c, queue, loopOptions, validators, performance, local, onSuperseded);
                }

                host = new CoordinatorHost(redis, _config.CoordinatorId ?? HostId(), async (id, swarm, cancellation) =>
                    Start(await Coordinator.StartAsync(pool.Rent(), keys, id, swarm, metrics).ConfigureAwait(false),
                        runtime => _ = host!.StopAsync(runtime.Coordinator.Id)), hostOptions);
                await host.StartAsync().ConfigureAwait(false);
                stops.Push(async () => await host.DisposeAsync().ConfigureAwait(false));
                if (_plan.Up is null)
                {
                    var id = _config.CoordinatorId ?? HostId();
                    local.PrimaryId = id;
                    var swarm = _config.SwarmId ?? "default";
                    var primary = Start(await Coordinator.StartAsync(pool.Rent(), keys, id, swarm, metrics).ConfigureAwait(false), StopProcessSuperseded);
                    await host.RegisterRunningAsync(id, swarm, primary).ConfigureAwait(false);
                }

                // The parent-coordinator side of escalation: replacements in our swarms are acknowledged (L8).
                var replacements = new ReplacementListener(redis, swarm =>
                    [.. local.All.Where(r => r.Role == "coordinator" && r.Coordinator.SwarmId == swarm).Select(r => r.Coordinator.Id)]);
                await replacements.StartAsync().ConfigureAwait(false);
                stops.Push(async () => await replacements.DisposeAsync().ConfigureAwait(false));

                app.MapCoordinatorApi(id => local.Resolve(id)?.Coordinator, pool, events, new CoordinatorApiOptions
                {
                    Config = _config.Redacted().ToDictionary(kv => kv.Key, kv => (string?)kv.Value),
                    Extra = c => local.Find(c.Id)?.Snapshot(),
                }, admin);
            }

            if (_plan.Validator)
            {
                var count = _plan.Up?.Validators ?? 1;
                for (var i = 0; i < count; i++)
                {
                    // A validator replica is named after its pod (Deployment `validator`, SPEC §5 #23); in `cfn up`, validator-N.
                    var id = _plan.Up is not null ? $"validator-{i}" : _plan.Coordinator ? "validator-" + HostId() : _config.CoordinatorId ?? HostId();
                    var validator = await Coordinator.StartAsync(pool.Rent(), keys, id, ValidatorSwarm, metrics).ConfigureAwait(false);
                    hooks.Attach(validator);
                    StartValidator(validator, _plan.Up is null ? StopProcessSuperseded : runtime => _ = runtime.DisposeAsync().AsTask());
                }
            }

            stops.Push(() => StopAllAsync(local));
            MapCommon(app, redis, local);
            if (_plan.Up is { } up && manager is not null)
            {
                var swarms = Enumerable.Range(1, up.Swarms).Select(i => $"swarm-{i}").ToList();
                foreach (var swarm in swarms)
                {
                    await manager.InitializeSwarmAsync(swarm, up.CoordinatorsPerSwarm).ConfigureAwait(false);
                }

                // `cfn up` keeps its swarms busy so every endpoint and metric shows live data.
                var generator = new WorkGenerator(queue, swarms, logger: loggers.CreateLogger("Cfn.Coordination.Loop.WorkGenerator"), loops: loops);
                var generating = Task.Run(() => generator.RunAsync(generatorStop.Token), CancellationToken.None);
                stops.Push(async () =>
                {
                    await generatorStop.CancelAsync().ConfigureAwait(false);
                    try
                    {
                        await generating.ConfigureAwait(false);
                    }
                    catch (OperationCanceledException)
                    {
                        // stopped
                    }
                });
            }

            var dump = new DiagnosticDump(() => local.Coordinators, redis, _plan.Roles,
                c => local.Find(c.Id)?.Describe() ?? []);
            using var sigquit = dump.HandleSigQuit(Console.Out);

            await app.StartAsync(cancellationToken).ConfigureAwait(false);
            if (_plan.Up is { } wanted)
            {
                await WaitForSwarmAsync(local, wanted.Swarms * wanted.CoordinatorsPerSwarm, log, cancellationToken).ConfigureAwait(false);
                await manager!.RunOnceAsync().ConfigureAwait(false); // marks the initial spawn requests ready before "ready"
            }

            log.LogInformation("cfn started roles={Roles} http={Urls} coordinators={Count}", _plan.Roles, string.Join(',', app.Urls), local.All.Count);
            OnReady?.Invoke(new Uri(app.Urls.First()));
            await WaitForStopAsync(app, cancellationToken).ConfigureAwait(false);
            log.LogInformation("cfn stopping roles={Roles}", _plan.Roles);
        }
        catch (CoordinatorSupersededException e) when (_plan.Up is null)
        {
            // Superseded while starting (declared dead, or restarted elsewhere, before the start finished): like
            // superseded later, the process restarts as a new instance rather than crash.
            log.LogError("Coordinator {CoordinatorId} of this process was superseded while starting; exiting with code {ExitCode} to restart as a new instance",
                e.CoordinatorId, SupersededExitCode);
            Interlocked.Exchange(ref _exitCode, SupersededExitCode);
        }
        finally
        {
            using var budget = new CancellationTokenSource(StopBudget);
            while (stops.TryPop(out var stop))
            {
                try
                {
                    await stop().WaitAsync(budget.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    log.LogWarning("Stop budget of {Seconds}s used up; the remaining keys expire on their own", StopBudget.TotalSeconds);
                    break;
                }
                catch (Exception e) when (e is RedisException or TimeoutException or ObjectDisposedException)
                {
                    log.LogWarning("Redis error while stopping: {Error}", RedisErrors.FirstClause(e));
                }
            }

            await app.StopAsync(CancellationToken.None).ConfigureAwait(false);
        }

        log.LogInformation("cfn stopped exitCode={ExitCode}", _exitCode);
        return _exitCode;
    }

    /// <summary>A host lifetime that handles no signals (see <see cref="RunAsync"/>).</summary>
    private sealed class SignalFreeLifetime : IHostLifetime
    {
        public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }

    /// <summary>The pod name (or host name), the default identity of a process (SPEC §3.6 COORDINATOR_ID).</summary>
    internal static string HostId() => Environment.MachineName.ToLowerInvariant();

    /// <summary>
    /// The swarm validators heartbeat in (they are protocol participants, not members of a working swarm); it is also what
    /// makes a started instance a validator, with its own heartbeat key (<see cref="Coordinator.ValidatorSwarmId"/>).
    /// </summary>
    internal const string ValidatorSwarm = Coordinator.ValidatorSwarmId;

    /// <summary>
    /// Runs the work loop of a started coordinator and lists it in <paramref name="local"/> until it stops. The swarm
    /// manager's hosts use it for spawned coordinators, <c>serve</c> for COORDINATOR_ID.
    /// </summary>
    private static CoordinatorRuntime StartLoop(Coordinator coordinator, WorkQueue queue, LoopOptions options, ValidatorRegistry validators,
        ValidatorPerformance performance, LocalCoordinators local, Action<CoordinatorRuntime> onSuperseded)
    {
        var loop = new CoordinatorLoop(coordinator, queue, options, validators, performance);
        var runtime = new CoordinatorRuntime(coordinator, "coordinator", loop.RunAsync,
            describe: () =>
            {
                var state = loop.State;
                return [$"work current={state.CurrentWorkId ?? "none"} completed={state.ItemsCompleted} failed={state.ItemsFailed} " +
                        $"released={state.ItemsReleased} adopted={state.ItemsAdopted} validatorTimeouts={state.ValidatorTimeouts} lastError={state.LastError ?? "none"}"];
            },
            snapshot: () => loop.State,
            onStopped: local.Remove,
            onSuperseded: onSuperseded);
        local.Add(runtime);
        return runtime;
    }

    /// <summary>The loop settings; <c>cfn up</c> points its external calls at its own health endpoint when none is set.</summary>
    private LoopOptions LoopOptionsFor(CfnConfiguration config)
    {
        var options = config.Loop;
        if (_plan.Up is not null && options.ExternalApiUrl is null)
        {
            options.ExternalApiUrl = new Uri($"http://127.0.0.1:{config.HttpPort}/health/live");
        }

        return options;
    }

    /// <summary><c>cfn up</c> says <c>ready</c> only once the swarm manager has started every initial coordinator.</summary>
    private static async Task WaitForSwarmAsync(LocalCoordinators local, int coordinators, ILogger log, CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (local.All.Count(r => r.Role == "coordinator") < coordinators)
        {
            if (DateTime.UtcNow > deadline)
            {
                log.LogWarning("Only {Running} of {Wanted} coordinators started within 60 s", local.All.Count(r => r.Role == "coordinator"), coordinators);
                return;
            }

            await Task.Delay(50, cancellationToken).ConfigureAwait(false);
        }
    }

    private static async Task WaitForStopAsync(WebApplication app, CancellationToken cancellationToken)
    {
        var stopped = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var onStopping = app.Lifetime.ApplicationStopping.Register(() => stopped.TrySetResult());
        using var onCancel = cancellationToken.Register(() => stopped.TrySetResult());
        await stopped.Task.ConfigureAwait(false);
    }

    private static async Task StopAllAsync(LocalCoordinators local)
    {
        // Coordinators first (their loops give back their items), then validators; in parallel so 10 s is enough.
        await Task.WhenAll(local.All.Where(r => r.Role == "coordinator").Select(r => r.DisposeAsync().AsTask())).ConfigureAwait(false);
        await Task.WhenAll(local.All.Select(r => r.DisposeAsync().AsTask())).ConfigureAwait(false);
    }

    private void MapCommon(WebApplication app, RedisContext redis, LocalCoordinators local)
    {
        app.MapGet("/health/live", () => Results.Json(new { status = "ok" }));
        ReadinessEndpoint.Map(app, redis, () => local.All.Where(r => r.Coordinator.Heartbeats.Sequence == 0).Select(r => r.Coordinator.Id).ToList(),
            _plan.Roles);
        app.MapMetrics("/metrics");
        app.MapMetrics("/prometheus/metrics");
    }

    /// <summary>Waits until Redis answers, logging <c>Redis connection failed</c> (SPEC §4 L9) while it does not; false when stopped first.</summary>
    private async Task<bool> WaitForRedisAsync(RedisContext redis, ILogger log, CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                await redis.Database.PingAsync().ConfigureAwait(false);
                return true;
            }
            catch (Exception e) when (e is RedisException or TimeoutException)
            {
                log.LogError("Redis connection failed host={Host} port={Port} db={Db} error={Error}",
                    _config.Redis.Host, _config.Redis.Port, _config.Redis.Database, RedisErrors.FirstClause(e));
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

    private void LogConfiguration(ILogger log)
    {
        log.LogInformation("config {Settings}", string.Join(' ', _config.Redacted().Select(kv => $"{kv.Key}={kv.Value}")));
        foreach (var warning in _config.Warnings)
        {
            log.LogWarning("config {Warning}", warning);
        }
    }

    internal static void ConfigureLogging(ILoggingBuilder logging, string format)
    {
        logging.ClearProviders();
        logging.SetMinimumLevel(LogLevel.Information);
        // The framework's own chatter stays out of the operator's greps unless it is a problem.
        logging.AddFilter("Microsoft", LogLevel.Warning);
        logging.AddFilter("System.Net.Http.HttpClient", LogLevel.Warning);
        if (format == "json")
        {
            logging.AddJsonConsole(o =>
            {
                o.UseUtcTimestamp = true;
                o.TimestampFormat = "yyyy-MM-dd'T'HH:mm:ss.fff'Z'";
            });
        }
        else
        {
            logging.AddConsole(o => o.FormatterName = TextLogFormatter.FormatterName);
            logging.AddConsoleFormatter<TextLogFormatter, ConsoleFormatterOptions>();
        }
    }
}
