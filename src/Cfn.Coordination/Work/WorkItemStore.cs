using System.Text.Json;
using Cfn.Coordination.Identity;
using Cfn.Coordination.Metrics;
using Cfn.Coordination.Redis;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Cfn.Coordination.Work;

/// <summary>
/// This coordinator's work items (SPEC K10, D6). Create, claim, progress, complete and release are each one fenced
/// compare-and-set script: the caller's epoch must be its coordinator's current epoch, and the stored item must be
/// exactly the one the caller holds (owner, owner epoch, fencing token, status). A refused write returns a distinct
/// outcome, is counted in <c>work_item_writes_refused_total</c>, and <see cref="WorkWriteOutcome.Fenced"/> also tells
/// the coordinator it was superseded, so it stops.
/// </summary>
public sealed class WorkItemStore
{
    private readonly Coordinator _coordinator;
    private readonly RedisContext _redis;
    private readonly CoordinationMetrics _metrics;
    private readonly ILogger _logger;

    internal WorkItemStore(Coordinator coordinator, RedisContext redis, CoordinationMetrics metrics, ILogger logger)
    {
        _coordinator = coordinator;
        _redis = redis;
        _metrics = metrics;
        _logger = logger;
    }

    /// <summary>Creates a new item owned by this coordinator instance.</summary>
    public Task<WorkWriteResult> CreateAsync(string workId, JsonElement? data = null)
    {
        Ids.RequireName(workId, "workId");
        var item = new WorkItem
        {
            WorkId = workId,
            SwarmId = _coordinator.SwarmId,
            AssignedTo = _coordinator.Id,
            OwnerEpoch = _coordinator.Epoch,
            Epoch = 1,
            Status = WorkStatus.InProgress,
            Data = data,
            StartedAt = Json.NowMarker,
            UpdatedAt = Json.NowMarker,
        };
        return WriteAsync(_coordinator.Id, expected: null, item, new RecordNote(WorkRecordStatus.InProgress, "taken"));
    }

    /// <summary>Reads an item of this coordinator (null when absent or unreadable).</summary>
    public Task<WorkItem?> GetAsync(string workId) => GetAsync(_coordinator.SwarmId, _coordinator.Id, workId);

    /// <summary>Reads any coordinator's item (null when absent or unreadable).</summary>
    public async Task<WorkItem?> GetAsync(string swarmId, string coordinatorId, string workId)
    {
        var key = Keys.Work(swarmId, coordinatorId, workId);
        var raw = (string?)await _redis.Database.StringGetAsync(key).ConfigureAwait(false);
        if (raw is null)
        {
            return null;
        }

        if (!Json.TryDeserialize<WorkItem>(raw, out var item, out var error))
        {
            _logger.LogWarning("Unreadable work item key={Key}: {Error}", (string)key!, error);
            return null;
        }

        return item! with { Stored = raw };
    }

    /// <summary>Records progress (new data) on an item this instance owns.</summary>
    public Task<WorkWriteResult> ProgressAsync(WorkItem item, JsonElement? data) =>
        UpdateAsync(item, i => i with { Data = data ?? i.Data, Status = WorkStatus.InProgress }, note: null);

    /// <summary>
    /// Completes an item this instance owns; a completed item is never written or transferred again. The work ID's record
    /// (<see cref="WorkRecord"/>) keeps <paramref name="result"/> without its <c>input</c>, and its <c>verdicts</c> apart;
    /// it is <c>failed</c> when the result's <c>outcome</c> is other than <c>pass</c> or <c>fail</c>.
    /// </summary>
    public Task<WorkWriteResult> CompleteAsync(WorkItem item, JsonElement? result = null) =>
        UpdateAsync(item, i => i with { Data = result ?? i.Data, Status = WorkStatus.Completed }, RecordNote.Finished(result));

    /// <summary>Gives up an item this instance owns, so another coordinator may claim it.</summary>
    public Task<WorkWriteResult> ReleaseAsync(WorkItem item) =>
        UpdateAsync(item, i => i with { Status = WorkStatus.Released }, new RecordNote(WorkRecordStatus.Released, "released"));

