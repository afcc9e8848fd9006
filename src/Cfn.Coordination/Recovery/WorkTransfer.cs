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
public sealed record WorkTransferResult(int Transferred, int SkippedCompleted, int Failed, bool Aborted);

/// <summary>
/// Moves a dead coordinator's unfinished work items to its replacement (SPEC §2.13, W40): one fenced script per item
/// (<c>work_cas.lua</c>), only while the dead instance is still fenced at the epoch its death set, only if the item is
/// unchanged since it was read; completed items are skipped, the TTL is kept, the fencing token bumped, and
/// <c>transferredFrom</c>/<c>transferredAt</c> recorded. The replacement adopts them with
/// <see cref="WorkItemStore.AdoptAsync"/> (their owner epoch is 0 until then).
/// </summary>
public sealed class WorkTransfer(RedisContext redis, CoordinatorCleanup scanner, RecoveryMetrics metrics, ILogger logger)
{
    /// <summary>Moves every unfinished item of <paramref name="deadId"/> in <paramref name="swarmId"/> to <paramref name="newId"/>.</summary>
    public async Task<WorkTransferResult> TransferAllAsync(string swarmId, string deadId, string newId, long fenceEpoch)
    {
        ArgumentNullException.ThrowIfNull(redis);
        int transferred = 0, skipped = 0, failed = 0;
        var database = redis.Database;
        await foreach (var key in scanner.ScanAsync(Keys.WorkPatternOf(swarmId, deadId)).ConfigureAwait(false))
        {
            var parts = key.Split(':');
            if (parts.Length != 5 || parts[2] != swarmId || parts[3] != deadId)
            {
                continue; // the pattern is a prefix; the segments must match exactly
            }

            string? raw;
            try
            {
                raw = (string?)await database.StringGetAsync(key).ConfigureAwait(false);
            }
            catch (RedisServerException e)
            {
                metrics.MalformedValues.WithLabels("work").Inc();
                logger.LogWarning("Malformed work item skipped key={Key}: {Error}", key, e.Message);
                failed++;
                continue;
            }

            if (raw is null)
            {
                continue;
            }

            if (!Json.TryDeserialize<WorkItem>(raw, out var item, out var error))
            {
                metrics.MalformedValues.WithLabels("work").Inc();
                logger.LogWarning("Malformed work item skipped key={Key}: {Error}", key, error);
                failed++;
                continue;
            }

            if (item!.Status == WorkStatus.Completed)
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
            };
            var (json, stampFields) = Json.SerializeForStamp(moved);
            var reply = (RedisResult[])(await database.ScriptEvaluateAsync(
                RedisScripts.WorkCas,
                [key, Keys.Work(swarmId, newId, item.WorkId), Keys.Epoch(deadId)],
                [raw, json, fenceEpoch, redis.Options.WorkTtlSeconds, stampFields]).ConfigureAwait(false))!;
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
                    logger.LogWarning("Work item not transferred key={Key}: {Verdict}", key, (string?)reply[0]);
                    break;
            }
        }

        metrics.WorkItemsTransferred.Inc(transferred);
        logger.LogInformation(
            "Work transfer complete itemsTransferred={Transferred} skippedCompleted={Skipped} failed={Failed} from={DeadId} to={NewId}",
            transferred, skipped, failed, deadId, newId);
        return new WorkTransferResult(transferred, skipped, failed, Aborted: false);
    }
}
