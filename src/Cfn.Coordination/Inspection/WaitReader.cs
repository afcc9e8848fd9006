using Cfn.Coordination.Activity;
using Cfn.Coordination.Identity;
using Cfn.Coordination.Redis;
using Microsoft.Extensions.Logging;

namespace Cfn.Coordination.Inspection;

/// <summary>
/// Reads the activity records of the coordinators in the deadlines index: every coordinator with a running wait has a
/// deadline there, so this is the input of the wait-for graph without scanning. One range read and one MGET.
/// </summary>
internal sealed class WaitReader(RedisContext redis, ILogger logger)
{
    public async Task<IReadOnlyList<ActivityRecord>> ReadAsync(int max)
    {
        var database = redis.Database;
        var members = await database.SortedSetRangeByRankAsync(Keys.Deadlines, 0, max - 1).ConfigureAwait(false);
        var ids = new List<string>(members.Length);
        foreach (var member in members)
        {
            if (Ids.IsValidName(member))
            {
                ids.Add(member!);
            }
            else
            {
                InspectionLog.Skipped(logger, $"{Keys.Deadlines}[{member}]", "deadline member is not a valid coordinator ID");
            }
        }

        var values = ids.Count == 0 ? [] : await database.StringGetAsync([.. ids.Select(Keys.Activity)]).ConfigureAwait(false);
        var records = new List<ActivityRecord>(ids.Count);
        for (var i = 0; i < values.Length; i++)
        {
            if (values[i].IsNull)
            {
                continue;
            }

            if (Json.TryDeserialize<ActivityRecord>(values[i].ToString(), out var record, out var error))
            {
                // The key names the coordinator; a record's own field is not trusted for it.
                records.Add(record! with { CoordinatorId = ids[i] });
            }
            else
            {
                InspectionLog.Skipped(logger, Keys.Activity(ids[i])!, error);
            }
        }

        return records;
    }
}