    /// <summary>Takes over an item that <paramref name="fromCoordinatorId"/> released; it moves under this coordinator's key.</summary>
    public async Task<WorkWriteResult> ClaimAsync(string fromCoordinatorId, string workId)
    {
        var current = await GetAsync(_coordinator.SwarmId, fromCoordinatorId, workId).ConfigureAwait(false);
        if (current is null)
        {
            return Refused(new WorkWriteResult(WorkWriteOutcome.NotFound, null));
        }

        if (current.Status != WorkStatus.Released)
        {
            return Refused(new WorkWriteResult(
                current.Status == WorkStatus.Completed ? WorkWriteOutcome.AlreadyCompleted : WorkWriteOutcome.NotReleased, current));
        }

        var claimed = current with
        {
            AssignedTo = _coordinator.Id,
            OwnerEpoch = _coordinator.Epoch,
            Epoch = current.Epoch + 1,
            Status = WorkStatus.InProgress,
            UpdatedAt = Json.NowMarker,
            TransferredFrom = fromCoordinatorId,
            TransferredAt = Json.NowMarker,
            Stored = null,
        };
        return await WriteAsync(fromCoordinatorId, current.Stored, claimed,
            new RecordNote(WorkRecordStatus.InProgress, "claimed", From: fromCoordinatorId)).ConfigureAwait(false);
    }

    /// <summary>
    /// The items this coordinator should adopt (D16): listed in its owner index (<see cref="Keys.Owned"/>) and either
    /// transferred to it from a dead coordinator or left in progress by an earlier instance under its ID. One SMEMBERS
    /// and one MGET; members whose item is gone or finished are removed from the index on the way.
    /// </summary>
    public async Task<IReadOnlyList<WorkItem>> AdoptableAsync()
    {
        var database = _redis.Database;
        var index = Keys.Owned(_coordinator.SwarmId, _coordinator.Id);
        var members = (await database.SetMembersAsync(index).ConfigureAwait(false))
            .Select(m => (string?)m).Where(m => m is not null).Select(m => m!).ToList();
        var invalid = members.Where(m => !Ids.IsValidName(m)).ToList();
        members.RemoveAll(m => !Ids.IsValidName(m));
        var values = members.Count == 0 ? []
            : await database.StringGetAsync(members.Select(m => Keys.Work(_coordinator.SwarmId, _coordinator.Id, m)).ToArray()).ConfigureAwait(false);
        var stale = new List<RedisValue>(invalid.Select(m => (RedisValue)m));
        var adoptable = new List<WorkItem>();
        for (var i = 0; i < members.Count; i++)
        {
            if (values[i].IsNull || !Json.TryDeserialize<WorkItem>((string)values[i]!, out var item, out _) || item!.AssignedTo != _coordinator.Id)
            {
                stale.Add(members[i]);
                continue;
            }

            if (item.Status == WorkStatus.Transferred || (item.Status == WorkStatus.InProgress && item.OwnerEpoch < _coordinator.Epoch))
            {
                adoptable.Add(item with { Stored = (string)values[i]! });
            }
            else if (item.Status is WorkStatus.Completed or WorkStatus.Released)
            {
                stale.Add(members[i]);
            }
        }

        if (stale.Count > 0)
        {
            await database.SetRemoveAsync(index, [.. stale]).ConfigureAwait(false);
        }

        return adoptable;
    }

    /// <summary>
    /// Takes back an item that this coordinator ID owned under an earlier instance (a restart under the same ID, D7):
    /// the owner epoch becomes this instance's and the fencing token moves on, so the earlier instance is fenced out.
    /// </summary>
    public async Task<WorkWriteResult> AdoptAsync(string workId)
    {
        var current = await GetAsync(workId).ConfigureAwait(false);
        if (current is null)
        {
            return Refused(new WorkWriteResult(WorkWriteOutcome.NotFound, null));
        }

        if (current.Status == WorkStatus.Completed)
        {
            return Refused(new WorkWriteResult(WorkWriteOutcome.AlreadyCompleted, current));
        }

        if (current.AssignedTo != _coordinator.Id || current.OwnerEpoch > _coordinator.Epoch)
        {
            return Refused(new WorkWriteResult(WorkWriteOutcome.NotOwner, current));
        }

        if (current.OwnerEpoch == _coordinator.Epoch)
        {
            return new WorkWriteResult(WorkWriteOutcome.Ok, current);
        }

        var adopted = current with
        {
            OwnerEpoch = _coordinator.Epoch,
            Epoch = current.Epoch + 1,
            Status = WorkStatus.InProgress,
            UpdatedAt = Json.NowMarker,
            Stored = null,
        };
        return await WriteAsync(_coordinator.Id, current.Stored, adopted, new RecordNote(WorkRecordStatus.Adopted, "adopted",
            From: current.Status == WorkStatus.Transferred ? current.TransferredFrom : null)).ConfigureAwait(false);
    }

