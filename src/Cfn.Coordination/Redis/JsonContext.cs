using System.Text.Json;
using System.Text.Json.Serialization;
using Cfn.Coordination.Acks;
using Cfn.Coordination.Activity;
using Cfn.Coordination.Heartbeats;
using Cfn.Coordination.Loop;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Resilience;
using Cfn.Coordination.Signals;
using Cfn.Coordination.Swarms;
using Cfn.Coordination.Validation;
using Cfn.Coordination.Work;

namespace Cfn.Coordination.Redis;

/// <summary>
/// Serialisation code generated at build time for every record cfn stores or publishes, with the settings of
/// <see cref="Json.Options"/>: no reflection and fewer allocations on the hot path (a cycle writes a signal, an ACK and
/// several activity records). A type missing here still works through the reflection fallback of <see cref="Json"/>.
/// </summary>
[JsonSourceGenerationOptions(JsonSerializerDefaults.Web,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    WriteIndented = false,
    NumberHandling = JsonNumberHandling.Strict)]
[JsonSerializable(typeof(Signal))]
[JsonSerializable(typeof(SignalAck))]
[JsonSerializable(typeof(ActivityRecord))]
[JsonSerializable(typeof(HeartbeatRecord))]
[JsonSerializable(typeof(WorkItem))]
[JsonSerializable(typeof(QueuedWork))]
[JsonSerializable(typeof(List<WorkEvent>))]
[JsonSerializable(typeof(EscalationRecord))]
[JsonSerializable(typeof(SpawnRequest))]
[JsonSerializable(typeof(DeathNotice))]
[JsonSerializable(typeof(ReplacementNotice))]
[JsonSerializable(typeof(HostRecord))]
[JsonSerializable(typeof(HostCommand))]
[JsonSerializable(typeof(BreakerReport))]
[JsonSerializable(typeof(ValidationRequest))]
[JsonSerializable(typeof(ValidationCompletion))]
[JsonSerializable(typeof(RetryAttemptRecord))]
[JsonSerializable(typeof(RetryFailedRecord))]
[JsonSerializable(typeof(string[]))]
internal sealed partial class JsonContext : JsonSerializerContext;
