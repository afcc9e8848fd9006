using Cfn.Coordination;
using Cfn.Coordination.Identity;
using Cfn.Coordination.Loop;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Signals;
using StackExchange.Redis;

namespace Cfn.Api;

/// <summary>
/// Every error body of the API has one shape, <c>{error, code, field}</c> (SPEC §3.1): <c>error</c> says what is wrong
/// and the rule, <c>code</c> is stable for scripts, <c>field</c> names the request field (or header) at fault and is null
/// when none is. A few errors add context after these three (<c>receiverId</c>, <c>rule</c>, <c>header</c>).
/// </summary>
internal static class ApiErrors
{
    /// <summary>An error with the shared shape.</summary>
    public static IResult Error(int status, string error, string code, string? field = null) =>
        Results.Json(new { error, code, field }, statusCode: status);

    /// <summary>400; <c>VALIDATION_ERROR</c> unless told otherwise.</summary>
    public static IResult BadRequest(string error, string code = "VALIDATION_ERROR", string? field = null) =>
        Error(StatusCodes.Status400BadRequest, error, code, field);

    /// <summary>400 naming <paramref name="field"/>; <c>INVALID_ID</c> for ID fields, <c>VALIDATION_ERROR</c> otherwise.</summary>
    public static IResult Invalid(string field, string error, string code = "VALIDATION_ERROR") =>
        Error(StatusCodes.Status400BadRequest, error, code, field);

    /// <summary>400 for an ID that broke its rule.</summary>
    public static IResult InvalidId(string field, string rule) => Invalid(field, $"Invalid {field}: {rule}", "INVALID_ID");

    /// <summary>404.</summary>
    public static IResult NotFound(string error, string code) => Error(StatusCodes.Status404NotFound, error, code);

    /// <summary>409.</summary>
    public static IResult Conflict(string error, string code) => Error(StatusCodes.Status409Conflict, error, code);

    /// <summary>413 for a body over its limit.</summary>
    public static IResult TooLarge(string error, string? field) => Error(StatusCodes.Status413PayloadTooLarge, error, "PAYLOAD_TOO_LARGE", field);

    /// <summary>401 of an admin endpoint (SPEC D12).</summary>
    public static IResult Unauthorized() =>
        Error(StatusCodes.Status401Unauthorized, "Admin endpoint: call from loopback or send Authorization: Bearer $CFN_ADMIN_TOKEN", "UNAUTHORIZED");

    /// <summary>401 of <c>/api/signals/receive</c>, naming the header at fault.</summary>
    public static IResult Unauthorized(string header, string error) =>
        Results.Json(new { error, code = "UNAUTHORIZED", field = header, header }, statusCode: StatusCodes.Status401Unauthorized);
}

/// <summary>
/// The one place the library's refusals become HTTP answers, for every endpoint of the API: bad input 400, a superseded
/// instance 409, a full inbox 429, a dead receiver 410, a full work queue or Redis down 503. It is an endpoint filter on
/// every API route group rather than exception-handler middleware because the <c>Map…Api</c> entry points are called on
/// an application whose services are already built (the process and the tests build it), and because it must not touch
/// the health and metrics endpoints. Anything else is not caught: it stays a 500.
/// </summary>
internal sealed class ApiExceptionFilter : IEndpointFilter
{
    public static readonly ApiExceptionFilter Instance = new();

    public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(next);
        try
        {
            return await next(context).ConfigureAwait(false);
        }
        catch (Exception e) when (ToResult(e) is { } result)
        {
            return result;
        }
    }

    /// <summary>The answer to <paramref name="exception"/>, or null when it is not a refusal this API knows.</summary>
    public static IResult? ToResult(Exception exception) => exception switch
    {
        // The library names a signal's type "type"; the API's request field is "signalType".
        InvalidIdException e => ApiErrors.InvalidId(e.Field == "type" ? "signalType" : e.Field, e.Rule),
        ArgumentException e => ApiErrors.Invalid(e.ParamName ?? "body",
            e.Message.Replace($" (Parameter '{e.ParamName}')", "", StringComparison.Ordinal)),
        CoordinatorSupersededException e => ApiErrors.Conflict(e.Message, "SUPERSEDED"),
        SignalDeliveryException { Reason: SignalDeliveryException.InboxFull } e =>
            Results.Json(new { error = e.Message, code = "INBOX_FULL", field = (string?)null, receiverId = e.ReceiverId, rule = "SIGNAL_INBOX_MAX_LENGTH" },
                statusCode: StatusCodes.Status429TooManyRequests),
        SignalDeliveryException { Reason: SignalDeliveryException.ReceiverDead or SignalDeliveryException.TooManyRedirects } e =>
            Results.Json(new { error = e.Message, code = "RECEIVER_DEAD", field = (string?)null, receiverId = e.ReceiverId },
                statusCode: StatusCodes.Status410Gone),
        WorkQueueFullException e => ApiErrors.Error(StatusCodes.Status503ServiceUnavailable, e.Message, "QUEUE_FULL"),
        SignalDeliveryException or RedisException or TimeoutException =>
            ApiErrors.Error(StatusCodes.Status503ServiceUnavailable, "Redis error: " + RedisErrors.FirstClause(exception), "REDIS_ERROR"),
        _ => null,
    };
}
