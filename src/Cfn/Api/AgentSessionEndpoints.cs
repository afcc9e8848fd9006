using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Cfn.Agents;
using Cfn.Coordination;
using Cfn.Coordination.Identity;

namespace Cfn.Api;

/// <summary>
/// HTTP agent sessions (SPEC D21) under <c>/api/agents/sessions</c>, for agents that only speak HTTP: create a session,
/// then send, receive (long-poll), wait (long-poll), reply and close with the session's token. Each action answers what
/// the matching <c>cfn agent</c> verb prints (<see cref="AgentActions"/>); a refused or invalid request gets
/// <c>{error, code, field}</c>. Creating a session needs admin rights (SPEC D12) or <c>CFN_AGENT_TOKEN</c>, so that
/// agents need not hold the operator's token; everything after needs the session's own token.
/// </summary>
internal static class AgentSessionEndpoints
{
    /// <summary>Largest request body: a payload at its limit and the request's other fields.</summary>
    private const int MaxBodyBytes = AgentInput.MaxPayloadBytes + 4096;

    /// <summary>Longest long-poll: proxies and clients give up on longer requests; an agent simply polls again.</summary>
    private const long MaxPollMs = 300_000;

    private const string SessionKey = "cfn.agentSession";

    public static void MapAgentSessionApi(this IEndpointRouteBuilder app, AgentSessions sessions, AdminAccess admin)
    {
        ArgumentNullException.ThrowIfNull(app);
        ArgumentNullException.ThrowIfNull(sessions);
        ArgumentNullException.ThrowIfNull(admin);
        var group = app.MapApiGroup("/api/agents/sessions");
        group.AddEndpointFilter(AgentInputFilter);

        group.MapPost("", async (HttpContext http) =>
        {
            var body = await ReadBodyAsync(http).ConfigureAwait(false);
            var agentId = RequiredId(body, "agentId");
            var swarmId = RequiredId(body, "swarmId");
            var leaseMs = OptionalLong(body, "leaseMs") ?? (long)AgentSessionOptions.DefaultLease.TotalMilliseconds;
            if (leaseMs < AgentSessionOptions.MinLease.TotalMilliseconds || leaseMs > AgentSessionOptions.MaxLease.TotalMilliseconds)
            {
                throw new AgentInputException("leaseMs", string.Create(CultureInfo.InvariantCulture,
                    $"must be from {AgentSessionOptions.MinLease.TotalMilliseconds} to {AgentSessionOptions.MaxLease.TotalMilliseconds}"));
            }

            var (session, token) = await sessions.CreateAsync(agentId, swarmId, TimeSpan.FromMilliseconds(leaseMs)).ConfigureAwait(false);
            return Results.Json(new
            {
                sessionId = session.SessionId,
                token,
                agentId,
                swarmId,
                epoch = session.Agent.Epoch,
                leaseMs,
            }, AgentActions.Output, statusCode: StatusCodes.Status201Created);
        }).AddEndpointFilter(new CreateAccess(sessions.Options.Token, admin));

        var one = group.MapGroup("/{sessionId}");
        one.AddEndpointFilter(new SessionAccess(sessions));

        one.MapGet("", (HttpContext http) =>
        {
            var session = Session(http);
            return Results.Json(new
            {
                sessionId = session.SessionId,
                agentId = session.Agent.Id,
                swarmId = session.Agent.SwarmId,
                epoch = session.Agent.Epoch,
                leaseMs = (long)session.Lease.TotalMilliseconds,
                createdAt = session.CreatedAtMs,
            }, AgentActions.Output);
        });

        one.MapPost("/send", async (HttpContext http) =>
        {
            var session = Session(http);
            var body = await ReadBodyAsync(http).ConfigureAwait(false);
            var receivers = AgentInput.Ids(IdList(body, "to"), "to");
            var type = AgentInput.SignalType(OptionalString(body, "type"), "type");
            JsonElement? payload = body.TryGetProperty("payload", out var p) && p.ValueKind != JsonValueKind.Null ? AgentInput.Payload(p, "payload") : null;
            var iteration = AgentInput.Iteration(OptionalLong(body, "iteration") ?? 1, "iteration");
            var key = AgentInput.IdempotencyKey(OptionalString(body, "idempotencyKey"), "idempotencyKey");
            var wait = OptionalBool(body, "wait") ?? false;
            var timeout = PollTimeout(body, "timeoutMs", required: false);
            return Answer(await AgentActions.SendAsync(session.Agent, receivers, type, iteration, payload, key, wait, timeout, http.RequestAborted)
                .ConfigureAwait(false));
        });

        one.MapPost("/wait", async (HttpContext http) =>
        {
            var session = Session(http);
            var body = await ReadBodyAsync(http).ConfigureAwait(false);
            var peers = AgentInput.Ids(IdList(body, "for"), "for");
            var messageId = AgentInput.MessageId(OptionalString(body, "messageId"), "messageId");
            var timeout = PollTimeout(body, "timeoutMs", required: false);
            return Answer(await AgentActions.WaitAsync(session.Agent, peers, messageId, timeout, http.RequestAborted).ConfigureAwait(false));
        });

        // Consumed only once the answer was written: a poll whose client went away leaves the signal to the next one.
        one.MapPost("/receive", async (HttpContext http) =>
        {
            var session = Session(http);
            var body = await ReadBodyAsync(http).ConfigureAwait(false);
            var timeout = PollTimeout(body, "timeoutMs", required: false) ?? TimeSpan.FromMilliseconds(30_000);
            // One receive at a time, so that a signal being answered is never handed out twice; a second waits its turn
            // (an agent may poll again as soon as it has its answer, before the first has consumed the signal).
            if (!await session.Receiving.WaitAsync(timeout, http.RequestAborted).ConfigureAwait(false))
            {
                return Answer(new AgentResult(new { status = "timeout" }, AgentExit.Timeout));
            }

            try
            {
                await AgentActions.ReceiveAsync(session.Agent, timeout, async result =>
                {
                    await Answer(result).ExecuteAsync(http).ConfigureAwait(false);
                    await http.Response.CompleteAsync().ConfigureAwait(false);
                    http.RequestAborted.ThrowIfCancellationRequested();
                }, http.RequestAborted).ConfigureAwait(false);
                return Results.Empty;
            }
            finally
            {
                session.Receiving.Release();
            }
        });

        one.MapPost("/reply", async (HttpContext http) =>
        {
            var session = Session(http);
            var body = await ReadBodyAsync(http).ConfigureAwait(false);
            var receiver = AgentInput.OneId(OptionalString(body, "to"), "to");
            var request = AgentInput.MessageId(OptionalString(body, "inReplyTo"), "inReplyTo", "must be the message ID of the request");
            if (!body.TryGetProperty("payload", out var answer))
            {
                throw new AgentInputException("payload", "is required: the answer, a JSON object");
            }

            var iteration = AgentInput.Iteration(OptionalLong(body, "iteration") ?? 1, "iteration");
            return Answer(await AgentActions.ReplyAsync(session.Agent, receiver, request, iteration, AgentInput.Reply(answer, request, "payload"))
                .ConfigureAwait(false));
        });

        one.MapDelete("", async (HttpContext http) =>
        {
            await sessions.CloseAsync(Session(http)).ConfigureAwait(false);
            return Results.Json(new { status = "closed" }, AgentActions.Output);
        });
    }

