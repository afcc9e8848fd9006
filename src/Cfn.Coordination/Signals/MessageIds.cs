using System.Globalization;

namespace Cfn.Coordination.Signals;

/// <summary>
/// The message ID of a signal, <c>{senderId}:{receiverId}:{type}:{iteration}:{unique}</c>, where <c>unique</c> is the
/// sender's idempotency key, or its send time in ms when it has none. The ID is what makes a retry a duplicate rather
/// than a second signal (SPEC D4), so every sender, in any language, builds it the same way.
/// </summary>
internal static class MessageIds
{
    /// <summary>The message ID of a signal; the parts are not validated here (the send validates them).</summary>
    public static string Create(string senderId, string receiverId, string type, int iteration, string unique) =>
        string.Create(CultureInfo.InvariantCulture, $"{Prefix(senderId, receiverId)}{type}:{iteration}:{unique}");

    /// <summary>The message ID of a signal without an idempotency key: its send time makes it unique.</summary>
    public static string Create(string senderId, string receiverId, string type, int iteration, long timestampMs) =>
        Create(senderId, receiverId, type, iteration, timestampMs.ToString(CultureInfo.InvariantCulture));

    /// <summary>What every message ID from <paramref name="senderId"/> to <paramref name="receiverId"/> starts with.</summary>
    public static string Prefix(string senderId, string receiverId) => senderId + ":" + receiverId + ":";
}
