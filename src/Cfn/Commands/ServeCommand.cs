using System.CommandLine;
using Cfn.Api;
using Cfn.Coordination.Metrics;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Resilience;
using Cfn.Hosting;
using Prometheus;

namespace Cfn.Commands;

/// <summary>
/// <c>cfn serve --role …</c>: a production process configured by its environment (SPEC §3.6), serving HTTP on
/// <c>HTTP_PORT</c> (8080). Today the <c>timeout-handler</c> role; the others arrive with the rest of issue 4.
/// </summary>
internal static class ServeCommand
{
    private static readonly string[] Roles = ["coordinator", "validator", "swarm-manager", "timeout-handler", "all"];

    public static Command Create()
    {
        var role = new Option<string>("--role") { Description = "coordinator | validator | swarm-manager | timeout-handler | all", Required = true };
        role.AcceptOnlyFromAmong(Roles);
        var command = new Command("serve", "Run one role as a long-lived process (configured by environment variables, HTTP on HTTP_PORT).") { role };
        command.SetAction(async (result, cancellationToken) => await RunAsync(result.GetValue(role)!, cancellationToken).ConfigureAwait(false));
        return command;
    }

    private static async Task<int> RunAsync(string role, CancellationToken cancellationToken)
    {
        if (role != "timeout-handler")
        {
            await Console.Error.WriteLineAsync($"serve: role {role} is not available yet (only timeout-handler)").ConfigureAwait(false);
            return 2;
        }

        CfnConfiguration config;
        try
        {
            config = CfnConfiguration.Load();
        }
        catch (CfnConfigurationException e)
        {
            await Console.Error.WriteLineAsync("configuration error: " + e.Message).ConfigureAwait(false);
            return 2;
        }

        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ ";
            o.UseUtcTimestamp = true;
        });
        builder.WebHost.UseUrls($"http://0.0.0.0:{config.HttpPort}");
        await using var app = builder.Build();
        var loggers = app.Services.GetRequiredService<ILoggerFactory>();
        var breakers = new CircuitBreakerRegistry(Metrics.DefaultRegistry, config.Breakers, loggerFactory: loggers);
        await using var redis = await RedisContext.ConnectAsync(config.Redis.ToConfiguration(), config.Coordination, loggerFactory: loggers,
            breakers: breakers).ConfigureAwait(false);
        await using var handler = new TimeoutHandler(redis, config.Keys!, config.Recovery, CoordinationMetrics.Default,
            new RecoveryMetrics(Metrics.DefaultRegistry), $"timeout-handler-{Environment.MachineName}");

        app.MapGet("/health/live", () => Results.Json(new { status = "ok" }));
        app.MapGet("/health/ready", async () =>
        {
            try
            {
                await redis.Database.PingAsync().ConfigureAwait(false);
                return Results.Json(new { status = "ready", redis = "connected" });
            }
            catch (Exception e) when (e is StackExchange.Redis.RedisException or TimeoutException)
            {
                return Results.Json(new { status = "not_ready", redis = RedisErrors.FirstClause(e) }, statusCode: StatusCodes.Status503ServiceUnavailable);
            }
        });
        app.MapMetrics("/metrics");
        app.MapMetrics("/prometheus/metrics");
        TimeoutHandlerEndpoints.Map(app, handler, new AdminAccess(config.AdminToken));

        handler.Start();
        await app.RunAsync(cancellationToken).ConfigureAwait(false);
        return 0;
    }
}
