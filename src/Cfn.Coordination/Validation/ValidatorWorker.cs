using System.Collections.Concurrent;
using System.Globalization;
using System.Text.Json;
using System.Threading.Channels;
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
/// A validator's main loop. The validator is a coordinator (heartbeats, inbox, ACKs). Its inbox ACKs each signal as it
/// hands it out, and this loop takes the next one as soon as it has room to hold it, so a sender's ACK means "received"
/// (SPEC §2.2–§2.6), not "your turn came": it never waits for the validations queued ahead of it. The accepted signals
/// wait in a local queue for one of <see cref="ValidatorOptions.Concurrency"/> validation slots; each <c>validation</c>
/// signal is then validated — from the cache when <c>ENABLE_VALIDATION_CACHE</c> is on and an identical input was
/// validated within the TTL — answered with a <c>completion</c> signal carrying the verdict, bound to the request
/// (<see cref="Signals.SignalSender.ReplyAsync"/>), and its duration recorded.
/// <para>
/// The bound: at most <see cref="ValidatorOptions.Concurrency"/> + <see cref="ValidatorOptions.QueueCapacity"/> signals
/// are held ACKed and unanswered; with that many held the loop reads no further, so the next sender's ACK waits until a
/// verdict is sent (honest back-pressure: the sender's ACK timeout, retries and reassignment apply).
/// </para>
/// <para>
/// A signal is consumed from the inbox only after its verdict is sent: until then it stays pending in the inbox's
/// consumer group, so a validator that dies with accepted work loses none of it. The next start of its ID reads it
/// again, and a validator declared dead has it handed over, with the rest of its inbox, to its replacement, whose
/// verdict names the original request. A verdict that cannot be sent is sent again after <see cref="RetryDelay"/>. A
/// validation redelivered after a crash is validated again and its verdict sent with the same idempotency key, so the
/// coordinator gets it at most once. Malformed requests are logged, counted
/// (<c>signals_ignored_total{reason="malformed_payload"}</c>) and skipped. The validator reports itself live every
/// <see cref="ValidatorOptions.RegistrationInterval"/> and leaves the registry on a graceful stop.
/// </para>
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
    private long _queued;
    private long _validating;

    /// <summary>Creates the loop of <paramref name="validator"/> (started with <see cref="Coordinator.StartAsync"/>).</summary>
    /// <param name="validator">The validator's coordinator instance (its ID is the validator ID, e.g. the pod name).</param>
    /// <param name="validation">What decides a verdict (e.g. <see cref="BuiltInValidation"/>).</param>
    /// <param name="options">Cache, registration, concurrency and queue settings.</param>
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
    /// The queue depth: signals accepted (ACKed) and waiting for a validation slot, at most
    /// <see cref="ValidatorOptions.QueueCapacity"/>.
    /// </summary>
    public long Queued => Interlocked.Read(ref _queued);

    /// <summary>Accepted signals being validated or answered now, at most <see cref="ValidatorOptions.Concurrency"/>.</summary>
    public long Validating => Interlocked.Read(ref _validating);

    /// <summary>
    /// Runs until <paramref name="cancellationToken"/> fires or the validator is superseded. Validations in progress and
    /// accepted signals still queued at cancellation are abandoned unanswered and stay in the inbox for the validator's
    /// next start (or its replacement).
    /// </summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _validator.SupersededToken);
        var token = stop.Token;
        var time = _validator.Redis.Time;
        await TryRegisterAsync().ConfigureAwait(false);
        var registration = KeepRegisteredAsync(token);
        _logger.LogInformation(
            "Validator started validatorId={ValidatorId} cache={Cache} cacheTtl={CacheTtl} concurrency={Concurrency} queueCapacity={QueueCapacity}",
            ValidatorId, _options.EnableCache, _options.CacheTtlSeconds, _options.Concurrency, _options.QueueCapacity);
        // Wake-driven (it sleeps until a validation arrives), so only its stopping counts against readiness.
        var health = _validator.Redis.Loops.Register(LoopNames.ValidatorWorker, ValidatorId, interval: null);
        // What was accepted and not yet answered: the room bounds it, the set knows it (an entry read again after a Redis
        // error is not taken twice), the channel hands it to the validation slots.
        using var room = new SemaphoreSlim(_options.Concurrency + _options.QueueCapacity);
        var held = new ConcurrentDictionary<string, byte>(StringComparer.Ordinal);
        var accepted = Channel.CreateUnbounded<ReceivedSignal>(new UnboundedChannelOptions { SingleWriter = true });
        using var slotsStop = CancellationTokenSource.CreateLinkedTokenSource(token);
        var slots = Enumerable.Range(0, _options.Concurrency)
            .Select(_ => Task.Run(() => ValidateAcceptedAsync(accepted.Reader, room, held, health, slotsStop.Token), CancellationToken.None))
            .ToArray();
        string? ended = null;
        try
        {
            while (!token.IsCancellationRequested)
            {
                try
                {
                    if (await AcceptPassAsync(accepted.Writer, room, held, token).ConfigureAwait(false))
                    {
                        break; // superseded: a newer instance of this validator answers from now on
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
            // The slots stop with the loop: what they hold unanswered stays pending in the inbox.
            accepted.Writer.TryComplete();
            await slotsStop.CancelAsync().ConfigureAwait(false);
            await Task.WhenAll(slots).ConfigureAwait(false);
            Interlocked.Exchange(ref _queued, 0);
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

    /// <summary>
    /// One pass over the inbox: each signal is taken, and so ACKed by the inbox, only once there is room to hold it, then
    /// queued for the validation slots. True when the pass ended because the validator was superseded.
    /// </summary>
    private async Task<bool> AcceptPassAsync(
        ChannelWriter<ReceivedSignal> accepted, SemaphoreSlim room, ConcurrentDictionary<string, byte> held, CancellationToken token)
    {
        var signals = _validator.Inbox.ReadAsync(consumeOnNext: false, token).GetAsyncEnumerator(token);
        await using (signals.ConfigureAwait(false))
        {
            while (true)
            {
                // Room first: the inbox ACKs a signal as it hands it out, so with the room full the next sender's ACK waits.
                await room.WaitAsync(token).ConfigureAwait(false);
                var taken = false;
                try
                {
                    if (!await signals.MoveNextAsync().ConfigureAwait(false))
                    {
                        return !token.IsCancellationRequested; // the inbox stops handing out only when cancelled or superseded
                    }

                    var received = signals.Current;
                    if (held.TryAdd(received.EntryId, 0))
                    {
                        Interlocked.Increment(ref _queued);
                        taken = accepted.TryWrite(received);
                        if (!taken)
                        {
                            Interlocked.Decrement(ref _queued);
                            held.TryRemove(received.EntryId, out _);
                        }
                    }
                }
                finally
                {
                    if (!taken)
                    {
                        room.Release(); // nothing new is held: an entry already held (read again after an error), or the end
                    }
                }
            }
        }
    }

    /// <summary>A validation slot: answers accepted signals one at a time and consumes each once it is answered.</summary>
    private async Task ValidateAcceptedAsync(
        ChannelReader<ReceivedSignal> accepted, SemaphoreSlim room, ConcurrentDictionary<string, byte> held, LoopHandle health, CancellationToken token)
    {
        try
        {
            await foreach (var received in accepted.ReadAllAsync(token).ConfigureAwait(false))
            {
                Interlocked.Decrement(ref _queued);
                Interlocked.Increment(ref _validating);
                _validator.IsWorking = true;
                try
                {
                    if (await AnswerAsync(received, health, token).ConfigureAwait(false))
                    {
                        await ConsumeAsync(received).ConfigureAwait(false);
                    }
                }
                finally
                {
                    _validator.IsWorking = Interlocked.Decrement(ref _validating) > 0;
                    held.TryRemove(received.EntryId, out _);
                    room.Release();
                }
            }
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            // Stopping: what is still queued stays pending in the inbox, for the next start or a replacement.
        }
    }

    /// <summary>
    /// Answers one accepted signal, again after <see cref="RetryDelay"/> while Redis fails; true when it may be consumed
    /// (answered, or nothing to answer), false when it must stay pending (stopping, or superseded).
    /// </summary>
    private async Task<bool> AnswerAsync(ReceivedSignal received, LoopHandle health, CancellationToken token)
    {
        while (true)
        {
            try
            {
                return await HandleAsync(received, token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (token.IsCancellationRequested)
            {
                return false;
            }
            catch (CoordinatorSupersededException)
            {
                return false; // a newer instance of this validator answers it
            }
            catch (Exception e) when (RedisErrors.IsTransient(e) || e is SignalDeliveryException)
            {
                _logger.LogWarning("Redis error in validator validatorId={ValidatorId}: {Error}", ValidatorId, RedisErrors.FirstClause(e));
            }
            catch (Exception e) when (LoopHealth.IsRecordFault(e) && e is not RedisException)
            {
                // One signal that throws is skipped (consumed), not retried forever.
                health.RecordFailed(_logger, $"{Keys.Inbox(ValidatorId)} {received.Signal.MessageId}", e);
                return true;
            }
#pragma warning disable CA1031 // one failure must not end the slot: logged, counted, answered again after the delay
            catch (Exception e) when (!token.IsCancellationRequested)
#pragma warning restore CA1031
            {
                health.PassFailed(e, _logger);
            }

            try
            {
                await Task.Delay(RetryDelay, _validator.Redis.Time, token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return false;
            }
        }
    }

    /// <summary>Consumes an answered signal; when that fails it stays pending and is answered again (a duplicate verdict) at the next start.</summary>
    private async Task ConsumeAsync(ReceivedSignal received)
    {
        try
        {
            await _validator.Inbox.CompleteAsync(received).ConfigureAwait(false);
        }
        catch (Exception e) when (RedisErrors.IsTransient(e) || e is ObjectDisposedException)
        {
            _logger.LogWarning("Answered signal not consumed validatorId={ValidatorId} messageId={MessageId}: {Error}",
                ValidatorId, received.Signal.MessageId, RedisErrors.FirstClause(e));
        }
    }

    /// <summary>Handles one signal; true once it is answered or needs no answer (it may be consumed).</summary>
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
        var payload = JsonSerializer.SerializeToElement(completion, Json.Options);
        SignalDeliveryResult sent;
        while (true)
        {
            try
            {
                sent = await _validator.Signals.ReplyAsync(signal.SenderId, signal.MessageId, signal.Iteration, payload).ConfigureAwait(false);
                break;
            }
            catch (SignalDeliveryException e) when (e.Reason is SignalDeliveryException.ReceiverDead or SignalDeliveryException.TooManyRedirects)
            {
                // Nobody will read it (the requester died and no replacement is coming): sending again would hold this
                // slot for ever. Its waits end by themselves (peer_dead, or their timeout).
                _logger.LogWarning("Verdict dropped: requester unreachable workId={WorkId} coordinator={CoordinatorId} reason={Reason}",
                    request.WorkId, signal.SenderId, e.Reason);
                return true;
            }
            catch (SignalDeliveryException e)
            {
                // The verdict is kept and sent again: the validation is not run twice for one failed send.
                _logger.LogWarning("Verdict not sent, will retry workId={WorkId} coordinator={CoordinatorId}: {Error}",
                    request.WorkId, signal.SenderId, e.Message);
                await Task.Delay(RetryDelay, _validator.Redis.Time, cancellationToken).ConfigureAwait(false);
            }
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
