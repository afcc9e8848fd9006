using System.Reflection;
using System.Text;
using StackExchange.Redis;

namespace Cfn.Coordination.Redis;

/// <summary>
/// The Lua scripts of <c>Redis/Scripts/</c>, embedded in the assembly. Each is sent once per connection and then run
/// by SHA (<see cref="LuaScript"/> caches it), so a call costs one round trip.
/// </summary>
internal static class RedisScripts
{
    public static readonly string SendSignal = Sending("send_signal.lua", activity: true);
    public static readonly string SendAndWait = Sending("send_and_wait.lua", activity: true);
    public static readonly string ResendSignal = Sending("resend_signal.lua", activity: false);
    public static readonly string DeliverSignal = Sending("deliver_signal.lua", activity: false);
    public static readonly string ConsumeSignal = Compose("lib_inbox.lua", "consume_signal.lua");
    public static readonly string InboxNext = Compose("lib_inbox.lua", "inbox_next.lua");
    public static readonly string MoveSignal = Compose("lib_inbox.lua", "move_signal.lua");
    public static readonly string Ack = Compose("lib_activity.lua", "ack.lua");
    public static readonly string Heartbeat = Compose("heartbeat.lua");
    public static readonly string EpochClaim = Compose("epoch_claim.lua");
    public static readonly string Activity = Compose("lib_activity.lua", "activity.lua");
    public static readonly string WaitBegin = Compose("lib_activity.lua", "wait_begin.lua");
    public static readonly string WorkCas = Compose("lib_work_record.lua", "work_cas.lua");
    public static readonly string WorkRequeue = Compose("lib_work_record.lua", "work_requeue.lua");
    public static readonly string MonitorCheck = Compose("monitor_check.lua");
    public static readonly string TsDiscover = Compose("ts_discover.lua");
    public static readonly string TsRefresh = Compose("ts_refresh.lua");
    public static readonly string CleanupCoordinator = Compose("lib_inbox.lua", "cleanup_coordinator.lua");
    public static readonly string CompareAndSet = Compose("compare_and_set.lua");
    public static readonly string HashCompareAndSet = Compose("hash_compare_and_set.lua");
    public static readonly string CompareAndDelete = Compose("compare_and_delete.lua");
    public static readonly string WorkEnqueue = Compose("lib_work_record.lua", "work_enqueue.lua");
    public static readonly string WorkRequeueTaken = Compose("work_requeue_taken.lua");
    public static readonly string WorkUntake = Compose("work_untake.lua");
    public static readonly string ValidatorRecord = Compose("validator_record.lua");
    public static readonly string DeleteInboxIfEmpty = Compose("lib_inbox.lua", "delete_inbox_if_empty.lua");
    public static readonly string InboxRead = Compose("lib_inbox.lua", "inbox_read.lua");
    public static readonly string TakeTsSignal = Compose("lib_inbox.lua", "take_ts_signal.lua");

    /// <summary>
    /// A script with the libraries it uses in front: <c>lib_common.lua</c> (Redis time, time stamping, the epoch fence)
    /// always, then the named ones, then the script itself. Lua's local functions must be defined before their use.
    /// </summary>
    private static string Compose(params string[] names) => Load("lib_common.lua") + string.Concat(names.Select(Load));

    /// <summary>A send script: the inbox functions, the send checks (<c>lib_send.lua</c>), and the K7 write when it records progress.</summary>
    private static string Sending(string name, bool activity) =>
        activity ? Compose("lib_inbox.lua", "lib_activity.lua", "lib_send.lua", name) : Compose("lib_inbox.lua", "lib_send.lua", name);

    /// <summary>
    /// Whether a script refused its writer at the epoch fence: every fenced script replies <c>{'fenced', currentEpoch}</c>
    /// (<c>lib_common.lua</c>'s <c>fence</c>), whatever its other replies look like.
    /// </summary>
    public static bool IsFenced(RedisResult reply, out string? currentEpoch)
    {
        ArgumentNullException.ThrowIfNull(reply);
        if (reply.Resp2Type == ResultType.Array)
        {
            return IsFenced((RedisResult[])reply!, out currentEpoch);
        }

        currentEpoch = null;
        return false;
    }

    /// <summary>The same for a script whose replies are all arrays.</summary>
    public static bool IsFenced(RedisResult[] reply, out string? currentEpoch)
    {
        ArgumentNullException.ThrowIfNull(reply);
        if (reply.Length == 2 && reply[0].Resp2Type == ResultType.BulkString && (string?)reply[0] == "fenced")
        {
            currentEpoch = (string?)reply[1];
            return true;
        }

        currentEpoch = null;
        return false;
    }

    /// <summary>
    /// A script file without its whole-line comments and blank lines: StackExchange.Redis looks every call's script
    /// text up by value (hashing all of it), so the comments would cost the client CPU on each call.
    /// </summary>
    private static string Load(string name)
    {
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream("Cfn.Coordination.Scripts." + name)
            ?? throw new InvalidOperationException($"embedded script {name} is missing");
        using var reader = new StreamReader(stream);
        var code = new StringBuilder();
        while (reader.ReadLine() is { } line)
        {
            var trimmed = line.AsSpan().TrimStart();
            if (trimmed.IsEmpty || trimmed.StartsWith("--", StringComparison.Ordinal))
            {
                continue;
            }

            code.Append(line).Append('\n');
        }

        return code.ToString();
    }
}
