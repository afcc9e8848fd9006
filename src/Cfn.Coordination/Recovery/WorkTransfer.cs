using System.Text.Json;
using Cfn.Coordination.Loop;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Work;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Cfn.Coordination.Recovery;

/// <summary>What a hand-over of work moved.</summary>
/// <param name="Transferred">Items now owned by the replacement.</param>
/// <param name="SkippedCompleted">Completed items, left where they are.</param>
/// <param name="Failed">Items that could not be moved (malformed, or changed under the transfer).</param>
/// <param name="Aborted">True when the dead coordinator's ID was restarted meanwhile: its new instance keeps its items.</param>
internal sealed record WorkTransferResult(int Transferred, int SkippedCompleted, int Failed, bool Aborted);

/// <summary>
/// Moves a dead coordinator's unfinished work items (SPEC §2.13, D16; each item moves in one fenced script, where the TS transfer's separate get, set and delete could race). The items are found in the owner's index
/// (<see cref="Keys.Owned"/>, kept by <c>work_cas.lua</c>), never by scanning the keyspace. Either to its replacement
/// (<see cref="TransferAllAsync"/>: one fenced script per item, only while the dead instance is still fenced at the epoch
/// its death set, only if unchanged; completed items skipped, TTL kept, token bumped, <c>transferredFrom</c>/
/// <c>transferredAt</c> recorded; the replacement adopts them at start), or back to the front of the swarm's queue when no
/// replacement will come (<see cref="RequeueAllAsync"/>). Both are idempotent: a second run finds nothing left to move.
/// </summary>
internal sealed class WorkTransfer(RedisContext redis, RecoveryMetrics metrics, ILogger logger)
{
    /// <summary>Moves every unfinished item of <paramref name="deadId"/> in <paramref name="swarmId"/> to <paramref name="newId"/>.</summary>
    public async Task<WorkTransferResult> TransferAllAsync(string swarmId, string deadId, string newId, long fenceEpoch)
    {
        ArgumentNullException.ThrowIfNull(redis);
        int transferred = 0, skipped = 0, failed = 0;
        await foreach (var (raw, item) in UnfinishedAsync(swarmId, deadId).ConfigureAwait(false))
        {
            if (item is null)
            {
                failed++;
                continue;
            }

            if (item.Status is WorkStatus.Completed or WorkStatus.Released)
            {
                skipped++;
                continue;
            }

            var moved = item with
            {
                AssignedTo = newId,
                OwnerEpoch = 0,
                Epoch = item.Epoch + 1,
                Status = WorkStatus.Transferred,
                TransferredFrom = deadId,
                TransferredAt = Json.NowMarker,
                UpdatedAt = Json.NowMarker,
                Stored = null,
            };
            var reply = await WorkItemStore.CasAsync(redis.Database, swarmId, deadId, raw, moved, Keys.Epoch(deadId), fenceEpoch,
                redis.Options, new RecordNote(WorkRecordStatus.Transferred, "transferred", From: deadId)).ConfigureAwait(false);
            switch ((string?)reply[0])
            {
                case "ok":
                    transferred++;
                    break;
                case "fenced":
                    logger.LogWarning(
                        "Work transfer stopped: coordinator={DeadId} was restarted (epoch {Epoch}); its new instance keeps its work",
                        deadId, (string?)reply[1]);
                    return new WorkTransferResult(transferred, skipped, failed, Aborted: true);
                default:
                    failed++;
                    logger.LogWarning("Work item not transferred workId={WorkId} from={DeadId}: {Verdict}", item.WorkId, deadId, (string?)reply[0]);
                    break;
            }
        }

        metrics.WorkItemsTransferred.Inc(transferred);
        logger.LogInformation(
            "Work transfer complete itemsTransferred={Transferred} skippedCompleted={Skipped} failed={Failed} from={DeadId} to={NewId}",
            transferred, skipped, failed, deadId, newId);
        return new WorkTransferResult(transferred, skipped, failed, Aborted: false);
    }

