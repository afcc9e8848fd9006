using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Cfn.Coordination.Redis;
using StackExchange.Redis;

namespace Cfn.Coordination.Work;

/// <summary>The statuses of a <see cref="WorkRecord"/>, as a user sees them.</summary>
internal static class WorkRecordStatus
{
    /// <summary>Waiting in its swarm's queue (submitted, or given back).</summary>
    public const string Queued = "queued";

    /// <summary>A coordinator owns it and is validating it (<see cref="WorkRecord.Owner"/>).</summary>
    public const string InProgress = "in-progress";

    /// <summary>Its owner died: it was moved to the replacement (<see cref="WorkRecord.Owner"/>), which has not adopted it yet.</summary>
    public const string Transferred = "transferred";

    /// <summary>A replacement, or a restarted instance of its owner, adopted it and resumes its validation.</summary>
    public const string Adopted = "adopted";

    /// <summary>Its owner gave it back (it was stopping); it goes back to the front of the queue.</summary>
    public const string Released = "released";

    /// <summary>Every validator asked gave its verdict; <see cref="WorkRecord.Result"/> says pass or fail.</summary>
    public const string Completed = "completed";

    /// <summary>It ended without every verdict (timeout, force-unblock, no input): <see cref="WorkRecord.Result"/> says why.</summary>
    public const string Failed = "failed";
}

/// <summary>
/// What became of one work ID submitted to a swarm (<c>swarm:{swarmId}:work:{workId}</c>): its status, who has it, the
/// history of its owners and, once finished, its verdicts and result. Each change is written by the same script as the
/// transition it describes. Kept a week while unfinished, then <see cref="CoordinationOptions.WorkResultTtlSeconds"/>.
/// </summary>
public sealed record WorkRecord
{
    /// <summary>The swarm.</summary>
    public required string SwarmId { get; init; }

    /// <summary>The work ID.</summary>
    public required string WorkId { get; init; }

    /// <summary>
    /// <c>queued</c>, <c>in-progress</c>, <c>transferred</c> (to a dead owner's replacement), <c>adopted</c> (by the
    /// replacement, which resumes it), <c>released</c> (given back by a stopping owner, on its way back to the queue),
    /// <c>completed</c> (every verdict in) or <c>failed</c> (ended without them).
    /// </summary>
    public required string Status { get; init; }

    /// <summary>The coordinator that has the item now (none while it is queued).</summary>
    public string? Owner { get; init; }

    /// <summary>When it was first queued (Redis ms); absent for an item created without the queue.</summary>
    public long? EnqueuedAt { get; init; }

    /// <summary>When the record last changed (Redis ms).</summary>
    public long UpdatedAt { get; init; }

    /// <summary>When it was completed or failed (Redis ms).</summary>
    public long? FinishedAt { get; init; }

    /// <summary>The verdicts, once finished (the validators' completion payloads).</summary>
    public JsonElement? Verdicts { get; init; }

    /// <summary>The result, once finished, without the input and the verdicts (the loop's: <c>outcome</c>, <c>missing</c>, <c>waitedMs</c>, …).</summary>
    public JsonElement? Result { get; init; }

    /// <summary>Every change of hands, oldest first (the last 32).</summary>
    public required IReadOnlyList<WorkEvent> History { get; init; }

    /// <summary>True once completed or failed: nothing changes it any more (unless the same ID is submitted and taken again).</summary>
    [JsonIgnore]
    public bool IsFinished => Status is WorkRecordStatus.Completed or WorkRecordStatus.Failed;

    /// <summary>Reads a record from its hash; null when it has no status (absent or unreadable).</summary>
    internal static WorkRecord? FromHash(string swarmId, string workId, HashEntry[] entries)
    {
        var fields = entries.ToDictionary(e => (string)e.Name!, e => (string?)e.Value, StringComparer.Ordinal);
        if (!fields.TryGetValue("status", out var status) || string.IsNullOrEmpty(status))
        {
            return null;
        }

        return new WorkRecord
        {
            SwarmId = swarmId,
            WorkId = workId,
            Status = status,
            Owner = fields.GetValueOrDefault("owner"),
            EnqueuedAt = Number(fields.GetValueOrDefault("enqueuedAt")),
            UpdatedAt = Number(fields.GetValueOrDefault("updatedAt")) ?? 0,
            FinishedAt = Number(fields.GetValueOrDefault("finishedAt")),
            Verdicts = Element(fields.GetValueOrDefault("verdicts")),
            Result = Element(fields.GetValueOrDefault("result")),
            History = Events(fields.GetValueOrDefault("history")),
        };
    }

