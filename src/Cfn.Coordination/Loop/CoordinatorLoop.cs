using System.Collections.Concurrent;
using System.Text.Json;
using Cfn.Coordination.Acks;
using Cfn.Coordination.Background;
using Cfn.Coordination.Loop;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Resilience;
using Cfn.Coordination.Signals;
using Cfn.Coordination.Validation;
using Cfn.Coordination.Wakeups;
using Cfn.Coordination.Work;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

// An entry point of the library: public at the namespace root (SPEC D22), its machinery stays in Loop.
namespace Cfn.Coordination;

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
    private readonly ConcurrentDictionary<string, ItemValidation> _pending = new(StringComparer.Ordinal);

    // Verdicts for items not (yet) in hand, newest last: a replacement's inbox can hold verdicts for the items handed to
    // it before its loop has adopted them (D16). Bounded; taken when the item's validation starts.
    private readonly LinkedList<(string WorkId, string SenderId, ValidationCompletion Completion)> _early = new();
    private readonly Lock _earlyGate = new();
    private const int MaxEarlyVerdicts = 256;
    private readonly Queue<string> _adoptedRecently = new();
    private long _adopted;
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
        _logger = logger ?? coordinator.Redis.LoggerFactory.CreateLogger<CoordinatorLoop>();
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
                    _completed, _failed, _released, _validatorTimeouts, _lastError, _lastErrorAt, _adopted, [.. _adoptedRecently]);
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
            logger ?? redis.LoggerFactory.CreateLogger<ExternalCallHandler>())
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
        // Wake-driven (it waits for validators, work and verdicts), so only its stopping counts against readiness.
        var health = _coordinator.Redis.Loops.Register(LoopNames.WorkLoop, _coordinator.Id, interval: null);
        string? ended = null;
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

                    // Work handed to this coordinator (a dead one's, or an earlier instance's under this ID) comes before new work (D16).
                    if (await AdoptOneAsync(token).ConfigureAwait(false))
                    {
                        continue;
                    }

                    SetPhase("waiting-for-work");
                    var item = await _queue.TakeAsync(_coordinator.SwarmId, token, _coordinator.Id).ConfigureAwait(false);
                    await ProcessAsync(item, adopted: null, token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (token.IsCancellationRequested)
                {
                    break;
                }
                catch (CoordinatorSupersededException)
                {
                    break;
                }
                catch (Exception e) when (RedisErrors.IsTransient(e) || e is SignalDeliveryException)
                {
                    NoteError("Redis error in coordinator loop: " + RedisErrors.FirstClause(e));
                    _logger.LogWarning("Redis error in coordinator loop coordinator={CoordinatorId}: {Error}", _coordinator.Id, RedisErrors.FirstClause(e));
                    if (!await DelayAsync(_options.NoValidatorsRetryInterval, token).ConfigureAwait(false))
                    {
                        break;
                    }

                    await RequeueTakenAsync().ConfigureAwait(false); // an item taken when Redis failed is not lost

                }
#pragma warning disable CA1031 // one bad item or pass must not end the loop: logged, counted, and the loop goes on
                catch (Exception e) when (!token.IsCancellationRequested)
#pragma warning restore CA1031
                {
                    NoteError($"{e.GetType().Name} in coordinator loop: {e.Message}");
                    health.PassFailed(e, _logger);
                    if (!await DelayAsync(_options.NoValidatorsRetryInterval, token).ConfigureAwait(false))
                    {
                        break;
                    }

                    await RequeueTakenAsync().ConfigureAwait(false);
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
            // Nothing is in hand now, so whatever is still in this ID's taken list was taken and never recorded (a take
            // whose reply was lost as the process stopped): it goes back to the queue now, not when the ID next starts,
            // which a replacement that stops gracefully never does. A newer instance under this ID that is recording the
            // same item meanwhile is safe: the item's work-owner marker makes the second taker skip it.
            await RequeueTakenAsync().ConfigureAwait(false);
            if (!_coordinator.IsSuperseded)
            {
                await RequeueOwnedAsync().ConfigureAwait(false);
            }

            health.Ended(token.IsCancellationRequested, _logger, ended);
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

    /// <summary>
    /// Adopts and works one item listed in this coordinator's owner index that it does not hold yet (D16); false when
    /// there is none. An item whose adoption is refused (completed meanwhile, or someone else's now) is skipped.
    /// </summary>
    private async Task<bool> AdoptOneAsync(CancellationToken token)
    {
        foreach (var candidate in await _coordinator.Work.AdoptableAsync().ConfigureAwait(false))
        {
            token.ThrowIfCancellationRequested();
            var adopted = await _coordinator.Work.AdoptAsync(candidate.WorkId).ConfigureAwait(false);
            if (!adopted.Succeeded || adopted.Item is null)
            {
                _logger.LogWarning("Work item not adopted workId={WorkId} coordinator={CoordinatorId} outcome={Outcome}",
                    candidate.WorkId, _coordinator.Id, adopted.Label);
                continue;
            }

            var item = adopted.Item;
            var input = ItemValidation.InputOf(item);
            lock (_stateGate)
            {
                _adopted++;
                _adoptedRecently.Enqueue(item.WorkId);
                while (_adoptedRecently.Count > 20)
                {
                    _adoptedRecently.Dequeue();
                }
            }

            _logger.LogInformation("Work item adopted workId={WorkId} coordinator={CoordinatorId} from={From} status={Status}",
                item.WorkId, _coordinator.Id, candidate.TransferredFrom ?? "earlier instance", candidate.Status);
            var queued = new QueuedWork { WorkId = item.WorkId, Input = input, EnqueuedAt = item.StartedAt };
            await ProcessAsync(queued, item, token).ConfigureAwait(false);
            return true;
        }

        return false;
    }

    private async Task ProcessAsync(QueuedWork queued, WorkItem? adopted, CancellationToken token)
    {
        lock (_stateGate)
        {
            _currentWorkId = queued.WorkId;
            _phase = "claiming";
        }

        WorkItem? item = adopted;
        ItemValidation? validation = null;
        try
        {
            if (adopted is null)
            {
                item = await OwnAsync(queued).ConfigureAwait(false);
                if (item is null && _coordinator.IsSuperseded)
                {
                    // Refused because this instance was superseded: the item is not done, so it goes back to the queue.
                    var returned = await _queue.UntakeAsync(_coordinator.SwarmId, _coordinator.Id, queued).ConfigureAwait(false);
                    _logger.LogWarning("Work item given back by a superseded coordinator workId={WorkId} coordinator={CoordinatorId} requeued={Requeued}",
                        queued.WorkId, _coordinator.Id, returned);
                    return;
                }

                // Recorded (its K10 item is ours) or skipped: either way it no longer needs the taken list's safety net.
                await _queue.RecordedAsync(_coordinator.SwarmId, _coordinator.Id, queued).ConfigureAwait(false);
            }

            if (item is null)
            {
                return;
            }

            if (token.IsCancellationRequested)
            {
                await GiveBackAsync(queued, item).ConfigureAwait(false);
                return;
            }

            if (queued.Input.ValueKind == JsonValueKind.Undefined)
            {
                // An adopted item that lost its input cannot be validated: it is completed as failed rather than left.
                validation = ItemValidation.Of(_coordinator.Work, item, default, resume: false, _logger);
                await CompleteAsync(validation, queued, new ValidationOutcome("failed", [], [], 0, Error: "work item has no input"), null)
                    .ConfigureAwait(false);
                return;
            }

            validation = ItemValidation.Of(_coordinator.Work, item, queued.Input, resume: adopted is not null, _logger);
            var iteration = Interlocked.Increment(ref _iteration);
            await _coordinator.SetIterationAsync(iteration, "validation").ConfigureAwait(false);
            _coordinator.IsWorking = true;
            var external = validation.Resumed ? null : await MaybeCallExternalAsync(token).ConfigureAwait(false);
            SetPhase("validation");
            var result = await ValidateAsync(queued, validation, iteration, token).ConfigureAwait(false);
            if (result is null)
            {
                await GiveBackAsync(queued, validation.Item).ConfigureAwait(false); // cancelled, or no validator to ask
                return;
            }

            SetPhase("completing");
            await CompleteAsync(validation, queued, result, external).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested && item is not null)
        {
            await GiveBackAsync(queued, validation?.Item ?? item).ConfigureAwait(false);
        }
        catch (Exception e) when (item is not null && (RedisErrors.IsTransient(e) || e is SignalDeliveryException))
        {
            // Redis trouble mid-item: give it back rather than leave it owned until its TTL.
            NoteError($"work item interrupted workId={queued.WorkId}: {RedisErrors.FirstClause(e)}");
            _logger.LogWarning("Work item interrupted workId={WorkId} coordinator={CoordinatorId}: {Error}",
                queued.WorkId, _coordinator.Id, RedisErrors.FirstClause(e));
            try
            {
                await GiveBackAsync(queued, validation?.Item ?? item).ConfigureAwait(false);
            }
            catch (Exception again) when (RedisErrors.IsTransient(again))
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

    /// <summary>
    /// A stopping instance gives back what is still listed as its own and it will not finish: items transferred to it
    /// and never adopted (a replacement stopped right after its start). Nobody else would: a graceful stop removes its
    /// heartbeat, so it is never declared dead and its work never transferred (D16). A superseded instance does not:
    /// its items belong to whoever replaced it.
    /// </summary>
    private async Task RequeueOwnedAsync()
    {
        try
        {
            var transfer = new Recovery.WorkTransfer(_coordinator.Redis, new Recovery.RecoveryMetrics(Prometheus.Metrics.NewCustomRegistry()), _logger);
            await transfer.RequeueAllAsync(_coordinator.SwarmId, _coordinator.Id, "owner_stopped").ConfigureAwait(false);
        }
        catch (Exception e) when (RedisErrors.IsTransient(e) || e is ObjectDisposedException)
        {
            _logger.LogWarning("Could not give back owned work coordinator={CoordinatorId}: {Error}", _coordinator.Id, RedisErrors.FirstClause(e));
        }
    }

    private async Task RequeueTakenAsync()
    {
        try
        {
            await _queue.RequeueTakenAsync(_coordinator.SwarmId, _coordinator.Id).ConfigureAwait(false);
        }
        catch (Exception e) when (RedisErrors.IsTransient(e) || e is ObjectDisposedException)
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

        if (created is { Outcome: WorkWriteOutcome.OwnedElsewhere, Owner: { } owner } && owner != queued.ReleasedBy)
        {
            // The work ID's record is under another coordinator's key (the item was queued again while its record lived
            // on, e.g. a crash's taken list put back after a hand-over): claim it if it was given back, else leave it there.
            var claim = await work.ClaimAsync(owner, queued.WorkId).ConfigureAwait(false);
            return claim.Succeeded ? claim.Item : Skip(queued, claim);
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
    /// Sends the validation requests and waits for every ACK and verdict; null when cancelled or when no validator could
    /// be asked (the caller gives the item back). For an adopted item (D16) only the slots whose request was never ACKed
    /// are asked again; verdicts already recorded count, and those still on their way arrive here. A request whose
    /// validator died with nobody to take its place (<c>peer_dead</c>, D18) goes to another live validator.
    /// </summary>
    private async Task<ValidationOutcome?> ValidateAsync(QueuedWork queued, ItemValidation validation, int iteration, CancellationToken token)
    {
        var time = _coordinator.Redis.Time;
        var started = time.GetTimestamp();
        var timeout = ValidationTimeout;
        List<(int Slot, string ValidatorId)> toSend;
        if (!validation.Resumed)
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

            toSend = picked.Select((v, i) => (i, v)).ToList();
        }
        else
        {
            toSend = await UnackedSlotsAsync(validation).ConfigureAwait(false);
            _logger.LogInformation("Validation resumed workId={WorkId} coordinator={CoordinatorId} slots={Slots} askedAgain={Again}",
                queued.WorkId, _coordinator.Id, validation.Slots.Count, toSend.Count);
        }

        List<(string SenderId, ValidationCompletion Completion)> early;
        lock (_earlyGate)
        {
            _pending[queued.WorkId] = validation;
            early = _early.Where(e => e.WorkId == queued.WorkId).Select(e => (e.SenderId, e.Completion)).ToList();
            for (var node = _early.First; node is not null;)
            {
                var next = node.Next;
                if (node.Value.WorkId == queued.WorkId)
                {
                    _early.Remove(node);
                }

                node = next;
            }
        }

        foreach (var (senderId, completion) in early)
        {
            await validation.TryAddVerdictAsync(senderId, completion).ConfigureAwait(false);
        }

        try
        {
            var payload = JsonSerializer.SerializeToElement(new ValidationRequest
            {
                WorkId = queued.WorkId,
                Input = queued.Input,
                RequestedAt = time.GetUtcNow().ToUnixTimeMilliseconds(),
            }, Json.Options);
            var awaiting = new Dictionary<int, (string ValidatorId, string MessageId)>();
            IReadOnlyList<string> noAck = [];
            var forced = false;
            var round = 0;
            var deadValidators = new HashSet<string>(StringComparer.Ordinal);
            while (true)
            {
                for (; ; round++)
                {
                    if (toSend.Count > 0)
                    {
                        if (round > 0 || validation.Resumed)
                        {
                            toSend = await ReassignAsync(validation, toSend, deadValidators).ConfigureAwait(false);
                        }

                        // Recorded in the item before anything is sent, so a replacement knows every request that may be out.
                        foreach (var (slot, validatorId, key, planned) in await validation.PlanAsync(toSend, _coordinator.Id, iteration).ConfigureAwait(false))
                        {
                            var sent = await _coordinator.Signals.SendAsync(validatorId, SignalTypes.Validation, iteration, payload, idempotencyKey: key)
                                .ConfigureAwait(false);
                            if (sent.MessageId != planned)
                            {
                                await validation.RedirectedAsync(slot, ReceiverOf(sent.MessageId) ?? validatorId, sent.MessageId).ConfigureAwait(false);
                            }

                            awaiting[slot] = (ReceiverOf(sent.MessageId) ?? validatorId, sent.MessageId);
                        }
                    }

                    var open = validation.Open().Select(o => o.Slot).ToHashSet();
                    var waitFor = awaiting.Where(a => open.Contains(a.Key)).ToList();
                    if (waitFor.Count == 0)
                    {
                        break;
                    }

                    var remainingForAcks = timeout - time.GetElapsedTime(started);
                    var acks = await _coordinator.Waiter.WaitForAcksAsync(
                        waitFor.Select(a => KeyValuePair.Create(a.Value.ValidatorId, a.Value.MessageId)),
                        remainingForAcks > TimeSpan.Zero ? remainingForAcks : TimeSpan.FromMilliseconds(1), token).ConfigureAwait(false);
                    var ackedSlots = waitFor.Where(a => !acks.Missing.Contains(a.Value.ValidatorId)).Select(a => a.Key).ToList();
                    foreach (var slot in ackedSlots)
                    {
                        awaiting.Remove(slot); // ACKed: its verdict is on its way
                    }

                    // Recorded in the item: a replacement that adopts it must not ask again what is being validated (D16).
                    await validation.MarkAckedAsync(ackedSlots).ConfigureAwait(false);

                    noAck = acks.Missing;
                    if (acks.Status == AckWaitStatus.Cancelled)
                    {
                        token.ThrowIfCancellationRequested(); // the token includes the coordinator's superseded token
                        return null;
                    }

                    forced = acks.Status == AckWaitStatus.Forced;
                    var dead = DeadPeersOf(acks);
                    if (dead.Count > 0 && round < MaxReassignRounds && time.GetElapsedTime(started) < timeout)
                    {
                        // Nobody will answer for these validators (D18): ask others with the time that is left.
                        deadValidators.UnionWith(dead);
                        toSend = waitFor.Where(a => dead.Contains(a.Value.ValidatorId)).Select(a => (a.Key, a.Value.ValidatorId)).ToList();
                        foreach (var (slot, _) in toSend)
                        {
                            awaiting.Remove(slot);
                        }

                        _logger.LogWarning("Validators dead with no replacement, asking others workId={WorkId} coordinator={CoordinatorId} dead={Dead}",
                            queued.WorkId, _coordinator.Id, string.Join(',', dead));
                        continue;
                    }

                    break;
                }

                var remaining = timeout - time.GetElapsedTime(started);
                if (forced || remaining <= TimeSpan.Zero)
                {
                    break;
                }

                // A validator ACKs on arrival and may die before it answers: with a replacement coming, the accepted requests
                // reach it (they stay pending in the dead validator's inbox and are handed over); with none, they are asked
                // of another validator like an unACKed one, or the item times out when the death notice is lost.
                var diedAfterAck = await WaitForVerdictsAsync(validation, remaining, token).ConfigureAwait(false);
                if (diedAfterAck.Count == 0 || round >= MaxReassignRounds)
                {
                    break;
                }

                deadValidators.UnionWith(diedAfterAck);
                var others = (await _validators.LiveAsync(_options.ValidatorStaleThreshold).ConfigureAwait(false))
                    .Count(v => v != _coordinator.Id && !deadValidators.Contains(v));
                if (others == 0)
                {
                    // Nobody else to ask: the item waits out its timeout (the same ID started again would still answer).
                    _logger.LogWarning("Validators died after ACK with no replacement and none other live workId={WorkId} coordinator={CoordinatorId} dead={Dead}",
                        queued.WorkId, _coordinator.Id, string.Join(',', diedAfterAck));
                    await WaitAllInAsync(validation, timeout - time.GetElapsedTime(started), token).ConfigureAwait(false);
                    break;
                }

                toSend = validation.Open().Where(o => diedAfterAck.Contains(o.ValidatorId)).Select(o => (o.Slot, o.ValidatorId)).ToList();
                _logger.LogWarning("Validators died after ACK with no replacement, asking others workId={WorkId} coordinator={CoordinatorId} dead={Dead}",
                    queued.WorkId, _coordinator.Id, string.Join(',', diedAfterAck));
                round++;
            }

            var slots = validation.Slots;
            var verdicts = slots.Where(s => s.Verdict is not null).Select(s => s.Verdict!).ToList();
            var missing = slots.Where(s => s.Verdict is null).Select(s => s.ValidatorId).ToList();
            var waitedMs = (long)time.GetElapsedTime(started).TotalMilliseconds;
            var status = forced ? "forced"
                : missing.Count > 0 ? "timeout"
                : verdicts.All(v => v.Passed) ? Verdicts.Pass : Verdicts.Fail;
            if (missing.Count > 0 && !forced)
            {
                await RecordTimeoutsAsync(queued.WorkId, missing, noAck, waitedMs).ConfigureAwait(false);
            }

            return new ValidationOutcome(status, verdicts, missing, waitedMs);
        }
        finally
        {
            _pending.TryRemove(KeyValuePair.Create(queued.WorkId, validation));
        }
    }

    /// <summary>How long an unconfirmed completion waits for a primary with its replicas before it is read back (a client moves to a new primary within about 10 s).</summary>
    private static readonly TimeSpan SettlePatience = TimeSpan.FromSeconds(30);

    /// <summary>Rounds of asking other validators for requests whose validator died with no replacement.</summary>
    private const int MaxReassignRounds = 3;

    /// <summary>Waits until every verdict is in or <paramref name="remaining"/> passes.</summary>
    private async Task WaitAllInAsync(ItemValidation validation, TimeSpan remaining, CancellationToken token)
    {
        if (remaining <= TimeSpan.Zero)
        {
            return;
        }

        try
        {
            await validation.AllIn.WaitAsync(remaining, _coordinator.Redis.Time, token).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            // some verdicts are missing: the caller reports them
        }
    }

    /// <summary>
    /// Waits until every verdict is in or <paramref name="remaining"/> passes. Returns early with the validators of
    /// open slots that died after their ACK with nothing to take their place (a death notice Redis bore out, D18): their
    /// requests must go to others. Empty when the verdicts are all in or the time is up. Push only: a lost notice
    /// leaves the item to its timeout.
    /// </summary>
    private async Task<IReadOnlyList<string>> WaitForVerdictsAsync(ItemValidation validation, TimeSpan remaining, CancellationToken token)
    {
        var hub = _coordinator.Redis.Wakeups;
        var watched = validation.Open().Select(o => o.ValidatorId).ToHashSet(StringComparer.Ordinal);
        var died = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        void OnFate(PeerFate fate)
        {
            if (fate.Kind == PeerFateKind.Dead && watched.Contains(fate.PeerId))
            {
                died.TrySetResult();
            }
        }

        List<string> Dead() => [.. watched.Where(v => hub.ConfirmedFate(v) is { Kind: PeerFateKind.Dead })];

        hub.PeerFateConfirmed += OnFate;
        try
        {
            // A death confirmed between the ACK and now counts too.
            if (Dead() is { Count: > 0 } already)
            {
                return already;
            }

            await Task.WhenAny(validation.AllIn, died.Task).WaitAsync(remaining, _coordinator.Redis.Time, token).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            return []; // some verdicts are missing: the caller reports them
        }
        finally
        {
            hub.PeerFateConfirmed -= OnFate;
        }

        return validation.AllIn.IsCompleted ? [] : Dead();
    }

    /// <summary>The receiver segment of a message ID (<c>{sender}:{receiver}:…</c>).</summary>
    private static string? ReceiverOf(string messageId)
    {
        var parts = messageId.Split(':');
        return parts.Length > 1 && Identity.Ids.IsValidName(parts[1]) ? parts[1] : null;
    }

    /// <summary>The awaited peers the wait found dead with nothing coming for them (D18).</summary>
    private static IReadOnlyList<string> DeadPeersOf(AckWaitResult acks) =>
        acks.Status == AckWaitStatus.PeerDead ? acks.DeadPeers : [];

    /// <summary>
    /// Of an adopted item's open slots, those whose requests were never ACKed by the validator asked: the earlier owner's
    /// requests are void (a validator skips a request whose requester is gone), so they are asked again. One MGET.
    /// </summary>
    private async Task<List<(int Slot, string ValidatorId)>> UnackedSlotsAsync(ItemValidation validation)
    {
        var open = validation.Open().Where(o => !o.Acked).ToList();
        var keys = open.SelectMany(o => o.MessageIds.Where(m => Identity.Ids.IsValidSignalId(m)).Select(m => (o.Slot, Key: Keys.Ack(o.ValidatorId, m)))).ToList();
        var values = keys.Count == 0 ? [] : await _coordinator.Redis.Database.StringGetAsync(keys.Select(k => k.Key).ToArray()).ConfigureAwait(false);
        var acked = keys.Where((_, i) => !values[i].IsNull).Select(k => k.Slot).ToHashSet();
        return open.Where(o => !acked.Contains(o.Slot)).Select(o => (o.Slot, o.ValidatorId)).ToList();
    }

    /// <summary>
    /// Keeps each slot's validator when it is still live, else gives the slot another live one not asked for this item.
    /// Validators known dead (<paramref name="dead"/>) count as not live: the validator registry keeps a crashed one
    /// until its entry goes stale.
    /// </summary>
    private async Task<List<(int Slot, string ValidatorId)>> ReassignAsync(
        ItemValidation validation, List<(int Slot, string ValidatorId)> slots, HashSet<string> dead)
    {
        var live = (await _validators.LiveAsync(_options.ValidatorStaleThreshold).ConfigureAwait(false))
            .Where(v => v != _coordinator.Id && !dead.Contains(v)).ToList();
        var inUse = validation.Slots.Select(s => s.ValidatorId).ToHashSet(StringComparer.Ordinal);
        var spare = Pick(live.Where(v => !inUse.Contains(v)).ToList(), live.Count);
        var result = new List<(int, string)>();
        foreach (var (slot, validatorId) in slots)
        {
            if (live.Contains(validatorId))
            {
                result.Add((slot, validatorId));
            }
            else if (spare.Count > 0)
            {
                result.Add((slot, spare[0]));
                spare.RemoveAt(0);
            }
            else if (live.Count > 0)
            {
                result.Add((slot, Pick(live, 1)[0])); // fewer live validators than slots: one answers twice
            }
            else
            {
                result.Add((slot, validatorId)); // nobody live: ask the same one; its replacement gets it
            }
        }

        return result;
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
            catch (Exception e) when (RedisErrors.IsTransient(e))
            {
                _logger.LogWarning("Validator timeout not recorded validatorId={ValidatorId}: {Error}", validator, e.Message);
            }
        }
    }

    private async Task CompleteAsync(ItemValidation validation, QueuedWork queued, ValidationOutcome outcome, object? external)
    {
        var result = JsonSerializer.SerializeToElement(new
        {
            input = queued.Input,
            outcome = outcome.Status,
            verdicts = outcome.Verdicts,
            missing = outcome.Missing,
            waitedMs = outcome.WaitedMs,
            external,
            error = outcome.Error,
            adopted = validation.Resumed ? true : (bool?)null,
        }, Json.Options);
        var written = await validation.CompleteAsync(result).ConfigureAwait(false);
        if (written.Succeeded && !await _coordinator.Redis.Replication.ConfirmAsync("work_complete").ConfigureAwait(false))
        {
            // No replica has the completion yet: a failover now could drop it, and the server that took it may be an old
            // primary a failover left behind. Once a primary with its replicas answers (the client has moved on if it
            // had to), read the item back from it rather than trust the reply.
            if (!await _coordinator.Redis.Replication.SettleAsync(SettlePatience).ConfigureAwait(false))
            {
                _logger.LogWarning("Work item completion still not confirmed by a replica after {Seconds}s workId={WorkId} coordinator={CoordinatorId}: reading it back anyway",
                    SettlePatience.TotalSeconds, queued.WorkId, _coordinator.Id);
            }

            var stored = await _coordinator.Work.GetAsync(queued.WorkId).ConfigureAwait(false);
            written = stored switch
            {
                { Status: WorkStatus.Completed } => written,
                null => new WorkWriteResult(WorkWriteOutcome.NotFound, null),
                _ => new WorkWriteResult(WorkWriteOutcome.Conflict, stored), // still ours, completion lost: given back below
            };
        }

        if (written.Outcome == WorkWriteOutcome.NotFound && !_coordinator.IsSuperseded)
        {
            // The item's record is gone although this instance owns it: a failover dropped writes the old primary had
            // acknowledged (its creation, or this completion). The input is in hand: the item goes back to the front of
            // the queue and is validated again, rather than being lost.
            _logger.LogWarning("Work item record lost (a Redis failover dropped its writes) workId={WorkId} coordinator={CoordinatorId}: back to the front of the queue",
                queued.WorkId, _coordinator.Id);
            await _queue.ReturnAsync(_coordinator.SwarmId, queued with { ReleasedBy = null }, null).ConfigureAwait(false);
            return;
        }

        if (written.Outcome == WorkWriteOutcome.Conflict && !_coordinator.IsSuperseded)
        {
            // The stored item is not the one this instance last wrote: a failover dropped some of its writes. It is
            // still this instance's, so it is released and given back to the front of the queue to be done again,
            // rather than left in progress for ever.
            _logger.LogWarning("Work item changed under its owner (a Redis failover dropped its writes) workId={WorkId} coordinator={CoordinatorId}: given back to the queue",
                queued.WorkId, _coordinator.Id);
            await GiveBackAsync(queued, validation.Item).ConfigureAwait(false);
            return;
        }

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
        var health = _coordinator.Redis.Loops.Register(LoopNames.InboxPump, _coordinator.Id, interval: null);
        try
        {
            await PumpPassesAsync(health, token).ConfigureAwait(false);
        }
        finally
        {
            health.Ended(token.IsCancellationRequested || _coordinator.IsSuperseded, _logger);
        }
    }

    private async Task PumpPassesAsync(LoopHandle health, CancellationToken token)
    {
        while (!token.IsCancellationRequested)
        {
            try
            {
                await foreach (var received in _coordinator.Inbox.ReadAllAsync(token).ConfigureAwait(false))
                {
                    try
                    {
                        await RouteAsync(received).ConfigureAwait(false);
                    }
                    catch (Exception e) when (LoopHealth.IsRecordFault(e))
                    {
                        // One signal that cannot be routed is skipped (consumed) rather than ending the pump.
                        health.RecordFailed(_logger, $"{Keys.Inbox(_coordinator.Id)} {received.Signal.MessageId}", e);
                    }
                }
            }
            catch (OperationCanceledException) when (token.IsCancellationRequested)
            {
                return;
            }
            catch (CoordinatorSupersededException)
            {
                return;
            }
            catch (Exception e) when (RedisErrors.IsTransient(e))
            {
                _logger.LogWarning("Redis error while reading the inbox coordinator={CoordinatorId}: {Error}", _coordinator.Id, RedisErrors.FirstClause(e));
            }
#pragma warning disable CA1031 // the pump feeds the work loop its verdicts: it must outlive any one failure
            catch (Exception e)
#pragma warning restore CA1031
            {
                health.PassFailed(e, _logger);
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
            ItemValidation? validation;
            lock (_earlyGate)
            {
                if (!_pending.TryGetValue(completion!.WorkId, out validation))
                {
                    // Not in hand: possibly an item handed to this coordinator that its loop has not adopted yet. Kept
                    // for when its validation starts; dropped (oldest first) beyond the bound.
                    _early.AddLast((completion.WorkId, signal.SenderId, completion));
                    if (_early.Count > MaxEarlyVerdicts)
                    {
                        _early.RemoveFirst();
                    }

                    _logger.LogInformation("Verdict for an item not in hand kept workId={WorkId} validatorId={ValidatorId}", completion.WorkId, signal.SenderId);
                    return;
                }
            }

            if (await validation.TryAddVerdictAsync(signal.SenderId, completion).ConfigureAwait(false))
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

    private sealed record ValidationOutcome(
        string Status, IReadOnlyList<ValidationCompletion> Verdicts, IReadOnlyList<string> Missing, long WaitedMs, string? Error = null);

}
