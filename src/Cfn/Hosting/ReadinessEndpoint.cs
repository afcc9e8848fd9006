using Cfn.Coordination.Background;
using Cfn.Coordination.Redis;
using StackExchange.Redis;

namespace Cfn.Hosting;

/// <summary>
/// <c>GET /health/ready</c>: 200 when Redis answers, every coordinator of the process wrote its first heartbeat
/// (SPEC §3.1 #16) and no background loop is failing; 503 naming what is not. A loop fails when it stopped without
/// being asked to, or (periodic loops only) completed no pass for <see cref="LoopHealth.StaleIntervals"/> of its intervals.
/// </summary>
internal static class ReadinessEndpoint
{
    public static void Map(WebApplication app, RedisContext redis, Func<IReadOnlyList<string>> noHeartbeatYet, string roles)
    {
        app.MapGet("/health/ready", async () =>
        {
            try
            {
                await redis.Database.PingAsync().ConfigureAwait(false);
            }
            catch (Exception e) when (e is RedisException or TimeoutException)
            {
                return Results.Json(new { status = "not_ready", redis = RedisErrors.FirstClause(e) }, statusCode: StatusCodes.Status503ServiceUnavailable);
            }

            var waiting = noHeartbeatYet();
            var failing = redis.Loops.Unhealthy();
            if (waiting.Count == 0 && failing.Count == 0)
            {
                return Results.Json(new { status = "ready", redis = "connected", roles });
            }

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
            }, statusCode: StatusCodes.Status503ServiceUnavailable);
        });
    }
}
