using System.Reflection;
using StackExchange.Redis;

namespace Cfn.Coordination.Redis;

/// <summary>
/// The Lua scripts of <c>Redis/Scripts/</c>, embedded in the assembly. Each is sent once per connection and then run
/// by SHA (<see cref="LuaScript"/> caches it), so a call costs one round trip.
/// </summary>
internal static class RedisScripts
{
    public static readonly string SendSignal = WithActivity("lib_send.lua") + Load("send_signal.lua");
    public static readonly string SendAndWait = WithActivity("lib_send.lua") + Load("send_and_wait.lua");
    public static readonly string ConsumeSignal = Load("lib_inbox.lua") + Load("consume_signal.lua");
    public static readonly string InboxNext = Load("lib_inbox.lua") + Load("inbox_next.lua");
    public static readonly string Ack = WithActivity("ack.lua");
    public static readonly string Heartbeat = Load("heartbeat.lua");
    public static readonly string EpochClaim = Load("epoch_claim.lua");
    public static readonly string Activity = WithActivity("activity.lua");
    public static readonly string WaitBegin = WithActivity("wait_begin.lua");
    public static readonly string WorkCas = Load("lib_stamp.lua") + Load("work_cas.lua");
    public static readonly string WorkRequeue = Load("lib_stamp.lua") + Load("work_requeue.lua");
    public static readonly string MonitorCheck = Load("monitor_check.lua");
    public static readonly string CleanupCoordinator = Load("cleanup_coordinator.lua");
    public static readonly string MoveSignal = Load("move_signal.lua");
    public static readonly string CompareAndSet = Load("compare_and_set.lua");
    public static readonly string HashCompareAndSet = Load("hash_compare_and_set.lua");
    public static readonly string CompareAndDelete = Load("compare_and_delete.lua");
    public static readonly string WorkEnqueue = Load("work_enqueue.lua");
    public static readonly string WorkRequeueTaken = Load("work_requeue_taken.lua");
    public static readonly string WorkUntake = Load("work_untake.lua");
    public static readonly string ValidatorRecord = Load("validator_record.lua");
    public static readonly string ResendSignal = Load("lib_send.lua") + Load("resend_signal.lua");
    public static readonly string DeliverSignal = Load("lib_send.lua") + Load("deliver_signal.lua");
    public static readonly string DeleteInboxIfEmpty = Load("delete_inbox_if_empty.lua");

    /// <summary>A script that records progress: <c>lib_activity.lua</c> (its K7 write) goes first. (<c>lib_inbox.lua</c>, the
    /// consume step, goes first in the two inbox scripts the same way.)</summary>
    private static string WithActivity(string name) => Load("lib_activity.lua") + Load(name);

    private static string Load(string name)
    {
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream("Cfn.Coordination.Scripts." + name)
            ?? throw new InvalidOperationException($"embedded script {name} is missing");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }
}