    private static long? Number(string? text) =>
        long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value) ? value : null;

    private static JsonElement? Element(string? json)
    {
        if (string.IsNullOrEmpty(json))
        {
            return null;
        }

        try
        {
            using var document = JsonDocument.Parse(json);
            return document.RootElement.Clone();
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static List<WorkEvent> Events(string? json) =>
        json is not null && Json.TryDeserialize<List<WorkEvent>>(json, out var events, out _) && events is not null ? events : [];
}

/// <summary>One change of hands of a work item (<see cref="WorkRecord.History"/>).</summary>
public sealed record WorkEvent
{
    /// <summary>
    /// <c>queued</c>, <c>taken</c> (a coordinator created its item), <c>claimed</c> (took over an item given back),
    /// <c>released</c>, <c>requeued</c>, <c>transferred</c>, <c>adopted</c>, <c>completed</c> or <c>failed</c>.
    /// </summary>
    public required string Event { get; init; }

    /// <summary>The coordinator that has the item after the event.</summary>
    public string? Owner { get; init; }

    /// <summary>The coordinator it came from (a claim, a transfer, a requeue).</summary>
    public string? From { get; init; }

    /// <summary>Why, for a requeue (<c>owner_stopped</c>, <c>owner_dead_no_replacement</c>, <c>replacement_failed</c>, …).</summary>
    public string? Reason { get; init; }

    /// <summary>When (Redis ms).</summary>
    public long At { get; init; }
}

/// <summary>
/// What one work-item write tells the work ID's record (<c>lib_work_record.lua</c>, in the same script as the write): the
/// status it leaves, the event, the coordinator it came from, and for a finished item its result and verdicts.
/// </summary>
internal sealed record RecordNote(string Status, string Event, string? From = null, string? Result = null, string? Verdicts = null)
{
    /// <summary>How long an unfinished record is kept: an item may wait long in a deep queue, and one lost in a crash must still expire.</summary>
    public static readonly TimeSpan UnfinishedTtl = TimeSpan.FromDays(7);

    /// <summary>The record's TTL after this event, in ms: <see cref="CoordinationOptions.WorkResultTtlSeconds"/> once finished.</summary>
    public long TtlMs(CoordinationOptions options) => Status is WorkRecordStatus.Completed or WorkRecordStatus.Failed
        ? options.WorkResultTtlSeconds * 1000L
        : (long)UnfinishedTtl.TotalMilliseconds;

    /// <summary>
    /// The note of a completion with <paramref name="result"/>: <c>failed</c> when its <c>outcome</c> is other than
    /// <c>pass</c> or <c>fail</c> (not every verdict came in), else <c>completed</c>. The record keeps the result without
    /// its <c>input</c> (SPEC D23: what a finished item leaves is small) and its <c>verdicts</c> apart.
    /// </summary>
    public static RecordNote Finished(JsonElement? result)
    {
        if (result is not { ValueKind: JsonValueKind.Object } value)
        {
            return new RecordNote(WorkRecordStatus.Completed, "completed",
                Result: result is { ValueKind: not JsonValueKind.Undefined and not JsonValueKind.Null } other ? other.GetRawText() : null);
        }

        var failed = value.TryGetProperty("outcome", out var outcome) &&
            (outcome.ValueKind != JsonValueKind.String || outcome.GetString() is not ("pass" or "fail"));
        string? verdicts = null;
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            foreach (var property in value.EnumerateObject())
            {
                if (property.NameEquals("verdicts"))
                {
                    verdicts = property.Value.GetRawText();
                }
                else if (!property.NameEquals("input"))
                {
                    property.WriteTo(writer);
                }
            }

            writer.WriteEndObject();
        }

        var status = failed ? WorkRecordStatus.Failed : WorkRecordStatus.Completed;
        return new RecordNote(status, status, Result: System.Text.Encoding.UTF8.GetString(buffer.ToArray()), Verdicts: verdicts);
    }
}
