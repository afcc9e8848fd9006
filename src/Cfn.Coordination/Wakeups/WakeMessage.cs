using System.Text;

namespace Cfn.Coordination.Wakeups;

/// <summary>The messages on a coordinator's channel <c>cfn:events:{id}</c> (published by the scripts and services).</summary>
internal static class WakeMessage
{
    /// <summary>
    /// Reads <c>ack {signalId} {ackerId}[ {ack JSON}]</c>. The JSON (which may hold spaces) is everything after the
    /// third space, or null when the message carries none (a re-announced ACK the waiter must read from Redis).
    /// It reads the message's UTF-8 bytes as they came off the connection and decodes the three parts on their own,
    /// without first copying the whole message (mostly the ACK JSON) into a string.
    /// </summary>
    public static bool TryParseAck(ReadOnlySpan<byte> message, out string signalId, out string ackerId, out string? json)
    {
        signalId = ackerId = "";
        json = null;
        if (!message.StartsWith("ack "u8))
        {
            return false;
        }

        var rest = message[4..];
        var afterSignal = rest.IndexOf((byte)' ');
        if (afterSignal < 0)
        {
            return false;
        }

        signalId = Encoding.UTF8.GetString(rest[..afterSignal]);
        rest = rest[(afterSignal + 1)..];
        var afterAcker = rest.IndexOf((byte)' ');
        ackerId = Encoding.UTF8.GetString(afterAcker < 0 ? rest : rest[..afterAcker]);
        json = afterAcker < 0 ? null : Encoding.UTF8.GetString(rest[(afterAcker + 1)..]);
        return signalId.Length > 0 && ackerId.Length > 0;
    }
}