    private async Task<WorkWriteResult> UpdateAsync(WorkItem item, Func<WorkItem, WorkItem> change, RecordNote? note)
    {
        ArgumentNullException.ThrowIfNull(item);
        if (item.Stored is null)
        {
            throw new ArgumentException("item must be one returned by this store (its stored form is compared)", nameof(item));
        }

        if (item.AssignedTo != _coordinator.Id || item.OwnerEpoch != _coordinator.Epoch)
        {
            return Refused(new WorkWriteResult(
                _coordinator.IsSuperseded ? WorkWriteOutcome.Fenced : WorkWriteOutcome.NotOwner, item));
        }

        if (item.Status == WorkStatus.Completed)
        {
            return Refused(new WorkWriteResult(WorkWriteOutcome.AlreadyCompleted, item));
        }

        var next = change(item) with { UpdatedAt = Json.NowMarker, Stored = null };
        return await WriteAsync(item.AssignedTo, item.Stored, next, note).ConfigureAwait(false);
    }

    private async Task<WorkWriteResult> WriteAsync(string fromOwner, string? expected, WorkItem next, RecordNote? note)
    {
        var reply = await CasAsync(_redis.Database, next.SwarmId, fromOwner, expected, next, Keys.Epoch(_coordinator.Id),
            _coordinator.Epoch, _redis.Options, note).ConfigureAwait(false);
        var verdict = (string)reply[0]!;
        var payload = (string?)reply[1];
        WorkItem? found = null;
        if (verdict != "fenced" && !string.IsNullOrEmpty(payload) && Json.TryDeserialize<WorkItem>(payload, out var parsed, out _))
        {
            found = parsed! with { Stored = payload };
        }

        switch (verdict)
        {
            case "ok":
                await _coordinator.Activity.TryRecordAsync(_logger).ConfigureAwait(false);

                return new WorkWriteResult(WorkWriteOutcome.Ok, found);
            case "fenced":
                _coordinator.MarkSuperseded("work item write", payload);
                return Refused(new WorkWriteResult(WorkWriteOutcome.Fenced, null));
            case "exists":
                return Refused(new WorkWriteResult(WorkWriteOutcome.AlreadyExists, found));
            case "not_found":
                return Refused(new WorkWriteResult(WorkWriteOutcome.NotFound, null));
            case "owned_elsewhere":
                return Refused(new WorkWriteResult(WorkWriteOutcome.OwnedElsewhere, null) { Owner = payload });
            default:
                // The stored item differs from what we hold: decide whether it slipped out of our hands.
                var outcome = found is null || found.AssignedTo != _coordinator.Id || found.OwnerEpoch != _coordinator.Epoch
                    ? WorkWriteOutcome.NotOwner
                    : found.Status == WorkStatus.Completed ? WorkWriteOutcome.AlreadyCompleted : WorkWriteOutcome.Conflict;
                return Refused(new WorkWriteResult(outcome, found));
        }
    }

    /// <summary>
    /// One fenced compare-and-set of an item (<c>work_cas.lua</c>) from <paramref name="fromOwner"/>'s key to
    /// <paramref name="next"/>'s owner's key, keeping both owners' indexes (<see cref="Keys.Owned"/>) and, when
    /// <paramref name="note"/> is given, the work ID's record (<see cref="Keys.WorkRecord"/>) in the same step.
    /// </summary>
    internal static async Task<RedisResult[]> CasAsync(IDatabase database, string swarmId, string fromOwner, string? expected, WorkItem next,
        RedisKey fenceKey, long fenceEpoch, CoordinationOptions options, RecordNote? note)
    {
        var (json, stampFields) = Json.SerializeForStamp(next);
        var keep = next.Status is WorkStatus.InProgress or WorkStatus.Transferred ? "keep" : "drop";
        return (RedisResult[])(await database.ScriptEvaluateAsync(
            RedisScripts.WorkCas,
            [Keys.Work(swarmId, fromOwner, next.WorkId), Keys.Work(swarmId, next.AssignedTo, next.WorkId), fenceKey,
                Keys.Owned(swarmId, fromOwner), Keys.Owned(swarmId, next.AssignedTo), Keys.WorkOwner(swarmId, next.WorkId),
                Keys.WorkRecord(swarmId, next.WorkId)],
            [expected ?? string.Empty, json, fenceEpoch, options.WorkTtlSeconds, stampFields, keep, next.WorkId, next.AssignedTo,
                note?.Status ?? string.Empty, note?.Event ?? string.Empty, note?.From ?? string.Empty, note?.TtlMs(options) ?? 0,
                note?.Result ?? string.Empty, note?.Verdicts ?? string.Empty,
                Keys.WorkFinishedChannel(swarmId, next.WorkId).ToString(),
                next.Status == WorkStatus.Completed ? options.FinishedWorkRetentionSeconds * 1000L : 0]).ConfigureAwait(false))!;
    }

    private WorkWriteResult Refused(WorkWriteResult result)
    {
        _metrics.WorkWritesRefused.WithLabels(_coordinator.Id, result.Label).Inc();
        return result;
    }
}
