using System.Collections.Concurrent;
using System.Text.Json;
using Cfn.Coordination.Acks;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Resilience;
using Cfn.Coordination.Signals;
using Cfn.Coordination.Validation;
using Cfn.Coordination.Work;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Cfn.Coordination.Loop;

/// <summary>
/// A coordinator's work loop (the working swarm). Repeatedly: wait until a validator is live; take an item from the
/// swarm's queue; own it as a fenced K10 item (create it, or claim it from the coordinator that gave it back); move to
/// the next iteration (phase <c>validation</c>); for some items call the external endpoint; send a <c>validation</c>
/// signal to K live validators; block until every validator has ACKed its signal (one ACK wait) and every verdict
/// (<c>completion</c> signal) has arrived, or the timeout (<c>BLOCKING_TIMEOUT_MS</c>) passes; complete the item with
/// the verdicts.
/// <para>
/// On timeout the item is completed as failed (outcome <c>timeout</c>, the verdicts that arrived and the missing
/// validators in its result) and a timeout is recorded for each missing validator: requeueing would hand the same
/// item to the same slow validators again and again. A force-unblock completes it the same way (outcome
/// <c>forced</c>, no validator timeouts). On cancellation (SIGTERM) the loop stops taking work, releases the item in
/// hand and puts it back at the front of the queue, where the next taker claims it (so it is never owned twice), and
/// returns. When the coordinator is superseded it stops without writing anything.
/// </para>
/// <para>
/// The loop owns the coordinator's inbox: one pump reads it and routes verdicts to the waiting item by work ID;
/// other signals go to <see cref="OtherSignalHandler"/> (or are logged and dropped).
/// </para>
/// </summary>
public sealed class CoordinatorLoop
{
    private readonly Coordinator _coordinator;
    private readonly WorkQueue _queue;
    private readonly LoopOptions _options;
    private readonly ValidatorRegistry _validators;
    private readonly ValidatorPerformance _performance;
    private readonly HttpClient? _external;
    private readonly bool _ownsExternal;
    private readonly ILogger _logger;
    private readonly Random _random;
    private readonly Lock _randomGate = new();
    private readonly ConcurrentDictionary<string, VerdictCollector> _pending = new(StringComparer.Ordinal);
    private readonly Lock _stateGate = new();
    private string _phase = "starting";
    private string? _currentWorkId;
    private int _iteration;
    private long _completed;
    private long _failed;
    private long _released;
    private long _validatorTimeouts;
    private string? _lastError;
    private long? _lastErrorAt;

    /// <summary>Creates the loop of <paramref name="coordinator"/>.</summary>
    /// <param name="coordinator">The coordinator (started with <see cref="Coordinator.StartAsync"/>); its swarm's queue is worked.</param>
    /// <param name="queue">The work queues.</param>
    /// <param name="options">Validators per item, external calls, stale threshold, timeout.</param>
    /// <param name="validators">Where live validators are found.</param>
    /// <param name="performance">Where validator timeouts are recorded.</param>
    /// <param name="externalClient">
    /// Client of the external calls, built on <see cref="ExternalCallHandler"/> (see <see cref="CreateExternalClient"/>);
    /// when null and <see cref="LoopOptions.ExternalApiUrl"/> is set, the loop builds and owns one.
    /// </param>
    /// <param name="logger">Logger (from the Redis context's factory when null).</param>
    /// <param name="random">Random source of validator picks and external-call draws (a shared one when null).</param>
    public CoordinatorLoop(
        Coordinator coordinator,
        WorkQueue queue,
        LoopOptions options,
        ValidatorRegistry validators,
        ValidatorPerformance performance,
        HttpClient? externalClient = null,
        ILogger? logger = null,
        Random? random = null)
    {
        ArgumentNullException.ThrowIfNull(coordinator);
        ArgumentNullException.ThrowIfNull(queue);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(validators);
        ArgumentNullException.ThrowIfNull(performance);
        options.Validate();
        _coordinator = coordinator;
        _queue = queue;
        _options = options;
        _validators = validators;
        _performance = performance;
        _logger = logger ?? coordinator.Redis.LoggerFactory.CreateLogger("Cfn.Coordination.Loop.CoordinatorLoop");
        _random = random ?? Random.Shared;
        _iteration = coordinator.Iteration;
        if (externalClient is null && options.ExternalApiUrl is not null)
        {
            externalClient = CreateExternalClient(coordinator, options.ExternalCallTimeout);
            _ownsExternal = true;
        }

        _external = externalClient;
    }

