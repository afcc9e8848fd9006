using Cfn.Api;
using Cfn.Coordination;
using Cfn.Dashboard;
using Microsoft.Extensions.Logging.Console;
using Prometheus;

namespace Cfn.Hosting;

/// <summary>
/// One cfn process (D1): the roles of its <see cref="ProcessPlan"/>, each a hosted service (<see cref="ProcessServices"/>),
/// on one Redis connection pool, one HTTP port, one metrics registry. Connects, maps the endpoints, lets the host start
/// the roles, serves until SIGTERM/SIGINT (or the token), then lets the host stop them in the order that loses nothing
/// (the work loops give their items back, the coordinators delete their own keys, then the managers stop).
/// </summary>
internal sealed class CfnProcess
{
    /// <summary>Exit code when the process's own coordinator was superseded (declared dead and replaced): the pod restarts as a new instance.</summary>
    public const int SupersededExitCode = ProcessRuntime.SupersededExitCode;

    private readonly CfnConfiguration _config;
    private readonly ProcessPlan _plan;

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
        // The roles stop one after the other within this budget; what is left when it is used up expires on its own.
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = ProcessRuntime.StopBudget);
        builder.Services.AddRoles(_config, _plan);
        builder.Services.AddReadinessChecks();
        await using var app = builder.Build();
        var process = app.Services.GetRequiredService<ProcessRuntime>();
        var log = process.Log;
        LogConfiguration(log);
        if (!await process.ConnectAsync(cancellationToken).ConfigureAwait(false))
        {
            return 0; // stopped before Redis ever answered
        }

        MapEndpoints(app, process, events);
        var local = process.Local;
        var dump = new DiagnosticDump(() => local.Coordinators, process.Redis, _plan.Roles,
            c => local.Find(c.Id)?.Describe() ?? []);
        using var sigquit = dump.HandleSigQuit(Console.Out);
        try
        {
            await app.StartAsync(cancellationToken).ConfigureAwait(false);
            if (_plan.Up is { } wanted)
            {
                await WaitForSwarmAsync(local, wanted.Swarms * wanted.CoordinatorsPerSwarm, log, cancellationToken).ConfigureAwait(false);
                // Marks the initial spawn requests ready before "ready".
                await app.Services.GetRequiredService<SwarmManagerRole>().Manager.RunOnceAsync().ConfigureAwait(false);
            }

            log.LogInformation("cfn started roles={Roles} http={Urls} coordinators={Count}", _plan.Roles, string.Join(',', app.Urls), local.All.Count);
            OnReady?.Invoke(new Uri(app.Urls.First()));
            await WaitForStopAsync(app, cancellationToken).ConfigureAwait(false);
            log.LogInformation("cfn stopping roles={Roles}", _plan.Roles);
        }
        catch (Exception e) when (_plan.Up is null && Superseded(e) is { } superseded)
        {
            process.SupersededWhileStarting(superseded);
        }
        catch (OperationCanceledException) when (_plan.Up is null && process.ExitCode == SupersededExitCode)
        {
            // Superseded while the host was still starting (seen in the chaos run: Kestrel still binding): the stop the
            // supersession asked for cancelled the start. Exit 3 all the same, so the pod restarts as a new instance.
        }
        finally
        {
            // The host stops the roles in the reverse of their start order (ProcessServices), then Kestrel.
            await app.StopAsync(CancellationToken.None).ConfigureAwait(false);
        }

        log.LogInformation("cfn stopped exitCode={ExitCode}", process.ExitCode);
        return process.ExitCode;
    }

    /// <summary>Every endpoint of the process, by role; the API's own files say what each route does.</summary>
    private void MapEndpoints(WebApplication app, ProcessRuntime process, RecentEvents events)
    {
        if (_plan.TimeoutHandler)
        {
            app.MapTimeoutHandlerApi(app.Services.GetRequiredService<TimeoutHandlerRole>().Handler, process.Admin);
        }

        if (_plan.SwarmManager)
        {
            app.MapSwarmManagerApi(app.Services.GetRequiredService<SwarmManagerRole>().Manager, process.Admin);
            app.MapWorkIntakeApi(process.Queue, process.Admin);
            app.MapAgentSessionApi(app.Services.GetRequiredService<AgentSessionsRole>().Sessions, process.Admin);
            app.MapValidatorApi(process.Performance);
        }

        if (_plan.Coordinator)
        {
            var local = process.Local;
            app.MapCoordinatorApi(id => local.Resolve(id)?.Coordinator, process.Pool, events, new CoordinatorApiOptions
            {
                Config = _config.Redacted().ToDictionary(kv => kv.Key, kv => (string?)kv.Value),
                Extra = c => local.Find(c.Id)?.Snapshot(),
            }, process.Admin);
        }

        if (_plan.SwarmManager || _plan.TimeoutHandler)
        {
            app.MapDashboard(app.Services.GetRequiredService<LiveViewRole>().View);
        }

        HealthEndpoints.Map(app);
        app.MapMetrics("/metrics");
        app.MapMetrics("/prometheus/metrics");
    }

    /// <summary>The host may hand a failed start back wrapped; superseded is the coordinator's own exception either way.</summary>
    internal static CoordinatorSupersededException? Superseded(Exception e) => e switch
    {
        CoordinatorSupersededException superseded => superseded,
        AggregateException aggregate => aggregate.Flatten().InnerExceptions.OfType<CoordinatorSupersededException>().FirstOrDefault(),
        _ => null,
    };

    /// <summary>A host lifetime that handles no signals (see <see cref="RunAsync"/>).</summary>
    private sealed class SignalFreeLifetime : IHostLifetime
    {
        public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
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
        // A failing readiness check is the 503 body's business (and the probe asks every few seconds): no ERROR line per probe.
        logging.AddFilter("Microsoft.Extensions.Diagnostics.HealthChecks", LogLevel.None);
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
