using System.Text.Json;
using Cfn.Coordination.Identity;
using Cfn.Coordination.Loop;
using Cfn.Coordination.Validation;

namespace Cfn.Api;

/// <summary>
/// Validator statistics (SPEC §3.1 #4, runbook #17) and the work intake that feeds a swarm's queue in production.
/// </summary>
internal static class ValidatorEndpoints
{
    private static readonly JsonSerializerOptions Web = new(JsonSerializerDefaults.Web);

    /// <summary>
    /// Maps <c>GET /api/validators/performance</c> (open) and <c>POST /api/swarms/{swarmId}/work</c> (admin, D12; body
    /// <c>{ "workId"?, "input" }</c> → 200 <c>{ swarmId, workId, queueLength }</c>, 400 naming the field, 413 for an
    /// input over <see cref="WorkQueue.MaxInputBytes"/>, 503 <c>QUEUE_FULL</c>).
    /// </summary>
    public static void Map(WebApplication app, ValidatorPerformance performance, WorkQueue queue, AdminAccess admin)
    {
        ArgumentNullException.ThrowIfNull(app);
        ArgumentNullException.ThrowIfNull(performance);
        ArgumentNullException.ThrowIfNull(queue);

        app.MapGet("/api/validators/performance", async () =>
            Results.Json(await performance.ReadAsync().ConfigureAwait(false), Web));

        app.MapPost("/api/swarms/{swarmId}/work", async (string swarmId, HttpRequest request) =>
        {
            if (!Ids.IsValidName(swarmId))
            {
                return ApiErrors.BadRequest($"Invalid swarmId: {Ids.NameRule}", "INVALID_ID");
            }

            // The body is the input plus a little: anything much larger is refused before it is parsed.
            var limit = queue.MaxInputBytes + 1024;
            if (request.ContentLength > limit)
            {
                return TooLarge(queue.MaxInputBytes);
            }

            var body = await ReadLimitedAsync(request.Body, limit, request.HttpContext.RequestAborted).ConfigureAwait(false);
            if (body is null)
            {
                return TooLarge(queue.MaxInputBytes);
            }

            JsonDocument document;
            try
            {
                document = JsonDocument.Parse(body);
            }
            catch (JsonException)
            {
                return ApiErrors.BadRequest("Body must be a JSON object {\"workId\"?, \"input\"}");
            }

            using (document)
            {
                var root = document.RootElement;
                if (root.ValueKind != JsonValueKind.Object)
                {
                    return ApiErrors.BadRequest("Body must be a JSON object {\"workId\"?, \"input\"}");
                }

                string? workId = null;
                if (root.TryGetProperty("workId", out var id) && id.ValueKind != JsonValueKind.Null)
                {
                    if (id.ValueKind != JsonValueKind.String || !Ids.IsValidName(id.GetString()))
                    {
                        return ApiErrors.BadRequest($"Invalid workId: {Ids.NameRule}", "INVALID_ID");
                    }

                    workId = id.GetString();
                }

                if (!root.TryGetProperty("input", out var input))
                {
                    return ApiErrors.BadRequest("input is required (any JSON value)");
                }

                try
                {
                    var queued = await queue.EnqueueAsync(swarmId, workId, input).ConfigureAwait(false);
                    return Results.Json(new { swarmId, workId = queued.WorkId, queueLength = queued.QueueLength }, Web);
                }
                catch (InvalidIdException e)
                {
                    return ApiErrors.BadRequest(e.Message, "INVALID_ID");
                }
                catch (WorkQueueFullException e)
                {
                    return Results.Json(new { error = e.Message, code = "QUEUE_FULL" }, Web, statusCode: StatusCodes.Status503ServiceUnavailable);
                }
                catch (ArgumentException e) when (e.ParamName == "input")
                {
                    return TooLarge(queue.MaxInputBytes);
                }
            }
        }).AddEndpointFilter(admin);
    }

    private static IResult TooLarge(int maxInputBytes) =>
        Results.Json(new { error = $"input exceeds maximum size of {maxInputBytes} bytes", code = "PAYLOAD_TOO_LARGE" }, Web,
            statusCode: StatusCodes.Status413PayloadTooLarge);

    /// <summary>Reads the whole body, or returns null as soon as it exceeds <paramref name="limit"/> bytes.</summary>
    private static async Task<byte[]?> ReadLimitedAsync(Stream body, int limit, CancellationToken cancellationToken)
    {
        using var buffer = new MemoryStream();
        var chunk = new byte[8192];
        int read;
        while ((read = await body.ReadAsync(chunk, cancellationToken).ConfigureAwait(false)) > 0)
        {
            if (buffer.Length + read > limit)
            {
                return null;
            }

            buffer.Write(chunk, 0, read);
        }

        return buffer.ToArray();
    }
}
