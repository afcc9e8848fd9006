using Microsoft.Extensions.Logging;

namespace Cfn.Coordination.Signals;

/// <summary>
/// The log lines of every cycle's signal path, generated at build time: with the level off they cost a level check and
/// no allocation (the runtime <c>LogInformation(string, params object[])</c> builds an array and boxes each number every
/// call). The texts are the runbook's literals (docs/observability.md) and must not change.
/// </summary>
internal static partial class SignalLog
{
    [LoggerMessage(Level = LogLevel.Information,
        Message = "Signal sent successfully messageId={MessageId} senderId={SenderId} receiverId={ReceiverId} type={Type} iteration={Iteration} key={Key} ttl={Ttl}")]
    public static partial void SignalSent(this ILogger logger, string messageId, string senderId, string receiverId, string type, int iteration, string key, int ttl);

    [LoggerMessage(Level = LogLevel.Information,
        Message = "Signal received messageId={MessageId} senderId={SenderId} receiverId={ReceiverId} type={Type} iteration={Iteration} redelivery={Redelivery}")]
    public static partial void SignalReceived(this ILogger logger, string messageId, string senderId, string receiverId, string type, int iteration, bool redelivery);
}
