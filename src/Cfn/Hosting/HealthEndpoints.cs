using Cfn.Coordination;
using Cfn.Coordination.Background;
using Cfn.Coordination.Redis;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using StackExchange.Redis;

namespace Cfn.Hosting;

/// <summary>What readiness reads in a process: its Redis connection, its coordinators' first heartbeats and its roles.</summary>
internal interface IReadinessSource
{
    RedisContext Redis { get; }

    string Roles { get; }

    /// <summary>The coordinators (and validators) of the process that have not written their first heartbeat.</summary>
    IReadOnlyList<string> NoHeartbeatYet();
}

/// <summary>
/// <c>GET /health/live</c> (200 <c>{"status":"ok"}</c> while the process serves) and <c>GET /health/ready</c>, as ASP.NET
/// Core health checks: 200 when Redis answers, every coordinator of the process wrote its first heartbeat (SPEC §3.1 #16)
/// and no background loop is failing; 503 naming what is not. A loop fails when it stopped without being asked to, or
/// (periodic loops only) completed no pass for <see cref="LoopHealth.StaleIntervals"/> of its intervals. The bodies are
/// the ones docs/observability.md and docs/runbook.md show, written by <see cref="WriteReadinessAsync"/>.
/// </summary>
internal static class HealthEndpoints
{
    private const string ReadyTag = "ready";
    private const string RedisCheck = "redis";
    private const string HeartbeatCheck = "first_heartbeats";
    private const string LoopsCheck = "background_loops";

    /// <summary>Registers the readiness checks; an <see cref="IReadinessSource"/> must be registered too.</summary>
    public static IServiceCollection AddReadinessChecks(this IServiceCollection services)
    {
        services.AddHealthChecks()
            .AddCheck<RedisAnswers>(RedisCheck, tags: [ReadyTag])
            .AddCheck<FirstHeartbeatsWritten>(HeartbeatCheck, tags: [ReadyTag])
            .AddCheck<BackgroundLoopsAlive>(LoopsCheck, tags: [ReadyTag]);
        return services;
    }

    /// <summary>Maps <c>/health/live</c> and <c>/health/ready</c>.</summary>
    public static void Map(IEndpointRouteBuilder app)
    {
        app.MapHealthChecks("/health/live", new HealthCheckOptions
        {
            // Liveness runs no check: a process that answers HTTP is alive; Redis or a stuck loop is readiness' business.
            Predicate = _ => false,
            AllowCachingResponses = true,
            ResponseWriter = (context, _) => Results.Json(new { status = "ok" }).ExecuteAsync(context),
        });
        app.MapHealthChecks("/health/ready", new HealthCheckOptions
        {
            Predicate = check => check.Tags.Contains(ReadyTag),
            AllowCachingResponses = true,
            ResultStatusCodes =
            {
                [HealthStatus.Healthy] = StatusCodes.Status200OK,
                [HealthStatus.Degraded] = StatusCodes.Status503ServiceUnavailable,
                [HealthStatus.Unhealthy] = StatusCodes.Status503ServiceUnavailable,
            },
            ResponseWriter = WriteReadinessAsync,
        });
    }

    /// <summary>The readiness body: Redis' error alone when it does not answer, else what waits and what fails.</summary>
    private static Task WriteReadinessAsync(HttpContext context, HealthReport report)
    {
        var source = context.RequestServices.GetRequiredService<IReadinessSource>();
        if (report.Entries.TryGetValue(RedisCheck, out var redis) && redis.Status != HealthStatus.Healthy)
        {
            return Results.Json(new { status = "not_ready", redis = redis.Description }, statusCode: StatusCodes.Status503ServiceUnavailable)
                .ExecuteAsync(context);
        }

        if (report.Status == HealthStatus.Healthy)
        {
            return Results.Json(new { status = "ready", redis = "connected", roles = source.Roles }).ExecuteAsync(context);
        }

        var waiting = Data<IReadOnlyList<string>>(report, HeartbeatCheck) ?? [];
        var failing = Data<IReadOnlyList<LoopStatus>>(report, LoopsCheck) ?? [];
        return Results.Json(new
        {
            status = "not_ready",
            redis = "connected",
            noHeartbeatYet = waiting.Count == 0 ? null : waiting,
            failingLoops = failing.Count == 0 ? null : failing.Select(l => new
            {
                name = l.Name,
                loop = l.Loop,
                instance = l.Instance,
                state = l.State,
                intervalSeconds = l.IntervalSeconds,
                lastPassSecondsAgo = l.LastPassSecondsAgo,
                lastError = l.LastError,
                passes = l.Passes,
            }).ToList(),
        }, statusCode: StatusCodes.Status503ServiceUnavailable).ExecuteAsync(context);
    }

    private static T? Data<T>(HealthReport report, string check)
        where T : class =>
        report.Entries.TryGetValue(check, out var entry) && entry.Data.TryGetValue(check, out var value) ? value as T : null;

    /// <summary>Redis answers a PING; else unhealthy with the first clause of the error.</summary>
    private sealed class RedisAnswers(IReadinessSource source) : IHealthCheck
    {
        public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
        {
            try
            {
                await source.Redis.Database.PingAsync().ConfigureAwait(false);
                return HealthCheckResult.Healthy("connected");
            }
            catch (Exception e) when (RedisErrors.IsTransient(e))
            {
                return HealthCheckResult.Unhealthy(RedisErrors.FirstClause(e));
            }
        }
    }

    /// <summary>Every coordinator of the process wrote its first heartbeat.</summary>
    private sealed class FirstHeartbeatsWritten(IReadinessSource source) : IHealthCheck
    {
        public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
        {
            var waiting = source.NoHeartbeatYet();
            return Task.FromResult(waiting.Count == 0
                ? HealthCheckResult.Healthy()
                : HealthCheckResult.Unhealthy("no first heartbeat yet", data: new Dictionary<string, object> { [HeartbeatCheck] = waiting }));
        }
    }

    /// <summary>Each background loop's liveness: none stopped without being asked to, no periodic one stale.</summary>
    private sealed class BackgroundLoopsAlive(IReadinessSource source) : IHealthCheck
    {
        public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
        {
            var failing = source.Redis.Loops.Unhealthy();
            return Task.FromResult(failing.Count == 0
                ? HealthCheckResult.Healthy()
                : HealthCheckResult.Unhealthy($"failing loops: {string.Join(", ", failing.Select(l => l.Name))}",
                    data: new Dictionary<string, object> { [LoopsCheck] = failing }));
        }
    }
}
