using System.Text.Json;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Signals;
using Cfn.Coordination.Validation;
using Cfn.Coordination.Work;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Cfn.Coordination.Loop;

/// <summary>
/// The validation of one work item in hand, kept in the item itself (K10 <c>data.validation</c>) so that whoever owns the
/// item next can resume it (D16): which validator was asked in each slot and under which message IDs (recorded before
/// the requests are sent), and each verdict as it arrives (recorded before its signal is consumed from the inbox). A
/// replacement that adopts the item asks again only where no request was ACKed, and takes verdicts that were already
/// in, or that arrive later addressed to the dead owner (they are redirected to it), by request message ID.
/// </summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA1001:Types that own disposable fields should be disposable",
    Justification = "The gate never allocates a wait handle (only WaitAsync/Wait/Release), and the inbox pump may still hold the object after its item is done.")]
internal sealed class ItemValidation
{
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly TaskCompletionSource _allIn = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly WorkItemStore _store;
    private readonly ILogger _logger;
    private List<Slot> _slots;
    private int _requests;

    private ItemValidation(WorkItemStore store, WorkItem item, JsonElement input, Progress? progress, ILogger logger)
    {
        _store = store;
        _logger = logger;
        Item = item;
        Input = input;
        _slots = progress?.Slots?.Where(s => Identity.Ids.IsValidName(s.ValidatorId)).ToList() ?? [];
        _requests = progress?.Requests ?? _slots.Sum(s => s.MessageIds.Count);
        Resumed = _slots.Count > 0;
        CheckAllIn();
    }

    /// <summary>The item as last written (the compare-and-set of every write compares against it).</summary>
    public WorkItem Item { get; private set; }

    /// <summary>What the validators validate.</summary>
    public JsonElement Input { get; }

    /// <summary>True when the item came with a validation in progress (adopted): requests may already be out.</summary>
    public bool Resumed { get; }

    /// <summary>Completes when every slot has its verdict.</summary>
    public Task AllIn => _allIn.Task;

    /// <summary>A snapshot of the slots.</summary>
    public IReadOnlyList<Slot> Slots
    {
        get
        {
            _gate.Wait();
            try
            {
                return [.. _slots];
            }
            finally
            {
                _gate.Release();
            }
        }
    }

    /// <summary>
    /// The validation of <paramref name="item"/>: resumed from its stored progress when <paramref name="resume"/> is set
    /// (an adopted item), else a fresh one (a stale plan of a coordinator that gave the item back is dropped).
    /// </summary>
    public static ItemValidation Of(WorkItemStore store, WorkItem item, JsonElement input, bool resume, ILogger logger)
    {
        Progress? progress = null;
        if (resume && item.Data is { ValueKind: JsonValueKind.Object } data && data.TryGetProperty("validation", out var stored))
        {
            try
            {
                progress = stored.Deserialize<Progress>(Json.Options);
            }
            catch (JsonException e)
            {
                logger.LogWarning("Unreadable validation progress ignored workId={WorkId}: {Error}", item.WorkId, e.Message);
            }
        }

        return new ItemValidation(store, item, input, progress, logger);
    }

    /// <summary>The work item's input as stored with it (<c>data.input</c>), or undefined.</summary>
    public static JsonElement InputOf(WorkItem item) =>
        item.Data is { ValueKind: JsonValueKind.Object } data && data.TryGetProperty("input", out var input) ? input.Clone() : default;

    /// <summary>
    /// Assigns a new request in each slot of <paramref name="assignments"/> (a new slot past the last one) and records
    /// the plan in the item before anything is sent. Returns each slot's validator with the idempotency key of its request.
    /// </summary>
    public async Task<IReadOnlyList<(int Slot, string ValidatorId, string Key, string MessageId)>> PlanAsync(
        IReadOnlyList<(int Slot, string ValidatorId)> assignments, string senderId, int iteration)
    {
        var planned = new List<(int, string, string, string)>();
        await _gate.WaitAsync().ConfigureAwait(false);
        try
        {
            foreach (var (slot, validatorId) in assignments)
            {
                var key = $"{Item.WorkId}-{++_requests}";
                var messageId = $"{senderId}:{validatorId}:{SignalTypes.Validation}:{iteration}:{key}";
                if (slot >= _slots.Count)
                {
                    _slots.Add(new Slot { ValidatorId = validatorId, MessageIds = [messageId] });
                }
                else
                {
                    _slots[slot] = _slots[slot] with { ValidatorId = validatorId, MessageIds = [.. _slots[slot].MessageIds, messageId], Acked = false };
                }

                planned.Add((Math.Min(slot, _slots.Count - 1), validatorId, key, messageId));
            }

            await SaveLockedAsync().ConfigureAwait(false);
        }
        finally
        {
            _gate.Release();
        }

        return planned;
    }

