using System.Globalization;

namespace Cfn.Coordination.Security;

/// <summary>The exact strings that are signed (SPEC §2.4 for ACKs, the FAQ scheme of SPEC K2 for signals).</summary>
internal static class SignedMessages
{
    /// <summary>
    /// <c>{coordinatorId}:{signalId}:{timestamp}:{iteration}</c>, where <paramref name="coordinatorId"/> is the ACKing
    /// coordinator and the numbers are plain base-10 integers. <c>status</c> and <c>metadata</c> are not signed.
    /// </summary>
    public static string Ack(string coordinatorId, string signalId, long timestamp, long iteration) =>
        string.Create(CultureInfo.InvariantCulture, $"{coordinatorId}:{signalId}:{timestamp}:{iteration}");

    /// <summary><c>{senderId}:{receiverId}:{type}:{timestamp}</c>.</summary>
    public static string Signal(string senderId, string receiverId, string type, long timestamp) =>
        string.Create(CultureInfo.InvariantCulture, $"{senderId}:{receiverId}:{type}:{timestamp}");
}
