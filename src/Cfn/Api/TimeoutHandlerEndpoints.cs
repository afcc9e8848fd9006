using Cfn.Coordination;
using Cfn.Coordination.Identity;
using Cfn.Coordination.Recovery;

namespace Cfn.Api;

/// <summary>The timeout handler's endpoints (SPEC §3.1 #6, #8 and the playbook's unblock and deadlock reads).</summary>
internal static class TimeoutHandlerEndpoints
{
    /// <summary>A force-check request names one coordinator; a larger body is refused.</summary>
    private const int MaxForceCheckBodyBytes = 4096;

    /// <summary>
    /// Maps <c>/api/timeouts/force-unblock-all</c>, <c>/api/timeouts/force-check</c>,
    /// <c>/api/coordinators/{coordinatorId}/unblock</c>, <c>/api/coordinators/{coordinatorId}/cleanup</c> (admin) and
    /// <c>/api/deadlocks</c> (open).
    /// </summary>
    public static void MapTimeoutHandlerApi(this IEndpointRouteBuilder app, TimeoutHandler handler, AdminAccess admin)
    {
        ArgumentNullException.ThrowIfNull(app);
        ArgumentNullException.ThrowIfNull(handler);
        ArgumentNullException.ThrowIfNull(admin);
        var timeouts = app.MapApiGroup("/api/timeouts");
        timeouts.MapPost("/force-unblock-all", async () =>
        {
            var unblocked = await handler.ForceUnblockAllAsync().ConfigureAwait(false);
            return Results.Json(new { unblocked = unblocked.Count, coordinators = unblocked });
        }).AddEndpointFilter(admin);

        var coordinators = app.MapApiGroup("/api/coordinators");
        coordinators.MapPost("/{coordinatorId}/unblock", async (string coordinatorId) =>
        {
            if (!Ids.IsValidName(coordinatorId))
            {
                return ApiErrors.InvalidId("coordinatorId", Ids.NameRule);
            }

            var wasBlocking = await handler.ForceUnblockAsync(coordinatorId).ConfigureAwait(false);
            return Results.Json(new { coordinatorId, unblocked = wasBlocking });
        }).AddEndpointFilter(admin);

        coordinators.MapPost("/{coordinatorId}/cleanup", async (string coordinatorId) =>
        {
            if (!Ids.IsValidName(coordinatorId))
            {
                return ApiErrors.InvalidId("coordinatorId", Ids.NameRule);
            }

            // The runbook's manual cleanup is forced (no liveness check; a fresh heartbeat is logged at WARN).
            var result = await handler.CleanupAsync(coordinatorId, force: true).ConfigureAwait(false);
            return Results.Json(new { coordinatorId, keysDeleted = result.KeysDeleted, categories = result.Categories });
        }).AddEndpointFilter(admin);

        // SPEC §3.1 #14: the playbook's checkCoordinatorTimeout for one coordinator, now (read-only; see CoordinatorTimeoutCheck).
        timeouts.MapPost("/force-check", async (HttpContext http) =>
        {
            var text = await RequestBody.ReadTextAsync(http.Request, MaxForceCheckBodyBytes, http.RequestAborted).ConfigureAwait(false);
            if (text is null)
            {
                return ApiErrors.Invalid("body", $"the request body must be at most {MaxForceCheckBodyBytes} bytes");
            }

            if (!JsonBody.TryParseObject(text, out var body, out var error) ||
                !JsonBody.TryString(body, "coordinatorId", out var coordinatorId, out error))
            {
                return error!;
            }

            if (!Ids.IsValidName(coordinatorId))
            {
                return ApiErrors.InvalidId("coordinatorId", Ids.NameRule);
            }

            var result = await handler.CheckTimeoutAsync(coordinatorId!).ConfigureAwait(false);
            return result is null
                ? ApiErrors.NotFound($"Coordinator {coordinatorId} has neither a heartbeat nor an activity record", "COORDINATOR_NOT_FOUND")
                : Results.Json(new { coordinatorId, timedOut = result.TimedOut, reason = result.Reason, kind = result.Kind, durationMs = result.DurationMs });
        }).AddEndpointFilter(admin);

        app.MapApiGroup("/api/deadlocks").MapGet("", async () =>
        {
            await handler.CheckWaitsAsync().ConfigureAwait(false);
            return Results.Json(handler.LastDeadlocks);
        });
    }
}
