namespace Cfn.Coordination.Hooks;

/// <summary>The lifecycle hooks (SPEC §2.15); each is also its script's file name and the <c>hook</c> metric label.</summary>
internal static class HookNames
{
    /// <summary>An ACK wait started.</summary>
    public const string OnBlockingStart = "on_blocking_start";

    /// <summary>An ACK wait ended in timeout.</summary>
    public const string OnBlockingTimeout = "on_blocking_timeout";

    /// <summary>An ACK wait completed: every awaited coordinator ACKed.</summary>
    public const string OnSignalReceived = "on_signal_received";

    /// <summary>All three.</summary>
    public static IReadOnlyList<string> All { get; } = [OnBlockingStart, OnBlockingTimeout, OnSignalReceived];
}
