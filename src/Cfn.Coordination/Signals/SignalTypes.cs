namespace Cfn.Coordination.Signals;

/// <summary>
/// The signal types (SPEC §2.1 and §2.3 merged into one set). The wire values are the TS strings; <c>retry</c> from the
/// ACK-manager world is read as <see cref="RetryRequest"/>.
/// </summary>
public static class SignalTypes
{
    /// <summary>Work finished.</summary>
    public const string Completion = "completion";

    /// <summary>Please redo.</summary>
    public const string RetryRequest = "retry_request";

    /// <summary>Liveness ping between peers.</summary>
    public const string Heartbeat = "heartbeat";

    /// <summary>Something failed.</summary>
    public const string Error = "error";

    /// <summary>Progress report.</summary>
    public const string StatusUpdate = "status_update";

    /// <summary>Please validate (coordinator → validator).</summary>
    public const string Validation = "validation";

    /// <summary>Every accepted type.</summary>
    public static readonly IReadOnlySet<string> All =
        new HashSet<string>(StringComparer.Ordinal) { Completion, RetryRequest, Heartbeat, Error, StatusUpdate, Validation };

    /// <summary>The metric label for an unknown or unreadable type.</summary>
    public const string Unknown = "unknown";

    /// <summary>
    /// The type named in a message ID (<c>sender:receiver:type:iteration:timestamp</c>), as its wire value; <see cref="Unknown"/>
    /// when <paramref name="signalId"/> is not a message ID or names no known type. Safe as a metric label: the result is
    /// always one of <see cref="All"/> or <see cref="Unknown"/>.
    /// </summary>
    public static string OfMessageId(string? signalId)
    {
        var segments = signalId?.Split(':');
        if (segments is not { Length: 5 } || segments[3].Length == 0 || !segments[3].All(char.IsAsciiDigit))
        {
            return Unknown;
        }

        return Normalize(segments[2]) ?? Unknown;
    }

    /// <summary>Maps an accepted spelling to its wire value, or returns null for an unknown type.</summary>
    public static string? Normalize(string? type) => type switch
    {
        null => null,
        "retry" => RetryRequest,
        _ when All.Contains(type) => type,
        _ => null,
    };
}
