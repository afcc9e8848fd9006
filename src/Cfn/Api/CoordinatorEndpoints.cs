using System.Globalization;
using System.Text;
using System.Text.Json;
using Cfn.Coordination;
using Cfn.Coordination.Acks;
using Cfn.Coordination.Identity;
using Cfn.Coordination.Inspection;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Resilience;
using Cfn.Coordination.Security;
using Cfn.Coordination.Signals;
using Cfn.Hosting;

namespace Cfn.Api;

/// <summary>What the coordinator endpoints need besides the coordinators themselves; everything here is optional.</summary>
internal sealed class CoordinatorApiOptions
{
    /// <summary>The process's configuration for <c>/api/coordinator/state</c>, secrets already redacted by the caller.</summary>
    public IReadOnlyDictionary<string, string?> Config { get; init; } = new Dictionary<string, string?>();

    /// <summary>Extra state of a coordinator (the work loop's snapshot), shown as <c>work</c> in the state JSON.</summary>
    public Func<Coordinator, object?>? Extra { get; init; }

    /// <summary>Settings of <c>/api/signals/retry</c> and <c>/api/signals/retry-failed</c>.</summary>
    public SignalRetryOptions Retry { get; init; } = new();

    /// <summary>Oldest (or furthest in the future) <c>X-CFN-Timestamp</c> accepted by <c>/api/signals/receive</c> (5 min).</summary>
    public TimeSpan ReceiveMaxSkew { get; init; } = TimeSpan.FromMinutes(5);
}

/// <summary>
/// The coordinator's endpoints (SPEC §3.1 #5, #7, #10–#13, #15), each for the coordinator <see cref="CoordinatorFilter"/>
/// finds from the optional <c>coordinatorId</c> query parameter. Reads are open; send, retry and retry-failed are admin endpoints (D12);
/// <c>/api/signals/receive</c> is authenticated by an HMAC of the receiver, the path and the body instead (see
/// <see cref="SignReceive"/>).
/// </summary>
internal static class CoordinatorEndpoints
{
    /// <summary>Header of <c>/api/signals/receive</c>: the sender's time, Unix milliseconds.</summary>
    public const string TimestampHeader = "X-CFN-Timestamp";

    /// <summary>Header of <c>/api/signals/receive</c>: <c>sha256=</c> + lowercase hex HMAC.</summary>
    public const string SignatureHeader = "X-CFN-Signature";

    private const string SignaturePrefix = "sha256=";

    private const string SignalsPrefix = "/api/signals";

    /// <summary>The path of the HTTP delivery endpoint; it is part of what <see cref="SignReceive"/> signs.</summary>
    public const string ReceivePath = SignalsPrefix + "/receive";

    /// <summary>
    /// The value of <see cref="SignatureHeader"/> for a <c>/api/signals/receive</c> request:
    /// <c>sha256=</c> + lowercase hex HMAC-SHA256, keyed with the shared <c>BLOCKING_COORDINATION_SECRET</c> (its UTF-8
    /// bytes, as for ACKs), over the UTF-8 string <c>{X-CFN-Timestamp}.{receiverId}.{request path}.{raw request body}</c>,
    /// where <c>receiverId</c> is the coordinator the request delivers to (the <c>coordinatorId</c> query parameter, or
    /// the process's primary coordinator) and the path is <see cref="ReceivePath"/> as the server sees it, so a captured
    /// request cannot be replayed to another coordinator or endpoint. The receiver refuses (401) a missing or malformed
    /// header, a signature that matches neither the current nor the new secret (checked in constant time), and a
    /// timestamp more than <see cref="CoordinatorApiOptions.ReceiveMaxSkew"/> (5 min) away from its clock. A replay
    /// inside that window is a duplicate (nothing written), since the signal's message ID
    /// (<c>{senderId}:{receiverId}:{type}:{iteration}:{timestamp}</c> unless the body names one) repeats.
    /// </summary>
    public static string SignReceive(SigningKeys keys, long timestampMs, string receiverId, string body, string path = ReceivePath)
    {
        ArgumentNullException.ThrowIfNull(keys);
        return SignaturePrefix + keys.Sign(ReceiveMessage(timestampMs.ToString(CultureInfo.InvariantCulture), receiverId, path, body));
    }

