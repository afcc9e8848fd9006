using System.Text.Json;
using Cfn.Coordination;
using Cfn.Coordination.Identity;
using Cfn.Coordination.Loop;
using Cfn.Coordination.Swarms;

namespace Cfn.Api;

/// <summary>
/// The swarm manager's endpoints (SPEC §3.1 #1–#3): <c>GET /api/swarms/status</c> (open), and the admin endpoints
/// <c>POST /api/spawning/pause</c>, <c>POST /api/spawning/resume</c> and <c>POST /api/swarms/{swarmId}/scale</c>; and the
/// work intake that feeds a swarm's queue in production, <c>POST /api/swarms/{swarmId}/work</c>, with the read of what
/// became of an item, <c>GET /api/swarms/{swarmId}/work/{workId}</c> (open, like every read).
/// </summary>
internal static class SwarmManagerEndpoints
{
    /// <summary>A scale request is one small number; a larger body is read no further.</summary>
    private const int MaxScaleBodyBytes = 4096;

    private static readonly JsonSerializerOptions Web = new(JsonSerializerDefaults.Web);

    /// <summary>A work record as <c>cfn work get</c> prints it: camelCase, absent fields left out.</summary>
    private static readonly JsonSerializerOptions Record = new(JsonSerializerDefaults.Web)
    {
        DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull,
    };

    /// <summary>Maps the swarm manager's status, spawning and scale endpoints.</summary>
    public static void MapSwarmManagerApi(this IEndpointRouteBuilder app, SwarmManager manager, AdminAccess admin)
    {
        ArgumentNullException.ThrowIfNull(app);
        ArgumentNullException.ThrowIfNull(manager);
        ArgumentNullException.ThrowIfNull(admin);
        var swarms = app.MapApiGroup("/api/swarms");
        swarms.MapGet("/status", async () => Results.Json(await manager.ReadStatusAsync().ConfigureAwait(false)));

        var spawning = app.MapApiGroup("/api/spawning");
        spawning.MapPost("/pause", async () =>
        {
            var pausedAt = await manager.PauseSpawningAsync().ConfigureAwait(false);
            return Results.Json(new { spawningPaused = true, pausedAt });
        }).AddEndpointFilter(admin);

        spawning.MapPost("/resume", async () =>
        {
            await manager.ResumeSpawningAsync().ConfigureAwait(false);
            return Results.Json(new { spawningPaused = false });
        }).AddEndpointFilter(admin);

        swarms.MapPost("/{swarmId}/scale", async (string swarmId, HttpRequest request) =>
        {
            if (!Ids.IsValidName(swarmId))
            {
                return ApiErrors.BadRequest($"Invalid swarmId: {Ids.NameRule}", "INVALID_ID", "swarmId");
            }

            var result = await manager.ScaleAsync(swarmId, await ReadTargetSizeAsync(request).ConfigureAwait(false)).ConfigureAwait(false);
            return result.Outcome switch
            {
                ScaleOutcome.Scaled => Results.Json(new { message = "Swarm scaled successfully", swarmId, newSize = result.NewSize }),
                ScaleOutcome.InvalidTargetSize => ApiErrors.BadRequest("Valid targetSize is required", field: "targetSize"),
                ScaleOutcome.SwarmNotFound => ApiErrors.NotFound("Swarm not found", "SWARM_NOT_FOUND"),
                _ => ApiErrors.Conflict("Spawning is paused: scale-ups are refused until POST /api/spawning/resume", "SPAWNING_PAUSED"),
            };
        }).AddEndpointFilter(admin);
    }