    private static AgentSession Session(HttpContext http) => (AgentSession)http.Items[SessionKey]!;

    /// <summary>The result of an action: 200 with what the verb prints (its <c>status</c> says timeout or peer_dead).</summary>
    private static IResult Answer(AgentResult result) => Results.Json(result.Body, AgentActions.Output);

    private static async Task<JsonElement> ReadBodyAsync(HttpContext http)
    {
        var request = http.Request;
        if (request.ContentLength is > 0 && request.ContentType?.StartsWith("application/json", StringComparison.OrdinalIgnoreCase) != true)
        {
            throw new AgentInputException("Content-Type", "must be application/json");
        }

        var text = await RequestBody.ReadTextAsync(request, MaxBodyBytes, http.RequestAborted).ConfigureAwait(false)
            ?? throw new AgentBodyTooLargeException(MaxBodyBytes);
        if (!JsonBody.TryParseObject(text, out var body, out _))
        {
            throw new AgentInputException("body", "must be a JSON object");
        }

        return body;
    }

    private static string RequiredId(JsonElement body, string field) =>
        OptionalString(body, field) is { } id
            ? Ids.IsValidName(id) ? id : throw new AgentInputException(field, Ids.NameRule, AgentInputException.InvalidId)
            : throw new AgentInputException(field, "is required");

    private static string? OptionalString(JsonElement body, string field) =>
        !body.TryGetProperty(field, out var value) || value.ValueKind == JsonValueKind.Null ? null
        : value.ValueKind == JsonValueKind.String ? value.GetString()
        : throw new AgentInputException(field, "must be a string");

