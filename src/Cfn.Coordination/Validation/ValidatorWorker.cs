using System.Globalization;
using System.Text.Json;
using Cfn.Coordination.Background;
using Cfn.Coordination.Identity;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Signals;
using Cfn.Coordination.Validation;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

// An entry point of the library: public at the namespace root (SPEC D22), its machinery stays in Validation.
namespace Cfn.Coordination;

/// <summary>
/// A validator's main loop. The validator is a coordinator (heartbeats, inbox, ACKs); its inbox hands out each
/// <c>validation</c> signal already ACKed, and this loop then validates it — from the cache when
/// <c>ENABLE_VALIDATION_CACHE</c> is on and an identical input was validated within the TTL — answers the sender with
/// a <c>completion</c> signal carrying the verdict, and records the duration. A signal is consumed only after its
/// verdict is sent; one whose verdict could not be sent is read again. A validation redelivered after a crash is
/// validated again and its verdict sent with the same idempotency key, so the coordinator gets it at most once.
/// Malformed requests are logged, counted (<c>signals_ignored_total{reason="malformed_payload"}</c>) and skipped. The
/// validator reports itself live every <see cref="ValidatorOptions.RegistrationInterval"/> and leaves the registry on
/// a graceful stop. One worker validates one signal at a time; run several validators to validate in parallel.
/// </summary>
public sealed class ValidatorWorker
{
    /// <summary>Longest reason carried in a verdict (a plug-in's exception text can be long).</summary>
    public const int MaxReasonLength = 500;

    /// <summary>Pause before reading the inbox again after a Redis failure.</summary>
    public static readonly TimeSpan RetryDelay = TimeSpan.FromSeconds(1);

    private readonly Coordinator _validator;
    private readonly IValidation _validation;
    private readonly ValidatorOptions _options;
    private readonly ValidatorPerformance _performance;
    private readonly ValidatorRegistry _registry;
    private readonly ILogger _logger;
    private long _validated;
    private long _cacheHits;
    private long _malformed;
    private long _verdictsSent;

    /// <summary>Creates the loop of <paramref name="validator"/> (started with <see cref="Coordinator.StartAsync"/>).</summary>
    /// <param name="validator">The validator's coordinator instance (its ID is the validator ID, e.g. the pod name).</param>
    /// <param name="validation">What decides a verdict (e.g. <see cref="BuiltInValidation"/>).</param>
    /// <param name="options">Cache and registration settings.</param>
    /// <param name="performance">Where durations are recorded.</param>
    /// <param name="registry">The live-validator registry (one over the validator's Redis with the stats window when null).</param>
    /// <param name="logger">Logger (from the Redis context's factory when null).</param>
    public ValidatorWorker(
        Coordinator validator,
        IValidation validation,
        ValidatorOptions options,
        ValidatorPerformance performance,
        ValidatorRegistry? registry = null,
        ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(validator);
        ArgumentNullException.ThrowIfNull(validation);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(performance);
        options.Validate();
        _validator = validator;
        _validation = validation;
        _options = options;
        _performance = performance;
        _registry = registry ?? new ValidatorRegistry(validator.Redis, options.StatsWindow);
        _logger = logger ?? validator.Redis.LoggerFactory.CreateLogger<ValidatorWorker>();
    }

    /// <summary>The validator ID.</summary>
    public string ValidatorId => _validator.Id;

    /// <summary>Validations run by the <see cref="IValidation"/> (cache hits excluded).</summary>
    public long Validated => Interlocked.Read(ref _validated);

    /// <summary>Verdicts answered from the cache.</summary>
    public long CacheHits => Interlocked.Read(ref _cacheHits);

    /// <summary>Validation signals skipped because their payload was malformed.</summary>
    public long Malformed => Interlocked.Read(ref _malformed);

    /// <summary>Verdict signals sent (duplicates of an earlier send included).</summary>
    public long VerdictsSent => Interlocked.Read(ref _verdictsSent);