    /// <summary>
    /// Maps <c>POST /api/swarms/{swarmId}/work</c> (admin, SPEC D12; body <c>{ "workId"?, "input" }</c> → 200
    /// <c>{ swarmId, workId, queueLength }</c>, 400 naming the field, 413 for an input over
    /// <see cref="WorkQueue.MaxInputBytes"/>, 503 <c>QUEUE_FULL</c>), and <c>GET /api/swarms/{swarmId}/work/{workId}</c>
    /// (open: 200 the work record — status, owner, history, verdicts, result —, 400 <c>INVALID_ID</c>, 404
    /// <c>WORK_NOT_FOUND</c> for an unknown or expired ID).
    /// </summary>
    public static void MapWorkIntakeApi(this IEndpointRouteBuilder app, WorkQueue queue, AdminAccess admin)
    {
        ArgumentNullException.ThrowIfNull(app);
        ArgumentNullException.ThrowIfNull(queue);
        ArgumentNullException.ThrowIfNull(admin);
        var swarms = app.MapApiGroup("/api/swarms");
        swarms.MapGet("/{swarmId}/work/{workId}", async (string swarmId, string workId) =>
        {
            if (!Ids.IsValidName(swarmId))
            {
                return ApiErrors.InvalidId("swarmId", Ids.NameRule);
            }

            if (!Ids.IsValidName(workId))
            {
                return ApiErrors.InvalidId("workId", Ids.NameRule);
            }

            return await queue.GetRecordAsync(swarmId, workId).ConfigureAwait(false) is { } record
                ? Results.Json(record, Record)
                : ApiErrors.NotFound($"Work {workId} not found in swarm {swarmId}: unknown, or its record expired (WORK_RESULT_TTL_SECONDS)", "WORK_NOT_FOUND");
        });

        swarms.MapPost("/{swarmId}/work", async (string swarmId, HttpRequest request) =>
        {
            if (!Ids.IsValidName(swarmId))
            {
                return ApiErrors.BadRequest($"Invalid swarmId: {Ids.NameRule}", "INVALID_ID", "swarmId");
            }

            // The body is the input plus a little: anything much larger is refused before it is parsed.
            var body = await RequestBody.ReadAsync(request, queue.MaxInputBytes + 1024, request.HttpContext.RequestAborted).ConfigureAwait(false);
            if (body is null)
            {
                return InputTooLarge(queue.MaxInputBytes);
            }

            JsonDocument document;
            try
            {
                document = JsonDocument.Parse(body);
            }
            catch (JsonException)
            {
                return ApiErrors.BadRequest("Body must be a JSON object {\"workId\"?, \"input\"}", field: "body");
            }

            using (document)
            {
                var root = document.RootElement;
                if (root.ValueKind != JsonValueKind.Object)
                {
                    return ApiErrors.BadRequest("Body must be a JSON object {\"workId\"?, \"input\"}", field: "body");
                }

                string? workId = null;
                if (root.TryGetProperty("workId", out var id) && id.ValueKind != JsonValueKind.Null)
                {
                    if (id.ValueKind != JsonValueKind.String || !Ids.IsValidName(id.GetString()))
                    {
                        return ApiErrors.BadRequest($"Invalid workId: {Ids.NameRule}", "INVALID_ID", "workId");
                    }

                    workId = id.GetString();
                }

                if (!root.TryGetProperty("input", out var input))
                {
                    return ApiErrors.BadRequest("input is required (any JSON value)", field: "input");
                }

                try
                {
                    var queued = await queue.EnqueueAsync(swarmId, workId, input).ConfigureAwait(false);
                    return Results.Json(new { swarmId, workId = queued.WorkId, queueLength = queued.QueueLength }, Web);
                }
                catch (InvalidIdException e)
                {
                    // The queue's own message (it says what it got) is the one this endpoint has always given.
                    return ApiErrors.BadRequest(e.Message, "INVALID_ID", e.Field);
                }
                catch (ArgumentException e) when (e.ParamName == "input")
                {
                    return InputTooLarge(queue.MaxInputBytes);
                }
            }
        }).AddEndpointFilter(admin);
    }

    private static IResult InputTooLarge(int maxInputBytes) => ApiErrors.TooLarge($"input exceeds maximum size of {maxInputBytes} bytes", "input");

    /// <summary><c>targetSize</c> of a JSON object body as an integer, or null when the body is too long, not JSON, not an object, or has none.</summary>
    private static async Task<int?> ReadTargetSizeAsync(HttpRequest request)
    {
        var body = await RequestBody.ReadAsync(request, MaxScaleBodyBytes, request.HttpContext.RequestAborted).ConfigureAwait(false);
        if (body is null)
        {
            return null;
        }

        try
        {
            using var document = JsonDocument.Parse(body);
            return document.RootElement.ValueKind == JsonValueKind.Object &&
                   document.RootElement.TryGetProperty("targetSize", out var size) &&
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