    private static string ReceiveMessage(string timestamp, string receiverId, string path, string body) =>
        timestamp + "." + receiverId + "." + path + "." + body;

    /// <summary>
    /// Maps the coordinator's endpoints: <c>/api/coordinator/state</c>, <c>/api/signals/*</c>, <c>/api/locks/status</c>
    /// (each for the coordinator <see cref="CoordinatorFilter"/> finds) and <c>/api/redis/pool-stats</c>.
    /// </summary>
    /// <param name="app">The web application.</param>
    /// <param name="resolve">Finds a hosted coordinator by ID; null asks for the primary one. Returns null when unknown.</param>
    /// <param name="pool">The process's Redis pool (pool stats).</param>
    /// <param name="events">Recent warnings, errors and timeouts (state).</param>
    /// <param name="options">Configuration view, extra state, retry settings.</param>
    /// <param name="admin">The filter of mutating endpoints (SPEC D12).</param>
    public static void MapCoordinatorApi(
        this IEndpointRouteBuilder app,
        Func<string?, Coordinator?> resolve,
        RedisPool pool,
        RecentEvents events,
        CoordinatorApiOptions options,
        AdminAccess admin)
    {
        ArgumentNullException.ThrowIfNull(app);
        ArgumentNullException.ThrowIfNull(resolve);
        ArgumentNullException.ThrowIfNull(pool);
        ArgumentNullException.ThrowIfNull(events);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(admin);
        var coordinators = new CoordinatorFilter(resolve);

        app.MapApiGroup("/api/redis").MapGet("/pool-stats", () => Results.Json(pool.Stats()));

        app.MapApiGroup("/api/coordinator").MapGet("/state", (HttpContext http) => Results.Json(State(http.Coordinator(), events, options)))
            .AddEndpointFilter(coordinators);

        // The admin check runs before the coordinator lookup (as it always has), so an unauthorized caller learns nothing
        // about which IDs this process hosts.
        var signals = app.MapApiGroup("/api/signals");
        signals.MapPost("/send", async (HttpContext http) =>
        {
            var coordinator = http.Coordinator();
            var (request, error) = await ReadSignalRequestAsync(http, coordinator, retry: false).ConfigureAwait(false);
            return error ?? Results.Json(await coordinator.Signals
                .SendAsync(request!.ReceiverId, request.SignalType, request.Iteration, request.Payload).ConfigureAwait(false));
        }).AddEndpointFilter(admin).AddEndpointFilter(coordinators);

        signals.MapPost("/retry", async (HttpContext http) =>
        {
            var coordinator = http.Coordinator();
            var (request, error) = await ReadSignalRequestAsync(http, coordinator, retry: true).ConfigureAwait(false);
            if (error is not null)
            {
                return error;
            }

            var retrier = new SignalRetrier(coordinator, options.Retry);
            return Results.Json(await retrier.SendWithRetryAsync(request!.ReceiverId, request.SignalType,
                request.Iteration, request.Payload, request.MaxRetries, cancellationToken: http.RequestAborted).ConfigureAwait(false));
        }).AddEndpointFilter(admin).AddEndpointFilter(coordinators);

        signals.MapPost("/retry-failed", async (HttpContext http) =>
        {
            var retrier = new SignalRetrier(http.Coordinator(), options.Retry);
            var summary = await retrier.RetryFailedAsync(http.RequestAborted).ConfigureAwait(false);
            return Results.Json(new { retried = summary.Retried, succeeded = summary.Succeeded, failed = summary.Failed });
        }).AddEndpointFilter(admin).AddEndpointFilter(coordinators);

        // Block-bodied handlers returning a value: an expression body would bind as a RequestDelegate and drop the result.
        signals.MapPost(ReceivePath[SignalsPrefix.Length..], async (HttpContext http) =>
        {
            return await ReceiveAsync(http, http.Coordinator(), options).ConfigureAwait(false);
        })
            .AddEndpointFilter(coordinators);

        app.MapApiGroup("/api/locks").MapGet("/status", async (HttpContext http) =>
        {
            return Results.Json(await LocksAsync(http.Coordinator()).ConfigureAwait(false));
        })
            .AddEndpointFilter(coordinators);
    }