    /// <summary>
    /// Runs until <paramref name="cancellationToken"/> fires or the validator is superseded. A validation in progress
    /// at cancellation is abandoned unanswered and stays in the inbox for the validator's next start.
    /// </summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _validator.SupersededToken);
        var token = stop.Token;
        var time = _validator.Redis.Time;
        await TryRegisterAsync().ConfigureAwait(false);
        var registration = KeepRegisteredAsync(token);
        _logger.LogInformation("Validator started validatorId={ValidatorId} cache={Cache} cacheTtl={CacheTtl}",
            ValidatorId, _options.EnableCache, _options.CacheTtlSeconds);
        // Wake-driven (it sleeps until a validation arrives), so only its stopping counts against readiness.
        var health = _validator.Redis.Loops.Register(LoopNames.ValidatorWorker, ValidatorId, interval: null);
        string? ended = null;
        try
        {
            while (!token.IsCancellationRequested)
            {
                try
                {
                    await foreach (var received in _validator.Inbox.ReadAllAsync(token).ConfigureAwait(false))
                    {
                        bool answered;
                        try
                        {
                            answered = await HandleAsync(received, token).ConfigureAwait(false);
                        }
                        catch (Exception e) when (LoopHealth.IsRecordFault(e) && e is not (RedisException or SignalDeliveryException or CoordinatorSupersededException))
                        {
                            // One signal that throws is skipped (consumed with the next read), not retried forever.
                            health.RecordFailed(_logger, $"{Keys.Inbox(ValidatorId)} {received.Signal.MessageId}", e);
                            continue;
                        }

                        if (!answered)
                        {
                            break; // not answered: leave it unconsumed and read it again
                        }
                    }
                }
                catch (OperationCanceledException) when (token.IsCancellationRequested)
                {
                    break;
                }
                catch (CoordinatorSupersededException)
                {
                    break; // a newer instance of this validator answers from now on
                }
                catch (Exception e) when (RedisErrors.IsTransient(e) || e is SignalDeliveryException)
                {
                    _logger.LogWarning("Redis error in validator validatorId={ValidatorId}: {Error}", ValidatorId, RedisErrors.FirstClause(e));
                }
#pragma warning disable CA1031 // one bad pass must not end the validator: logged, counted, read again after the delay
                catch (Exception e) when (!token.IsCancellationRequested)
#pragma warning restore CA1031
                {
                    health.PassFailed(e, _logger);
                }

                try
                {
                    await Task.Delay(RetryDelay, time, token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
            }
        }
#pragma warning disable CA1031 // whatever ends the loop is reported: readiness names it
        catch (Exception e) when (!token.IsCancellationRequested)
#pragma warning restore CA1031
        {
            ended = $"{e.GetType().Name}: {e.Message}";
        }
        finally
        {
            health.Ended(token.IsCancellationRequested, _logger, ended);
            _validator.IsWorking = false;
            await registration.ConfigureAwait(false);
            if (!_validator.IsSuperseded)
            {
                try
                {
                    await _registry.UnregisterAsync(ValidatorId).ConfigureAwait(false);
                }
                catch (Exception e) when (RedisErrors.IsTransient(e) || e is ObjectDisposedException)
                {
                    _logger.LogWarning("Redis error while leaving the validator registry validatorId={ValidatorId}: {Error}", ValidatorId, e.Message);
                }
            }

            _logger.LogInformation("Validator stopped validatorId={ValidatorId} validated={Validated} cacheHits={CacheHits} malformed={Malformed}",
                ValidatorId, Validated, CacheHits, Malformed);
        }
    }

    /// <summary>Handles one signal; false when its verdict could not be sent (it must not be consumed).</summary>
    private async Task<bool> HandleAsync(ReceivedSignal received, CancellationToken cancellationToken)
    {
        var signal = received.Signal;
        if (!string.Equals(signal.Type, SignalTypes.Validation, StringComparison.Ordinal))
        {
            _logger.LogDebug("Validator ignores a {Type} signal messageId={MessageId}", signal.Type, signal.MessageId);
            return true;
        }

        if (received.SenderGone)
        {
            // Its coordinator stopped or died: a replacement that adopted the work item asks again itself, and a verdict
            // sent now would recreate the gone coordinator's keys (inbox, K2) after its cleanup.
            _validator.Metrics.SignalsIgnored.WithLabels(ValidatorId, "sender_gone").Inc();
            _logger.LogInformation("Validation skipped: requester gone messageId={MessageId} senderId={SenderId}", signal.MessageId, signal.SenderId);
            return true;
        }

        if (!TryReadRequest(signal.Payload, out var request, out var error))
        {
            Interlocked.Increment(ref _malformed);
            _validator.Metrics.SignalsIgnored.WithLabels(ValidatorId, "malformed_payload").Inc();
            _logger.LogWarning("Malformed validation signal skipped messageId={MessageId} senderId={SenderId}: {Error}",
                signal.MessageId, signal.SenderId, error);
            return true;
        }

        var startedAt = EntryTime(received.EntryId) ?? signal.Timestamp;
        _validator.IsWorking = true;
        try
        {
            var (verdict, cached) = await DecideAsync(request!, cancellationToken).ConfigureAwait(false);
            var finishedAt = await RedisTime.NowMsAsync(_validator.Redis.Database).ConfigureAwait(false);
            var durationMs = Math.Max(0, finishedAt - startedAt);
            var completion = new ValidationCompletion
            {
                WorkId = request!.WorkId,
                ValidatorId = ValidatorId,
                Verdict = verdict.Wire,
                Reason = verdict.Reason is { Length: > MaxReasonLength } text ? text[..MaxReasonLength] : verdict.Reason,
                DurationMs = durationMs,
                Cached = cached,
                RequestMessageId = signal.HandedOverFrom ?? signal.MessageId,
            };
            SignalDeliveryResult sent;
            try
            {
                sent = await _validator.Signals.ReplyAsync(
                    signal.SenderId, signal.MessageId, signal.Iteration, JsonSerializer.SerializeToElement(completion, Json.Options)).ConfigureAwait(false);
            }
            catch (SignalDeliveryException e)
            {
                _logger.LogWarning("Verdict not sent, will retry workId={WorkId} coordinator={CoordinatorId}: {Error}",
                    request.WorkId, signal.SenderId, e.Message);
                return false;
            }

            Interlocked.Increment(ref _verdictsSent);
            try
            {
                await _performance.RecordAsync(ValidatorId, durationMs).ConfigureAwait(false);
            }
            catch (Exception e) when (RedisErrors.IsTransient(e))
            {
                _logger.LogWarning("Validator duration not recorded validatorId={ValidatorId}: {Error}", ValidatorId, e.Message);
            }

            _logger.LogInformation(
                "Validation complete workId={WorkId} validatorId={ValidatorId} coordinator={CoordinatorId} verdict={Verdict} durationMs={DurationMs} cached={Cached} redelivery={Redelivery} duplicate={Duplicate}",
                request.WorkId, ValidatorId, signal.SenderId, completion.Verdict, durationMs, cached, received.IsRedelivery, sent.IsDuplicate);
            return true;
        }
        finally
        {
            _validator.IsWorking = false;
        }
    }

    /// <summary>The verdict: from the cache when enabled and present, else from the validation (then cached).</summary>
    private async Task<(ValidationVerdict Verdict, bool Cached)> DecideAsync(ValidationRequest request, CancellationToken cancellationToken)
    {
        RedisKey? cacheKey = _options.EnableCache ? Keys.ValidationCache(CanonicalJson.Sha256Hex(request.Input)) : (RedisKey?)null;
        var database = _validator.Redis.Database;
        if (cacheKey is { } lookup)
        {
            try
            {
                var raw = (string?)await database.StringGetAsync(lookup).ConfigureAwait(false);
                if (raw is not null && Json.TryDeserialize<CachedVerdict>(raw, out var hit, out _) &&
                    hit!.Verdict is Verdicts.Pass or Verdicts.Fail)
                {
                    Interlocked.Increment(ref _cacheHits);
                    return (new ValidationVerdict(hit.Verdict == Verdicts.Pass, hit.Reason), true);
                }
            }
            catch (Exception e) when (RedisErrors.IsTransient(e))
            {
                _logger.LogWarning("Validation cache unavailable, validating workId={WorkId}: {Error}", request.WorkId, e.Message);
            }
        }

        ValidationVerdict verdict;
        try
        {
            verdict = await _validation.ValidateAsync(request, cancellationToken).ConfigureAwait(false)
                ?? ValidationVerdict.Fail("validation returned no verdict");
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
#pragma warning disable CA1031 // a plug-in's failure is a fail verdict, never the end of the validator
        catch (Exception e)
#pragma warning restore CA1031
        {
            _logger.LogWarning("Validation threw workId={WorkId}: {Error}", request.WorkId, e.Message);
            verdict = ValidationVerdict.Fail($"validation error: {e.GetType().Name}: {e.Message}");
        }

        Interlocked.Increment(ref _validated);
        if (cacheKey is { } store)
        {
            try
            {
                await database.StringSetAsync(store, Json.Serialize(new CachedVerdict(verdict.Wire, verdict.Reason)),
                    TimeSpan.FromSeconds(_options.CacheTtlSeconds)).ConfigureAwait(false);
            }
            catch (Exception e) when (RedisErrors.IsTransient(e))
            {
                _logger.LogWarning("Validation verdict not cached workId={WorkId}: {Error}", request.WorkId, e.Message);
            }
        }

        return (verdict, false);
    }

    /// <summary>Parses and checks a validation payload; false with a reason when it is unusable.</summary>
    internal static bool TryReadRequest(JsonElement? payload, out ValidationRequest? request, out string? error)
    {
        request = null;
        if (payload is not { ValueKind: JsonValueKind.Object } element)
        {
            error = "payload must be a JSON object";
            return false;
        }

        try
        {
            request = element.Deserialize<ValidationRequest>(Json.Options);
        }
        catch (JsonException e)
        {
            error = "malformed payload: " + e.Message;
            return false;
        }

        if (request is null || !Ids.IsValidName(request.WorkId))
        {
            error = "workId " + Ids.NameRule;
            request = null;
            return false;
        }

        if (request.Input.ValueKind == JsonValueKind.Undefined)
        {
            error = "input is required";
            request = null;
            return false;
        }

        error = null;
        return true;
    }

    private async Task TryRegisterAsync()
    {
        try
        {
            await _registry.RegisterAsync(ValidatorId).ConfigureAwait(false);
        }
        catch (Exception e) when (RedisErrors.IsTransient(e))
        {
            _logger.LogWarning("Validator registration failed validatorId={ValidatorId}: {Error}", ValidatorId, e.Message);
        }
    }

    private Task KeepRegisteredAsync(CancellationToken cancellationToken) =>
        new BackgroundLoop(_validator.Redis.Loops, LoopNames.ValidatorRegistration, ValidatorId, _options.RegistrationInterval,
            _ => TryRegisterAsync(), _logger, _validator.Redis.Time).RunAsync(cancellationToken);

    /// <summary>The Redis time (ms) a stream entry was added: the first part of its ID.</summary>
    private static long? EntryTime(string entryId)
    {
        var dash = entryId.IndexOf('-', StringComparison.Ordinal);
        return long.TryParse(dash < 0 ? entryId : entryId[..dash], NumberStyles.None, CultureInfo.InvariantCulture, out var ms)
            ? ms
            : null;
    }

    private sealed record CachedVerdict(string Verdict, string? Reason);
}
