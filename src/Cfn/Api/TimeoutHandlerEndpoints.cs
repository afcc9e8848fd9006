using Cfn.Coordination.Identity;
using Cfn.Coordination.Recovery;

namespace Cfn.Api;

/// <summary>The timeout handler's endpoints (SPEC §3.1 #6, #8 and the playbook's unblock and deadlock reads).</summary>
internal static class TimeoutHandlerEndpoints
{
    public static void Map(WebApplication app, TimeoutHandler handler, AdminAccess admin)
    {
        app.MapPost("/api/timeouts/force-unblock-all", async () =>
        {
            var unblocked = await handler.Unblocker.UnblockAllAsync().ConfigureAwait(false);
            return Results.Json(new { unblocked = unblocked.Count, coordinators = unblocked });
        }).AddEndpointFilter(admin);

        app.MapPost("/api/coordinators/{coordinatorId}/unblock", async (string coordinatorId) =>
        {
            if (!Ids.IsValidName(coordinatorId))
            {
                return ApiErrors.BadRequest($"Invalid coordinatorId: {Ids.NameRule}", "INVALID_ID");
            }

            var wasBlocking = await handler.Unblocker.UnblockAsync(coordinatorId).ConfigureAwait(false);
            return Results.Json(new { coordinatorId, unblocked = wasBlocking });
        }).AddEndpointFilter(admin);

        app.MapPost("/api/coordinators/{coordinatorId}/cleanup", async (string coordinatorId) =>
        {
            if (!Ids.IsValidName(coordinatorId))
            {
                return ApiErrors.BadRequest($"Invalid coordinatorId: {Ids.NameRule}", "INVALID_ID");
            }

            // The runbook's manual cleanup is forced (no liveness check; a fresh heartbeat is logged at WARN).
            var result = await handler.Cleanup.CleanupAsync(coordinatorId, force: true).ConfigureAwait(false);
            return Results.Json(new { coordinatorId, keysDeleted = result.KeysDeleted, categories = result.Categories });
        }).AddEndpointFilter(admin);

        // SPEC §3.1 #14: the playbook's checkCoordinatorTimeout for one coordinator, now (read-only; see CoordinatorTimeoutCheck).
        app.MapPost("/api/timeouts/force-check", async (HttpContext http) =>
        {
            var text = await JsonBody.ReadTextAsync(http.Request, 4096, http.RequestAborted).ConfigureAwait(false);
            if (text is null)
            {
                return JsonBody.Invalid("body", "the request body must be at most 4096 bytes");
            }

            if (!JsonBody.TryParseObject(text, out var body, out var error) ||
                !JsonBody.TryString(body, "coordinatorId", out var coordinatorId, out error))
            {
                return error!;
            }

            if (!Ids.IsValidName(coordinatorId))
            {
                return JsonBody.InvalidId("coordinatorId", Ids.NameRule);
            }

            var result = await handler.TimeoutCheck.CheckAsync(coordinatorId!).ConfigureAwait(false);
            return result is null
                ? ApiErrors.NotFound($"Coordinator {coordinatorId} has neither a heartbeat nor an activity record", "COORDINATOR_NOT_FOUND")
                : Results.Json(new { coordinatorId, timedOut = result.TimedOut, reason = result.Reason, kind = result.Kind, durationMs = result.DurationMs });
        }).AddEndpointFilter(admin);

        app.MapGet("/api/deadlocks", async () =>
        {
            await handler.CheckWaitsAsync().ConfigureAwait(false);
            return Results.Json(handler.LastDeadlocks);
        });
    }
}