    private sealed record SignalRequest(string ReceiverId, string SignalType, int Iteration, JsonElement? Payload, int? MaxRetries);

    /// <summary>Reads and validates <c>{receiverId, signalType, iteration, payload?, maxRetries?}</c>; nothing is written on error.</summary>
    private static async Task<(SignalRequest? Request, IResult? Error)> ReadSignalRequestAsync(HttpContext http, Coordinator coordinator, bool retry)
    {
        var maxPayload = coordinator.Options.MaxPayloadBytes;
        var text = await RequestBody.ReadTextAsync(http.Request, maxPayload + 4096, http.RequestAborted).ConfigureAwait(false);
        if (text is null)
        {
            return (null, ApiErrors.Invalid("payload", $"payload exceeds maximum size of {maxPayload} bytes"));
        }

        if (!JsonBody.TryParseObject(text, out var body, out var error) ||
            !JsonBody.TryString(body, "receiverId", out var receiverId, out error) ||
            !JsonBody.TryString(body, "signalType", out var signalType, out error) ||
            !JsonBody.TryInt(body, "iteration", 0, int.MaxValue, out var iteration, out error) ||
            !JsonBody.TryInt(body, "maxRetries", 0, SignalRetryOptions.MaxAllowedRetries, out var maxRetries, out error))
        {
            return (null, error);
        }

        if (!Ids.IsValidName(receiverId))
        {
            return (null, ApiErrors.InvalidId("receiverId", Ids.NameRule));
        }

        var type = SignalTypes.Normalize(signalType);
        if (type is null)
        {
            return (null, ApiErrors.Invalid("signalType", "signalType must be one of " + string.Join(", ", SignalTypes.All)));
        }

        JsonElement? payload = body.TryGetProperty("payload", out var p) && p.ValueKind != JsonValueKind.Null ? p : null;
        if (payload is { } given && Encoding.UTF8.GetByteCount(given.GetRawText()) > maxPayload)
        {
            return (null, ApiErrors.Invalid("payload", $"payload exceeds maximum size of {maxPayload} bytes"));
        }

        if (!retry && body.TryGetProperty("maxRetries", out _))
        {
            return (null, ApiErrors.Invalid("maxRetries", "maxRetries belongs to /api/signals/retry"));
        }

        return (new SignalRequest(receiverId!, type, iteration ?? coordinator.Iteration, payload, maxRetries), null);
    }