    /// <summary>A request was delivered elsewhere than planned (its receiver had been replaced): the slot follows it.</summary>
    public async Task RedirectedAsync(int slot, string receiverId, string messageId)
    {
        await _gate.WaitAsync().ConfigureAwait(false);
        try
        {
            _slots[slot] = _slots[slot] with { ValidatorId = receiverId, MessageIds = [.. _slots[slot].MessageIds, messageId] };
            await SaveLockedAsync().ConfigureAwait(false);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// Takes a verdict for this item: the slot whose request it answers (by request message ID; by validator for a
    /// verdict that names none), if that slot has none yet. Recorded in the item before returning, so the verdict
    /// signal can be consumed safely. False when it answers nothing open here.
    /// </summary>
    public async Task<bool> TryAddVerdictAsync(string senderId, ValidationCompletion completion)
    {
        await _gate.WaitAsync().ConfigureAwait(false);
        try
        {
            var index = completion.RequestMessageId is { } request
                ? _slots.FindIndex(s => s.MessageIds.Contains(request, StringComparer.Ordinal))
                : _slots.FindIndex(s => s.ValidatorId == senderId && s.Verdict is null);
            if (index < 0 || _slots[index].Verdict is not null)
            {
                return false;
            }

            _slots[index] = _slots[index] with { Verdict = completion };
            await SaveLockedAsync().ConfigureAwait(false);
            CheckAllIn();
            return true;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Completes the item with <paramref name="result"/> (under the same gate as the verdict writes).</summary>
    public async Task<WorkWriteResult> CompleteAsync(JsonElement result)
    {
        await _gate.WaitAsync().ConfigureAwait(false);
        try
        {
            var written = await _store.CompleteAsync(Item, result).ConfigureAwait(false);
            if (written is { Succeeded: true, Item: { } item })
            {
                Item = item;
            }

            return written;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Records that the validators of <paramref name="slots"/> ACKed their requests (one write, only when something changed).</summary>
    public async Task MarkAckedAsync(IEnumerable<int> slots)
    {
        await _gate.WaitAsync().ConfigureAwait(false);
        try
        {
            var changed = false;
            foreach (var slot in slots.Where(s => s >= 0 && s < _slots.Count && !_slots[s].Acked))
            {
                _slots[slot] = _slots[slot] with { Acked = true };
                changed = true;
            }

            if (changed)
            {
                await SaveLockedAsync().ConfigureAwait(false);
            }
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>The slots not yet answered: the validator asked, every request's message ID, and whether one was ACKed.</summary>
    public IReadOnlyList<(int Slot, string ValidatorId, IReadOnlyList<string> MessageIds, bool Acked)> Open()
    {
        _gate.Wait();
        try
        {
            return _slots.Select((s, i) => (Slot: i, s.ValidatorId, MessageIds: (IReadOnlyList<string>)s.MessageIds, s.Acked, s.Verdict))
                .Where(s => s.Verdict is null)
                .Select(s => (s.Slot, s.ValidatorId, s.MessageIds, s.Acked))
                .ToList();
        }
        finally
        {
            _gate.Release();
        }
    }

    private void CheckAllIn()
    {
        if (_slots.Count > 0 && _slots.All(s => s.Verdict is not null))
        {
            _allIn.TrySetResult();
        }
    }

    /// <summary>Writes the progress into the item; a refused or failed write is logged and the validation goes on.</summary>
    private async Task SaveLockedAsync()
    {
        var data = JsonSerializer.SerializeToElement(new StoredData(Input, new Progress { Slots = _slots, Requests = _requests }), Json.Options);
        try
        {
            var written = await _store.ProgressAsync(Item, data).ConfigureAwait(false);
            if (written is { Succeeded: true, Item: { } item })
            {
                Item = item;
                return;
            }

            _logger.LogWarning("Validation progress not recorded workId={WorkId} outcome={Outcome}", Item.WorkId, written.Label);
        }
        catch (Exception e) when (RedisErrors.IsTransient(e))
        {
            _logger.LogWarning("Validation progress not recorded workId={WorkId}: {Error}", Item.WorkId, RedisErrors.FirstClause(e));
        }
    }

    /// <summary>The item's data: its input and the validation in progress.</summary>
    private sealed record StoredData(JsonElement Input, Progress Validation);

    /// <summary>K10 <c>data.validation</c>.</summary>
    internal sealed record Progress
    {
        /// <summary>The slots, one per validator asked.</summary>
        public List<Slot>? Slots { get; init; }

        /// <summary>Requests sent so far (numbers the idempotency keys, so each request has its own message ID).</summary>
        public int Requests { get; init; }
    }

    /// <summary>One validator's part of the validation.</summary>
    internal sealed record Slot
    {
        /// <summary>The validator asked last in this slot.</summary>
        public required string ValidatorId { get; init; }

        /// <summary>Every request of this slot, oldest first; a verdict answering any of them fills the slot.</summary>
        public required List<string> MessageIds { get; init; }

        /// <summary>
        /// True once the validator ACKed a request of this slot (recorded when the wait returns): the ACK keys themselves go
        /// with a dead coordinator's cleanup, and a replacement must not ask again what is already being validated.
        /// </summary>
        public bool Acked { get; init; }

        /// <summary>The verdict, once in.</summary>
        public ValidationCompletion? Verdict { get; init; }
    }
}
