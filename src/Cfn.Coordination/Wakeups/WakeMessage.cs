namespace Cfn.Coordination.Wakeups;

/// <summary>The messages on a coordinator's channel <c>cfn:events:{id}</c> (published by the scripts and services).</summary>
internal static class WakeMessage
{
    /// <summary>
    /// Reads <c>ack {signalId} {ackerId}[ {ack JSON}]</c>. The JSON (which may hold spaces) is everything after the
    /// third space, or null when the message carries none (a re-announced ACK the waiter must read from Redis).
    /// </summary>
    public static bool TryParseAck(string message, out string signalId, out string ackerId, out string? json)
    {
        signalId = ackerId = "";
        json = null;
        if (!message.StartsWith("ack ", StringComparison.Ordinal))
        {
            return false;
        }

        var afterSignal = message.IndexOf(' ', 4);
        if (afterSignal < 0)
        {
            return false;
        }

        signalId = message[4..afterSignal];
        var afterAcker = message.IndexOf(' ', afterSignal + 1);
        ackerId = afterAcker < 0 ? message[(afterSignal + 1)..] : message[(afterSignal + 1)..afterAcker];
        json = afterAcker < 0 ? null : message[(afterAcker + 1)..];
        return signalId.Length > 0 && ackerId.Length > 0;
    }
}