    /// <summary>Receives every signal that is not a verdict for an item in hand (runs on the inbox pump; keep it short).</summary>
    public Func<ReceivedSignal, Task>? OtherSignalHandler { get; set; }

    /// <summary>The timeout of one item's wait for ACKs and verdicts.</summary>
    public TimeSpan ValidationTimeout => _options.ValidationTimeout ?? _coordinator.Redis.Options.BlockingTimeout;

    /// <summary>A snapshot of the loop's state.</summary>
    public CoordinatorLoopState State
    {
        get
        {
            lock (_stateGate)
            {
                return new CoordinatorLoopState(_coordinator.Id, _coordinator.SwarmId, _phase, _currentWorkId, _iteration,
                    _completed, _failed, _released, _validatorTimeouts, _lastError, _lastErrorAt);
            }
        }
    }

    /// <summary>
    /// An <see cref="HttpClient"/> whose calls go through <see cref="ExternalCallHandler"/> (breaker <c>external:{host}</c>,
    /// the <c>Calling external API GET {url}</c> line, the <c>external API timeout</c> line and metric).
    /// </summary>
    public static HttpClient CreateExternalClient(Coordinator coordinator, TimeSpan timeout, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(coordinator);
        var redis = coordinator.Redis;
#pragma warning disable CA2000 // the client owns and disposes the handler chain
        var handler = new ExternalCallHandler(redis.Breakers, coordinator.Metrics, coordinator.Id, timeout,
            logger ?? redis.LoggerFactory.CreateLogger("Cfn.Coordination.ExternalCalls"))
        {
            InnerHandler = new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(5) },
        };
#pragma warning restore CA2000
        return new HttpClient(handler, disposeHandler: true) { Timeout = Timeout.InfiniteTimeSpan };
    }

    /// <summary>
    /// Works items until <paramref name="cancellationToken"/> fires (the item in hand is released and requeued) or the
    /// coordinator is superseded.
    /// </summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _coordinator.SupersededToken);
        using var pumpStop = CancellationTokenSource.CreateLinkedTokenSource(stop.Token);
        var token = stop.Token;
        var pump = PumpAsync(pumpStop.Token);
        _logger.LogInformation(
            "Coordinator loop started coordinator={CoordinatorId} swarm={SwarmId} validatorsPerItem={K} timeout={TimeoutMs} externalApi={ExternalApi}",
            _coordinator.Id, _coordinator.SwarmId, _options.ValidatorsPerItem, (long)ValidationTimeout.TotalMilliseconds,
            _options.ExternalApiUrl is { } url ? ExternalCallHandler.SafeUrl(url) : "none");
        try
        {
            // What an earlier instance under this ID took but never recorded (it crashed in between) goes back first.
            await RequeueTakenAsync().ConfigureAwait(false);
            while (!token.IsCancellationRequested)
            {
                try
                {
                    if (!await WaitForValidatorsAsync(token).ConfigureAwait(false))
                    {
                        break;
                    }

                    SetPhase("waiting-for-work");
                    var item = await _queue.TakeAsync(_coordinator.SwarmId, token, _coordinator.Id).ConfigureAwait(false);
                    await ProcessAsync(item, token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (token.IsCancellationRequested)
                {
                    break;
                }
                catch (CoordinatorSupersededException)
                {
                    break;
                }
                catch (Exception e) when (e is RedisException or TimeoutException or SignalDeliveryException)
                {
                    NoteError("Redis error in coordinator loop: " + RedisErrors.FirstClause(e));
                    _logger.LogWarning("Redis error in coordinator loop coordinator={CoordinatorId}: {Error}", _coordinator.Id, RedisErrors.FirstClause(e));
                    if (!await DelayAsync(_options.NoValidatorsRetryInterval, token).ConfigureAwait(false))
                    {
                        break;
                    }

                    await RequeueTakenAsync().ConfigureAwait(false); // an item taken when Redis failed is not lost

                }
            }
        }
        finally
        {
            await pumpStop.CancelAsync().ConfigureAwait(false);
            await pump.ConfigureAwait(false);
            SetPhase("stopped");
            if (_ownsExternal)
            {
                _external?.Dispose();
            }

            _logger.LogInformation(
                "Coordinator loop stopped coordinator={CoordinatorId} completed={Completed} failed={Failed} released={Released} superseded={Superseded}",
                _coordinator.Id, State.ItemsCompleted, State.ItemsFailed, State.ItemsReleased, _coordinator.IsSuperseded);
        }
    }

    /// <summary>Waits until at least one validator is live; false when cancelled.</summary>
    private async Task<bool> WaitForValidatorsAsync(CancellationToken token)
    {
        var logged = false;
        while (true)
        {
            if ((await _validators.LiveAsync(_options.ValidatorStaleThreshold).ConfigureAwait(false)).Count > 0)
            {
                return true;
            }

            SetPhase("waiting-for-validators");
            if (!logged)
            {
                _logger.LogWarning("No live validators, not taking work coordinator={CoordinatorId}", _coordinator.Id);
                logged = true;
            }

            if (!await DelayAsync(_options.NoValidatorsRetryInterval, token).ConfigureAwait(false))
            {
                return false;
            }
        }
    }

    private async Task ProcessAsync(QueuedWork queued, CancellationToken token)
    {
        lock (_stateGate)
        {
            _currentWorkId = queued.WorkId;
            _phase = "claiming";
        }

        WorkItem? item = null;
        try
        {
            item = await OwnAsync(queued).ConfigureAwait(false);
            // Recorded (its K10 item is ours) or skipped: either way it no longer needs the taken list's safety net.
            await _queue.RecordedAsync(_coordinator.SwarmId, _coordinator.Id, queued).ConfigureAwait(false);
            if (item is null)
            {
                return;
            }

            if (token.IsCancellationRequested)
            {
                await GiveBackAsync(queued, item).ConfigureAwait(false);
                return;
            }

            var iteration = Interlocked.Increment(ref _iteration);
            await _coordinator.SetIterationAsync(iteration, "validation").ConfigureAwait(false);
            _coordinator.IsWorking = true;
            var external = await MaybeCallExternalAsync(token).ConfigureAwait(false);
            SetPhase("validation");
            var result = await ValidateAsync(queued, iteration, token).ConfigureAwait(false);
            if (result is null)
            {
                await GiveBackAsync(queued, item).ConfigureAwait(false); // cancelled, or no validator to ask
                return;
            }

            SetPhase("completing");
            await CompleteAsync(item, queued, result, external).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested && item is not null)
        {
            await GiveBackAsync(queued, item).ConfigureAwait(false);
        }
        catch (Exception e) when (item is not null && e is RedisException or TimeoutException or SignalDeliveryException)
        {
            // Redis trouble mid-item: give it back rather than leave it owned until its TTL.
            NoteError($"work item interrupted workId={queued.WorkId}: {RedisErrors.FirstClause(e)}");
            _logger.LogWarning("Work item interrupted workId={WorkId} coordinator={CoordinatorId}: {Error}",
                queued.WorkId, _coordinator.Id, RedisErrors.FirstClause(e));
            try
            {
                await GiveBackAsync(queued, item).ConfigureAwait(false);
            }
            catch (Exception again) when (again is RedisException or TimeoutException)
            {
                _logger.LogWarning("Work item left owned workId={WorkId} coordinator={CoordinatorId}: {Error}",
                    queued.WorkId, _coordinator.Id, RedisErrors.FirstClause(again));
            }
        }
        finally
        {
            _coordinator.IsWorking = false;
            lock (_stateGate)
            {
                _currentWorkId = null;
            }
        }
    }

    private async Task RequeueTakenAsync()
    {
        try
        {
            await _queue.RequeueTakenAsync(_coordinator.SwarmId, _coordinator.Id).ConfigureAwait(false);
        }
        catch (Exception e) when (e is RedisException or TimeoutException)
        {
            _logger.LogWarning("Could not put taken work back coordinator={CoordinatorId}: {Error}", _coordinator.Id, RedisErrors.FirstClause(e));
        }
    }

    /// <summary>Owns the queued item as a fenced K10 item; null when it must be skipped (done, or someone else's).</summary>
    private async Task<WorkItem?> OwnAsync(QueuedWork queued)
    {
        var work = _coordinator.Work;
        var data = JsonSerializer.SerializeToElement(new { input = queued.Input }, Json.Options);
        if (queued.ReleasedBy is { } from)
        {
            var claim = await work.ClaimAsync(from, queued.WorkId).ConfigureAwait(false);
            if (claim.Succeeded)
            {
                return claim.Item;
            }

            if (claim.Outcome is not (WorkWriteOutcome.NotFound or WorkWriteOutcome.AlreadyExists))
            {
                return Skip(queued, claim);
            }
        }

        var created = await work.CreateAsync(queued.WorkId, data).ConfigureAwait(false);
        if (created.Succeeded)
        {
            return created.Item;
        }

        if (created is { Outcome: WorkWriteOutcome.AlreadyExists, Item: { } existing })
        {
            // Our own key: given back by us earlier, or left by an earlier instance under this ID (D7).
            var retaken = existing.Status switch
            {
                WorkStatus.Released => await work.ClaimAsync(_coordinator.Id, queued.WorkId).ConfigureAwait(false),
                WorkStatus.Completed => created,
                _ => await work.AdoptAsync(queued.WorkId).ConfigureAwait(false),
            };
            if (retaken.Succeeded)
            {
                return retaken.Item;
            }

            return Skip(queued, retaken);
        }

        return Skip(queued, created);
    }

    private WorkItem? Skip(QueuedWork queued, WorkWriteResult result)
    {
        _logger.LogWarning("Work item skipped workId={WorkId} coordinator={CoordinatorId} outcome={Outcome} status={Status}",
            queued.WorkId, _coordinator.Id, result.Label, result.Item?.Status ?? "none");
        return null;
    }

    /// <summary>Calls the external endpoint for a share of the items; returns what happened (null when not called).</summary>
    private async Task<object?> MaybeCallExternalAsync(CancellationToken token)
    {
        if (_options.ExternalApiUrl is not { } url || _external is null || NextDouble() >= _options.ExternalCallRate)
        {
            return null;
        }

        SetPhase("external-call");
        var safe = ExternalCallHandler.SafeUrl(url);
        try
        {
            using var response = await _external.GetAsync(url, HttpCompletionOption.ResponseHeadersRead, token).ConfigureAwait(false);
            return new { url = safe, status = (int)response.StatusCode };
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            throw;
        }
        catch (Exception e) when (e is HttpRequestException or TimeoutException or CircuitOpenException or OperationCanceledException)
        {
            // The handler logged and counted it; the item is still validated.
            NoteError($"external call failed: GET {safe}: {e.Message}");
            return new { url = safe, error = e.Message };
        }
    }

    /// <summary>
    /// Sends the validation signals and waits for every ACK and verdict; null when cancelled or when no validator
    /// could be asked (the caller gives the item back).
    /// </summary>
    private async Task<ValidationOutcome?> ValidateAsync(QueuedWork queued, int iteration, CancellationToken token)
    {
        var live = await _validators.LiveAsync(_options.ValidatorStaleThreshold).ConfigureAwait(false);
        var picked = Pick(live.Where(v => v != _coordinator.Id).ToList(), _options.ValidatorsPerItem);
        if (picked.Count == 0)
        {
            return null;
        }

        if (picked.Count < _options.ValidatorsPerItem)
        {
            _logger.LogWarning("Fewer live validators than VALIDATORS_PER_ITEM workId={WorkId} live={Live} wanted={Wanted}",
                queued.WorkId, picked.Count, _options.ValidatorsPerItem);
        }

        var time = _coordinator.Redis.Time;
        var started = time.GetTimestamp();
        var timeout = ValidationTimeout;
        var collector = new VerdictCollector(iteration, picked);
        _pending[queued.WorkId] = collector;
        try
        {
            var payload = JsonSerializer.SerializeToElement(new ValidationRequest
            {
                WorkId = queued.WorkId,
                Input = queued.Input,
                RequestedAt = time.GetUtcNow().ToUnixTimeMilliseconds(),
            }, Json.Options);
            var signals = new List<KeyValuePair<string, string>>(picked.Count);
            foreach (var validator in picked)
            {
                var sent = await _coordinator.Signals.SendAsync(validator, SignalTypes.Validation, iteration, payload).ConfigureAwait(false);
                signals.Add(KeyValuePair.Create(sent.ReceiverId, sent.MessageId)); // a dead validator's replacement ACKs a redirected signal
            }

            var acks = await _coordinator.Waiter.WaitForAcksAsync(signals, timeout, token).ConfigureAwait(false);
            if (acks.Status == AckWaitStatus.Cancelled)
            {
                token.ThrowIfCancellationRequested(); // the token includes the coordinator's superseded token
                return null;
            }

            if (acks.Status == AckWaitStatus.Completed)
            {
                var remaining = timeout - time.GetElapsedTime(started);
                if (remaining > TimeSpan.Zero)
                {
                    try
                    {
                        await collector.AllIn.WaitAsync(remaining, time, token).ConfigureAwait(false);
                    }
                    catch (TimeoutException)
                    {
                        // some verdicts are missing: reported below
                    }
                }
            }

            var verdicts = collector.Snapshot();
            var missing = picked.Where(v => !verdicts.ContainsKey(v)).ToList();
            var waitedMs = (long)time.GetElapsedTime(started).TotalMilliseconds;
            var status = acks.Status == AckWaitStatus.Forced ? "forced"
                : missing.Count > 0 ? "timeout"
                : verdicts.Values.All(v => v.Passed) ? Verdicts.Pass : Verdicts.Fail;
            if (missing.Count > 0 && acks.Status != AckWaitStatus.Forced)
            {
                await RecordTimeoutsAsync(queued.WorkId, missing, acks.Missing, waitedMs).ConfigureAwait(false);
            }

            return new ValidationOutcome(status, [.. picked.Where(verdicts.ContainsKey).Select(v => verdicts[v])], missing, waitedMs);
        }
        finally
        {
            _pending.TryRemove(KeyValuePair.Create(queued.WorkId, collector));
        }
    }

    private async Task RecordTimeoutsAsync(string workId, List<string> missing, IReadOnlyList<string> noAck, long waitedMs)
    {
        Interlocked.Add(ref _validatorTimeouts, missing.Count);
        NoteError($"validation timeout workId={workId} missing={string.Join(',', missing)} noAck={string.Join(',', noAck)} waitedMs={waitedMs}");
        _logger.LogWarning("Validation timeout workId={WorkId} coordinator={CoordinatorId} missing={Missing} noAck={NoAck} waitedMs={WaitedMs}",
            workId, _coordinator.Id, string.Join(',', missing), string.Join(',', noAck), waitedMs);
        foreach (var validator in missing)
        {
            try
            {
                await _performance.RecordAsync(validator, waitedMs, timedOut: true).ConfigureAwait(false);
            }
            catch (Exception e) when (e is RedisException or TimeoutException)
            {
                _logger.LogWarning("Validator timeout not recorded validatorId={ValidatorId}: {Error}", validator, e.Message);
            }
        }
    }

    private async Task CompleteAsync(WorkItem item, QueuedWork queued, ValidationOutcome outcome, object? external)
    {
        var result = JsonSerializer.SerializeToElement(new
        {
            input = queued.Input,
            outcome = outcome.Status,
            verdicts = outcome.Verdicts,
            missing = outcome.Missing,
            waitedMs = outcome.WaitedMs,
            external,
        }, Json.Options);
        var written = await _coordinator.Work.CompleteAsync(item, result).ConfigureAwait(false);
        if (!written.Succeeded)
        {
            NoteError($"work item not completed workId={queued.WorkId} outcome={written.Label}");
            _logger.LogWarning("Work item not completed workId={WorkId} coordinator={CoordinatorId} outcome={Outcome}",
                queued.WorkId, _coordinator.Id, written.Label);
            return;
        }

        var failed = outcome.Status != Verdicts.Pass;
        lock (_stateGate)
        {
            _completed++;
            if (failed)
            {
                _failed++;
            }
        }

        _logger.LogInformation(
            "Work item complete workId={WorkId} coordinator={CoordinatorId} iteration={Iteration} outcome={Outcome} verdicts={Verdicts} waitedMs={WaitedMs}",
            queued.WorkId, _coordinator.Id, _coordinator.Iteration, outcome.Status, outcome.Verdicts.Count, outcome.WaitedMs);
    }

    /// <summary>Releases the owned item and puts it back at the front of the queue (never owned twice).</summary>
    private async Task GiveBackAsync(QueuedWork queued, WorkItem item)
    {
        if (_coordinator.IsSuperseded)
        {
            return; // the item is no longer ours to release
        }

        SetPhase("releasing");
        var current = await _coordinator.Work.GetAsync(item.WorkId).ConfigureAwait(false) ?? item;
        var released = await _coordinator.Work.ReleaseAsync(current).ConfigureAwait(false);
        if (!released.Succeeded)
        {
            _logger.LogWarning("Work item not released workId={WorkId} coordinator={CoordinatorId} outcome={Outcome}",
                item.WorkId, _coordinator.Id, released.Label);
            return;
        }

        await _queue.ReturnAsync(_coordinator.SwarmId, queued, _coordinator.Id).ConfigureAwait(false);
        lock (_stateGate)
        {
            _released++;
        }

        _logger.LogInformation("Work item released workId={WorkId} coordinator={CoordinatorId}", item.WorkId, _coordinator.Id);
    }

    /// <summary>The inbox pump: verdicts go to the waiting item, anything else to <see cref="OtherSignalHandler"/>.</summary>
    private async Task PumpAsync(CancellationToken token)
    {
        while (!token.IsCancellationRequested)
        {
            try
            {
                await foreach (var received in _coordinator.Inbox.ReadAllAsync(token).ConfigureAwait(false))
                {
                    await RouteAsync(received).ConfigureAwait(false);
                }
            }
            catch (OperationCanceledException) when (token.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is RedisException or TimeoutException)
            {
                _logger.LogWarning("Redis error while reading the inbox coordinator={CoordinatorId}: {Error}", _coordinator.Id, RedisErrors.FirstClause(e));
            }

            if (!await DelayAsync(TimeSpan.FromSeconds(1), token).ConfigureAwait(false))
            {
                return;
            }
        }
    }

    private async Task RouteAsync(ReceivedSignal received)
    {
        var signal = received.Signal;
        if (signal.Type == SignalTypes.Completion && TryReadCompletion(signal.Payload, out var completion))
        {
            if (_pending.TryGetValue(completion!.WorkId, out var collector) && collector.TryAdd(signal.SenderId, signal.Iteration, completion))
            {
                return;
            }

            _logger.LogInformation("Late or unexpected verdict ignored workId={WorkId} validatorId={ValidatorId} iteration={Iteration}",
                completion.WorkId, signal.SenderId, signal.Iteration);
            return;
        }

        if (OtherSignalHandler is { } handler)
        {
            try
            {
                await handler(received).ConfigureAwait(false);
            }
#pragma warning disable CA1031 // an application handler's failure must not stop the pump
            catch (Exception e)
#pragma warning restore CA1031
            {
                _logger.LogWarning("Signal handler failed messageId={MessageId}: {Error}", signal.MessageId, e.Message);
            }

            return;
        }

        _logger.LogDebug("Signal not handled by the work loop messageId={MessageId} type={Type}", signal.MessageId, signal.Type);
    }

    private static bool TryReadCompletion(JsonElement? payload, out ValidationCompletion? completion)
    {
        completion = null;
        if (payload is not { ValueKind: JsonValueKind.Object } element)
        {
            return false;
        }

        try
        {
            completion = element.Deserialize<ValidationCompletion>(Json.Options);
        }
        catch (JsonException)
        {
            return false;
        }

        return completion is { Verdict: Verdicts.Pass or Verdicts.Fail } && Identity.Ids.IsValidName(completion.WorkId);
    }

    private List<string> Pick(List<string> live, int count)
    {
        lock (_randomGate)
        {
            // Partial Fisher–Yates: a uniform sample without repetition.
            for (var i = 0; i < Math.Min(count, live.Count); i++)
            {
                var j = _random.Next(i, live.Count);
                (live[i], live[j]) = (live[j], live[i]);
            }
        }

        return live.Take(count).ToList();
    }

    private double NextDouble()
    {
        lock (_randomGate)
        {
            return _random.NextDouble();
        }
    }

    private async Task<bool> DelayAsync(TimeSpan delay, CancellationToken token)
    {
        try
        {
            await Task.Delay(delay, _coordinator.Redis.Time, token).ConfigureAwait(false);
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    private void SetPhase(string phase)
    {
        lock (_stateGate)
        {
            _phase = phase;
        }
    }

    private void NoteError(string message)
    {
        lock (_stateGate)
        {
            _lastError = message;
            _lastErrorAt = _coordinator.Redis.Time.GetUtcNow().ToUnixTimeMilliseconds();
        }
    }

    private sealed record ValidationOutcome(string Status, IReadOnlyList<ValidationCompletion> Verdicts, IReadOnlyList<string> Missing, long WaitedMs);

    /// <summary>The verdicts of one item in hand, by validator; complete when every asked validator answered.</summary>
    private sealed class VerdictCollector(int iteration, IReadOnlyList<string> expected)
    {
        private readonly HashSet<string> _expected = new(expected, StringComparer.Ordinal);
        private readonly ConcurrentDictionary<string, ValidationCompletion> _received = new(StringComparer.Ordinal);
        private readonly TaskCompletionSource _allIn = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task AllIn => _allIn.Task;

        public bool TryAdd(string validatorId, int signalIteration, ValidationCompletion completion)
        {
            if (signalIteration != iteration || !_expected.Contains(validatorId) || !_received.TryAdd(validatorId, completion))
            {
                return false;
            }

            if (_received.Count == _expected.Count)
            {
                _allIn.TrySetResult();
            }

            return true;
        }

        public Dictionary<string, ValidationCompletion> Snapshot() => new(_received, StringComparer.Ordinal);
    }
}