    /// <summary>
    /// §3.1 #13: a signal delivered over HTTP, authenticated by HMAC, and put into the receiver's durable inbox (idempotency
    /// by message ID, the inbox cap, K2, the wake-up); the receiver's inbox reader ACKs it as usual. 202 when accepted.
    /// </summary>
    private static async Task<IResult> ReceiveAsync(HttpContext http, Coordinator coordinator, CoordinatorApiOptions options)
    {
        var headers = http.Request.Headers;
        var timestampText = headers[TimestampHeader].ToString();
        var signature = headers[SignatureHeader].ToString();
        if (!long.TryParse(timestampText, NumberStyles.None, CultureInfo.InvariantCulture, out var timestamp))
        {
            return ApiErrors.Unauthorized(TimestampHeader, $"{TimestampHeader} is missing or not Unix milliseconds");
        }

        if (!signature.StartsWith(SignaturePrefix, StringComparison.Ordinal) || signature.Length != SignaturePrefix.Length + SigningKeys.SignatureHexLength)
        {
            return ApiErrors.Unauthorized(SignatureHeader, $"{SignatureHeader} is missing or not sha256=<64 hex characters>");
        }

        var now = coordinator.Time.GetUtcNow().ToUnixTimeMilliseconds();
        if (Math.Abs(now - timestamp) > options.ReceiveMaxSkew.TotalMilliseconds)
        {
            return ApiErrors.Unauthorized(TimestampHeader,
                $"{TimestampHeader} is more than {(long)options.ReceiveMaxSkew.TotalSeconds}s away from the receiver's clock (Signal timestamp too old)");
        }

        var maxPayload = coordinator.Options.MaxPayloadBytes;
        var text = await RequestBody.ReadTextAsync(http.Request, maxPayload + 4096, http.RequestAborted).ConfigureAwait(false);
        if (text is null)
        {
            return ApiErrors.Invalid("payload", $"payload exceeds maximum size of {maxPayload} bytes");
        }

        var path = http.Request.PathBase.Add(http.Request.Path).Value ?? ReceivePath;
        if (!coordinator.VerifySignature(ReceiveMessage(timestampText, coordinator.Id, path, text), signature[SignaturePrefix.Length..]))
        {
            coordinator.Metrics.AckVerificationFailures.WithLabels(coordinator.Id, "http_signature").Inc();
            var logger = http.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger(typeof(CoordinatorEndpoints).FullName!);
            logger.LogWarning("Invalid signal signature on /api/signals/receive receiver={ReceiverId} remote={Remote}",
                coordinator.Id, http.Connection.RemoteIpAddress);
            return ApiErrors.Unauthorized(SignatureHeader,
                $"{SignatureHeader} does not match the request (HMAC-SHA256 of \"{{timestamp}}.{{receiverId}}.{{path}}.{{body}}\" with the shared secret)");
        }

        if (!JsonBody.TryParseObject(text, out var body, out var error) ||
            !JsonBody.TryString(body, "senderId", out var senderId, out error) ||
            !JsonBody.TryString(body, "signalType", out var signalType, out error) ||
            !JsonBody.TryInt(body, "iteration", 0, int.MaxValue, out var iteration, out error) ||
            !JsonBody.TryString(body, "messageId", out var givenMessageId, out error))
        {
            return error!;
        }

        if (!Ids.IsValidName(senderId))
        {
            return ApiErrors.InvalidId("senderId", Ids.NameRule);
        }

        var type = SignalTypes.Normalize(signalType);
        if (type is null)
        {
            return ApiErrors.Invalid("signalType", "signalType must be one of " + string.Join(", ", SignalTypes.All));
        }

        if (iteration is null)
        {
            return ApiErrors.Invalid("iteration", "iteration must be an integer from 0 to 2147483647");
        }

        JsonElement? payload = body.TryGetProperty("payload", out var p) && p.ValueKind != JsonValueKind.Null ? p : null;
        if (payload is { } given && Encoding.UTF8.GetByteCount(given.GetRawText()) > maxPayload)
        {
            return ApiErrors.Invalid("payload", $"payload exceeds maximum size of {maxPayload} bytes");
        }

        var prefix = $"{senderId}:{coordinator.Id}:";
        var messageId = givenMessageId ?? string.Create(CultureInfo.InvariantCulture, $"{prefix}{type}:{iteration}:{timestamp}");
        if (!Ids.IsValidSignalId(messageId) || !messageId.StartsWith(prefix, StringComparison.Ordinal))
        {
            return ApiErrors.Invalid("messageId", $"messageId {Ids.SignalRule}, and must start with {prefix}", "INVALID_ID");
        }

        var delivery = await coordinator.Inbox.EnqueueAsync(new Signal
        {
            Timestamp = timestamp,
            SenderId = senderId!,
            ReceiverId = coordinator.Id,
            Iteration = iteration.Value,
            Type = type,
            Payload = payload,
            MessageId = messageId,
        }).ConfigureAwait(false);
        return Results.Json(new { accepted = true, duplicate = delivery.IsDuplicate, messageId, receiverId = coordinator.Id, key = delivery.Key },
            statusCode: StatusCodes.Status202Accepted);
    }