    /// <summary>
    /// Gives every unfinished item of <paramref name="ownerId"/> back to the front of <paramref name="swarmId"/>'s queue
    /// (released, so the next taker claims it fenced): the owner is dead and nobody takes its place. Returns how many.
    /// </summary>
    public async Task<int> RequeueAllAsync(string swarmId, string ownerId, string reason)
    {
        ArgumentNullException.ThrowIfNull(redis);
        Identity.Ids.RequireName(reason, "reason"); // written into the work record's history as it is
        var requeued = 0;
        var now = redis.Time.GetUtcNow().ToUnixTimeMilliseconds();
        await foreach (var (raw, item) in UnfinishedAsync(swarmId, ownerId).ConfigureAwait(false))
        {
            if (item is null || item.Status is WorkStatus.Completed or WorkStatus.Released)
            {
                continue;
            }

            var input = item.Data is { ValueKind: JsonValueKind.Object } data && data.TryGetProperty("input", out var i) ? i : default;
            if (input.ValueKind == JsonValueKind.Undefined)
            {
                metrics.MalformedValues.WithLabels("work").Inc();
                logger.LogWarning("Work item without input cannot be requeued workId={WorkId} owner={OwnerId}", item.WorkId, ownerId);
                continue;
            }

            var released = item with { Status = WorkStatus.Released, UpdatedAt = Json.NowMarker, Stored = null };
            var (json, stampFields) = Json.SerializeForStamp(released);
            var entry = Json.Serialize(new QueuedWork { WorkId = item.WorkId, Input = input, EnqueuedAt = now, ReleasedBy = ownerId, Returns = 1 });
            var verdict = (string?)await redis.Database.ScriptEvaluateAsync(
                RedisScripts.WorkRequeue,
                [Keys.Work(swarmId, ownerId, item.WorkId), Keys.Owned(swarmId, ownerId), Keys.SwarmQueue(swarmId), Keys.WorkRecord(swarmId, item.WorkId)],
                [raw, json, stampFields, entry, Keys.SwarmQueueChannel(swarmId).ToString(), item.WorkId, ownerId, reason,
                    (long)RecordNote.UnfinishedTtl.TotalMilliseconds]).ConfigureAwait(false);
            if (verdict == "ok")
            {
                requeued++;
                logger.LogWarning("Work item requeued workId={WorkId} swarm={SwarmId} owner={OwnerId} reason={Reason}", item.WorkId, swarmId, ownerId, reason);
            }
            else
            {
                logger.LogInformation("Work item not requeued workId={WorkId} owner={OwnerId}: {Verdict}", item.WorkId, ownerId, verdict);
            }
        }

        return requeued;
    }

    /// <summary>The items listed in <paramref name="ownerId"/>'s index, each with its stored JSON (item null when unreadable).</summary>
    private async IAsyncEnumerable<(string Raw, WorkItem? Item)> UnfinishedAsync(string swarmId, string ownerId)
    {
        var database = redis.Database;
        var index = Keys.Owned(swarmId, ownerId);
        foreach (var member in await database.SetMembersAsync(index).ConfigureAwait(false))
        {
            var workId = (string?)member;
            if (!Identity.Ids.IsValidName(workId))
            {
                metrics.MalformedValues.WithLabels("work").Inc();
                logger.LogWarning("Invalid work ID in owner index skipped key={Key} member={Member}", (string?)index, workId);
                await database.SetRemoveAsync(index, member).ConfigureAwait(false);
                continue;
            }

            var key = Keys.Work(swarmId, ownerId, workId!);
            string? raw;
            try
            {
                raw = (string?)await database.StringGetAsync(key).ConfigureAwait(false);
            }
            catch (RedisServerException e)
            {
                metrics.MalformedValues.WithLabels("work").Inc();
                logger.LogWarning("Malformed work item skipped key={Key}: {Error}", (string?)key, e.Message);
                continue;
            }

            if (raw is null)
            {
                await database.SetRemoveAsync(index, member).ConfigureAwait(false); // expired: nothing to move
                continue;
            }

            if (!Json.TryDeserialize<WorkItem>(raw, out var item, out var error) || item!.WorkId != workId || item.SwarmId != swarmId)
            {
                metrics.MalformedValues.WithLabels("work").Inc();
                logger.LogWarning("Malformed work item skipped key={Key}: {Error}", (string?)key, error ?? "IDs do not match its key");
                yield return (raw, null);
                continue;
            }

            yield return (raw, item with { Stored = raw });
        }
    }
}