    private static long? OptionalLong(JsonElement body, string field) =>
        !body.TryGetProperty(field, out var value) || value.ValueKind == JsonValueKind.Null ? null
        : value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out var number) ? number
        : throw new AgentInputException(field, "must be a whole number");

    private static bool? OptionalBool(JsonElement body, string field) =>
        !body.TryGetProperty(field, out var value) || value.ValueKind == JsonValueKind.Null ? null
        : value.ValueKind is JsonValueKind.True or JsonValueKind.False ? value.GetBoolean()
        : throw new AgentInputException(field, "must be true or false");

    /// <summary>IDs as a JSON array of strings or one comma-separated string.</summary>
    private static List<string> IdList(JsonElement body, string field)
    {
        if (!body.TryGetProperty(field, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            throw new AgentInputException(field, "is required: an agent ID or an array of them");
        }

        return value.ValueKind switch
        {
            JsonValueKind.String => AgentInput.Ids(value.GetString(), field),
            JsonValueKind.Array when value.EnumerateArray().All(e => e.ValueKind == JsonValueKind.String) =>
                AgentInput.Ids([.. value.EnumerateArray().Select(e => e.GetString()!)], field),
            _ => throw new AgentInputException(field, "must be an agent ID or an array of them"),
        };
    }

    private static TimeSpan? PollTimeout(JsonElement body, string field, bool required)
    {
        var ms = OptionalLong(body, field);
        if (ms is null)
        {
            return required ? throw new AgentInputException(field, "is required") : null;
        }

        return ms > MaxPollMs
            ? throw new AgentInputException(field, string.Create(CultureInfo.InvariantCulture, $"must be at most {MaxPollMs} over HTTP (poll again for longer)"))
            : AgentInput.Timeout(ms, field);
    }

    /// <summary>Bad input of any session request: 400 naming the field (413 for a body over the limit, 503 at the session limit).</summary>
    private static async ValueTask<object?> AgentInputFilter(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        try
        {
            return await next(context).ConfigureAwait(false);
        }
        catch (AgentInputException e)
        {
            return e.Field == "Content-Type"
                ? ApiErrors.Error(StatusCodes.Status415UnsupportedMediaType, $"{e.Field} {e.Rule}", "UNSUPPORTED_MEDIA_TYPE", e.Field)
                : ApiErrors.Invalid(e.Field, $"{e.Field} {e.Rule}", e.Code);
        }
        catch (AgentBodyTooLargeException e)
        {
            return ApiErrors.TooLarge(e.Message, "body");
        }
        catch (AgentSessionLimitException e)
        {
            return ApiErrors.Error(StatusCodes.Status503ServiceUnavailable, e.Message, "TOO_MANY_SESSIONS");
        }
    }

    /// <summary>
    /// Creating a session: <c>Authorization: Bearer $CFN_AGENT_TOKEN</c>, or what an admin endpoint accepts; either way a
    /// cross-site browser request or a non-JSON body is refused, as on an admin endpoint.
    /// </summary>
    private sealed class CreateAccess(string? agentToken, AdminAccess admin) : IEndpointFilter
    {
        public ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
        {
            var header = context.HttpContext.Request.Headers.Authorization.ToString();
            if (!(agentToken is { Length: > 0 } && header.StartsWith("Bearer ", StringComparison.Ordinal) &&
                  CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(header["Bearer ".Length..]), Encoding.UTF8.GetBytes(agentToken))))
            {
                return admin.InvokeAsync(context, next);
            }

            return AdminAccess.Refusal(context.HttpContext) is { } refused ? ValueTask.FromResult<object?>(refused) : next(context);
        }
    }

    /// <summary>Every request of a session: the session exists and the bearer token is its own; the lease counts around it.</summary>
    private sealed class SessionAccess(AgentSessions sessions) : IEndpointFilter
    {
        public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
        {
            var http = context.HttpContext;
            var sessionId = http.GetRouteValue("sessionId") as string ?? "";
            if (sessions.Find(sessionId) is not { } session)
            {
                return ApiErrors.NotFound($"No agent session {sessionId} here: never created, closed, or lapsed (its agent stopped calling for its lease)",
                    "SESSION_NOT_FOUND");
            }

            var header = http.Request.Headers.Authorization.ToString();
            if (!header.StartsWith("Bearer ", StringComparison.Ordinal) || !session.Accepts(header["Bearer ".Length..]))
            {
                return ApiErrors.Unauthorized("Authorization", "Send Authorization: Bearer <token> with the token the session's creation returned");
            }

            http.Items[SessionKey] = session;
            session.Enter(sessions.Time.GetUtcNow().ToUnixTimeMilliseconds());
            try
            {
                return await next(context).ConfigureAwait(false);
            }
            catch (CoordinatorSupersededException)
            {
                await sessions.DropSupersededAsync(session).ConfigureAwait(false);
                throw;
            }
            finally
            {
                session.Leave(sessions.Time.GetUtcNow().ToUnixTimeMilliseconds());
            }
        }
    }
}

/// <summary>A session request's body is over its limit.</summary>
internal sealed class AgentBodyTooLargeException(int max) : Exception($"The request body must be at most {max} bytes");