    /// <summary>§3.1 #7: the coordinator's state, with recent errors and timeouts as text (the runbook greps it).</summary>
    private static object State(Coordinator coordinator, RecentEvents events, CoordinatorApiOptions options)
    {
        var state = CoordinationInspector.Describe(coordinator);
        var oldest = state.OldestWait;
        object? extra;
        try
        {
            extra = options.Extra?.Invoke(coordinator);
        }
#pragma warning disable CA1031 // a broken snapshot callback must not take the state endpoint down with it
        catch (Exception e)
#pragma warning restore CA1031
        {
            extra = new { error = "state callback failed: " + e.Message };
        }

        return new
        {
            coordinatorId = state.CoordinatorId,
            swarmId = state.SwarmId,
            instanceId = state.InstanceId,
            epoch = state.Epoch,
            status = state.Status,
            phase = state.Phase,
            iteration = state.Iteration,
            superseded = state.Superseded,
            lastActivity = state.LastActivity,
            blocking = oldest is null ? null : new
            {
                signalId = oldest.SignalId,
                waitingFor = oldest.WaitingFor,
                received = oldest.Received,
                missing = oldest.Missing,
                startedAt = oldest.StartedAt,
                timeoutMs = oldest.TimeoutMs,
                elapsedMs = oldest.ElapsedMs,
            },
            runningWaits = state.RunningWaits,
            heartbeat = new
            {
                key = state.Heartbeat.Key, // a coordinator's heartbeat key, or the validator heartbeat key for a validator
                intervalMs = state.Heartbeat.IntervalMs,
                lastSentAt = state.Heartbeat.LastSentAt,
                sequence = state.Heartbeat.Sequence,
                lastError = state.Heartbeat.LastError,
            },
            circuitBreakers = state.Breakers,
            recentErrors = events.Errors,
            recentTimeouts = events.Timeouts,
            config = Redact(options.Config),
            work = extra,
            timestamp = state.Now,
        };
    }

    /// <summary>Secrets never leave the process, even if the caller forgot one: any secret-looking name is redacted again.</summary>
    internal static SortedDictionary<string, string?> Redact(IReadOnlyDictionary<string, string?> config)
    {
        var shown = new SortedDictionary<string, string?>(StringComparer.Ordinal);
        foreach (var (name, value) in config)
        {
            var secret = name.Contains("SECRET", StringComparison.OrdinalIgnoreCase) || name.Contains("PASSWORD", StringComparison.OrdinalIgnoreCase) ||
                         name.Contains("TOKEN", StringComparison.OrdinalIgnoreCase);
            shown[name] = secret && value is not null ? "<redacted>" : value;
        }

        return shown;
    }

    /// <summary>§3.1 #15: escalation locks naming the coordinator, the batch cleanup lock, its work fences and its epoch.</summary>
    private static async Task<object> LocksAsync(Coordinator coordinator)
    {
        var locks = await CoordinationInspector.ReadLocksAsync(coordinator).ConfigureAwait(false);
        return new
        {
            coordinatorId = locks.CoordinatorId,
            epoch = locks.Epoch,
            currentEpoch = locks.CurrentEpoch,
            superseded = locks.Superseded,
            escalations = locks.Escalations.Select(e => e.Record is { } record
                ? (object)new
                {
                    key = e.Key,
                    role = e.Role,
                    deadCoordinatorId = record.DeadCoordinatorId,
                    newCoordinatorId = record.NewCoordinatorId,
                    status = record.Status,
                    fencingToken = record.FencingToken,
                    timestamp = record.Timestamp,
                    ttlMs = e.TtlMs,
                }
                : new { key = e.Key, role = e.Role, error = e.Error }).ToList(),
            cleanupLock = new
            {
                key = locks.CleanupLock.Key,
                held = locks.CleanupLock.Held,
                token = locks.CleanupLock.Token,
                ttlMs = locks.CleanupLock.TtlMs,
            },
            workFences = locks.WorkFences.Select(f => f.Item is { } item
                ? (object)new
                {
                    key = f.Key,
                    workId = item.WorkId,
                    owner = item.AssignedTo,
                    ownerEpoch = item.OwnerEpoch,
                    epoch = item.Epoch,
                    status = item.Status,
                    ttlMs = f.TtlMs,
                }
                : new { key = f.Key, error = f.Error }).ToList(),
        };
    }
}
