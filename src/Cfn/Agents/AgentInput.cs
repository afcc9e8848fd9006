using System.Text.Json;
using System.Text.Json.Nodes;
using Cfn.Coordination.Identity;
using Cfn.Coordination.Signals;

namespace Cfn.Agents;

/// <summary>
/// Checks of what an agent asks for, shared by the <c>cfn agent</c> verbs and the HTTP agent sessions (SPEC D21): each
/// names the field (an option such as <c>--to</c>, or a JSON field such as <c>to</c>) and the rule, before anything is
/// written.
/// </summary>
internal static class AgentInput
{
    /// <summary>Longest payload accepted (a signal lives in a Redis stream and in K2).</summary>
    public const int MaxPayloadBytes = 64 * 1024;

    /// <summary>Longest wait or receive: a week.</summary>
    public const long MaxTimeoutMs = 7L * 24 * 3600 * 1000;

    /// <summary>One or more agent IDs, comma-separated, deduplicated in order.</summary>
    public static List<string> Ids(string? text, string field) =>
        Ids((text ?? "").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries), field);

    /// <summary>One or more agent IDs, deduplicated in order.</summary>
    public static List<string> Ids(IReadOnlyCollection<string> ids, string field)
    {
        if (ids.Count == 0)
        {
            throw new AgentInputException(field, "must name at least one agent ID");
        }

        foreach (var id in ids)
        {
            if (!Coordination.Identity.Ids.IsValidName(id))
            {
                throw new AgentInputException(field, $"\"{id}\": {Coordination.Identity.Ids.NameRule}", AgentInputException.InvalidId);
            }
        }

        return ids.Distinct(StringComparer.Ordinal).ToList();
    }

    /// <summary>Exactly one agent ID.</summary>
    public static string OneId(string? text, string field) =>
        Ids(text, field) is [var one] ? one : throw new AgentInputException(field, "must name exactly one agent");

    /// <summary>A signal type of SPEC §1 K2.</summary>
    public static string SignalType(string? type, string field) =>
        type is not null && SignalTypes.All.Contains(type)
            ? type
            : throw new AgentInputException(field, $"must be one of {string.Join(", ", SignalTypes.All.Order(StringComparer.Ordinal))}");

    /// <summary>A message ID as a send returned it.</summary>
    public static string MessageId(string? id, string field, string what = "must be a message ID as send returned it") =>
        id is not null && Coordination.Identity.Ids.IsValidSignalId(id) ? id : throw new AgentInputException(field, what, AgentInputException.InvalidId);

    /// <summary>An idempotency key (optional).</summary>
    public static string? IdempotencyKey(string? key, string field) =>
        key is null || Coordination.Identity.Ids.IsValidName(key) ? key
            : throw new AgentInputException(field, Coordination.Identity.Ids.NameRule, AgentInputException.InvalidId);

    /// <summary>An iteration: 0 or more.</summary>
    public static int Iteration(long value, string field) =>
        value is >= 0 and <= int.MaxValue ? (int)value : throw new AgentInputException(field, "must be a whole number from 0");

    /// <summary>A timeout in ms (optional): positive, at most a week.</summary>
    public static TimeSpan? Timeout(long? milliseconds, string field) => milliseconds switch
    {
        null => null,
        <= 0 => throw new AgentInputException(field, "must be a positive number of milliseconds"),
        > MaxTimeoutMs => throw new AgentInputException(field, "must be at most 7 days"),
        { } ms => TimeSpan.FromMilliseconds(ms),
    };

    /// <summary>A JSON payload given as text: bounded and parsed.</summary>
    public static JsonElement Payload(string text, string field)
    {
        if (System.Text.Encoding.UTF8.GetByteCount(text) > MaxPayloadBytes)
        {
            throw new AgentInputException(field, $"must be at most {MaxPayloadBytes} bytes");
        }

        try
        {
            using var document = JsonDocument.Parse(text);
            return document.RootElement.Clone();
        }
        catch (JsonException e)
        {
            throw new AgentInputException(field, "must be JSON: " + e.Message.Split(" Path:")[0]);
        }
    }

    /// <summary>A payload already parsed (from a JSON request body): bounded.</summary>
    public static JsonElement Payload(JsonElement payload, string field) =>
        System.Text.Encoding.UTF8.GetByteCount(payload.GetRawText()) > MaxPayloadBytes
            ? throw new AgentInputException(field, $"must be at most {MaxPayloadBytes} bytes")
            : payload;

    /// <summary>A reply's answer: a JSON object, to which <c>inReplyTo</c> is added.</summary>
    public static JsonElement Reply(JsonElement answer, string requestId, string field)
    {
        if (JsonNode.Parse(Payload(answer, field).GetRawText()) is not JsonObject reply)
        {
            throw new AgentInputException(field, "must be a JSON object");
        }

        reply["inReplyTo"] = requestId;
        return JsonSerializer.SerializeToElement(reply);
    }
}

/// <summary>Bad input to a verb or a session request, naming the option, variable or field and the rule it breaks.</summary>
internal sealed class AgentInputException(string field, string rule, string code = AgentInputException.Validation) : Exception($"{field}: {rule}")
{
    /// <summary>The API's code for a value that breaks a rule.</summary>
    public const string Validation = "VALIDATION_ERROR";

    /// <summary>The API's code for an ID (agent, message, key) that breaks the ID rule.</summary>
    public const string InvalidId = "INVALID_ID";

    public string Field { get; } = field;

    public string Rule { get; } = rule;

    /// <summary>The API's error code (<see cref="Validation"/> or <see cref="InvalidId"/>).</summary>
    public string Code { get; } = code;
}
