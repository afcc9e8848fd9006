using System.Text.Json;
using Cfn.Coordination.Identity;
using Cfn.Coordination.Swarms;

namespace Cfn.Api;

/// <summary>
/// The swarm manager's endpoints (SPEC §3.1 #1–#3): <c>GET /api/swarms/status</c> (open), and the admin endpoints
/// <c>POST /api/spawning/pause</c>, <c>POST /api/spawning/resume</c> and <c>POST /api/swarms/{swarmId}/scale</c>.
/// </summary>
internal static class SwarmManagerEndpoints
{
    public static void Map(WebApplication app, SwarmManager manager, AdminAccess admin)
    {
        app.MapGet("/api/swarms/status", async () => Results.Json(await manager.Status.ReadAsync().ConfigureAwait(false)));

        app.MapPost("/api/spawning/pause", async () =>
        {
            var pausedAt = await manager.Spawning.PauseAsync().ConfigureAwait(false);
            return Results.Json(new { spawningPaused = true, pausedAt });
        }).AddEndpointFilter(admin);

        app.MapPost("/api/spawning/resume", async () =>
        {
            await manager.Spawning.ResumeAsync().ConfigureAwait(false);
            return Results.Json(new { spawningPaused = false });
        }).AddEndpointFilter(admin);

        app.MapPost("/api/swarms/{swarmId}/scale", async (string swarmId, HttpRequest request) =>
        {
            if (!Ids.IsValidName(swarmId))
            {
                return ApiErrors.BadRequest($"Invalid swarmId: {Ids.NameRule}", "INVALID_ID");
            }

            var result = await manager.ScaleAsync(swarmId, await ReadTargetSizeAsync(request).ConfigureAwait(false)).ConfigureAwait(false);
            return result.Outcome switch
            {
                ScaleOutcome.Scaled => Results.Json(new { message = "Swarm scaled successfully", swarmId, newSize = result.NewSize }),
                ScaleOutcome.InvalidTargetSize => ApiErrors.BadRequest("Valid targetSize is required"),
                ScaleOutcome.SwarmNotFound => ApiErrors.NotFound("Swarm not found", "SWARM_NOT_FOUND"),
                _ => Results.Json(
                    new { error = "Spawning is paused: scale-ups are refused until POST /api/spawning/resume", code = "SPAWNING_PAUSED" },
                    statusCode: StatusCodes.Status409Conflict),
            };
        }).AddEndpointFilter(admin);
    }

    /// <summary><c>targetSize</c> of a JSON object body as an integer, or null when the body is not JSON, not an object, or has none.</summary>
    private static async Task<int?> ReadTargetSizeAsync(HttpRequest request)
    {
        try
        {
            using var body = await JsonDocument.ParseAsync(request.Body, cancellationToken: request.HttpContext.RequestAborted).ConfigureAwait(false);
            return body.RootElement.ValueKind == JsonValueKind.Object &&
                   body.RootElement.TryGetProperty("targetSize", out var size) &&
                   size.ValueKind == JsonValueKind.Number &&
                   size.TryGetInt32(out var value)
                ? value
                : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }
}
