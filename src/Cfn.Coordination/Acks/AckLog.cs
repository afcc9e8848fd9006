using Microsoft.Extensions.Logging;

namespace Cfn.Coordination.Acks;

/// <summary>
/// The log lines of every cycle's ACK path, generated at build time (see <see cref="Signals.SignalLog"/> for why). The
/// texts are the runbook's literals (docs/observability.md) and must not change.
/// </summary>
internal static partial class AckLog
{
    [LoggerMessage(Level = LogLevel.Information, Message = "Waiting for ACKs signalId={SignalId} coordinators={Coordinators} timeout={TimeoutMs}")]
    public static partial void WaitingForAcks(this ILogger logger, string signalId, string coordinators, long timeoutMs);

    [LoggerMessage(Level = LogLevel.Information,
        Message = "ACK wait complete signalId={SignalId} received={Received} total={Total} duration={DurationMs} status={Status}")]
    public static partial void AckWaitComplete(this ILogger logger, string signalId, int received, int total, long durationMs, string status);

    [LoggerMessage(Level = LogLevel.Information,
        Message = "Received signal, sending immediate ACK signalId={SignalId} signalType={SignalType} source={Source} coordinatorId={CoordinatorId}")]
    public static partial void SendingImmediateAck(this ILogger logger, string signalId, string signalType, string source, string coordinatorId);

    [LoggerMessage(Level = LogLevel.Information,
        Message = "ACK sent successfully signalId={SignalId} coordinatorId={CoordinatorId} iteration={Iteration} ackKey={AckKey} ttl={Ttl} duration={DurationMs} signalLatencyMs={LatencyMs}")]
    public static partial void AckSent(this ILogger logger, string signalId, string coordinatorId, long iteration, string ackKey, int ttl, long durationMs, long latencyMs);
}
