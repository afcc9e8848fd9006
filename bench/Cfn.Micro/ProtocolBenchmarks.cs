using BenchmarkDotNet.Attributes;
using Cfn.Coordination;
using Cfn.Coordination.Acks;
using Cfn.Coordination.Activity;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Security;
using Cfn.Coordination.Signals;
using Cfn.Coordination.Wakeups;

namespace Cfn.Micro;

/// <summary>
/// The in-process steps of one cycle of row c (send → receive → ACK → verified wait), each alone: what the signing,
/// verification and JSON of a signal and an ACK cost in CPU and managed allocation.
/// </summary>
[MemoryDiagnoser]
[ShortRunJob]
public class ProtocolBenchmarks
{
    private const string Sender = "coordinator-1700000000000-abcdefgh";
    private const string Receiver = "validator-1700000000001-ijklmnop";

    private readonly SigningKeys _keys = new("micro-benchmark-secret-0123456789abcdef");
    private string _signalId = "";
    private Signal _signal = null!;
    private string _signalJson = "";
    private SignalAck _ack = null!;
    private string _ackJson = "";
    private byte[] _wakeUp = [];
    private ActivityRecord _activity = null!;

    [GlobalSetup]
    public void Setup()
    {
        _signalId = $"{Sender}:{Receiver}:completion:3:1700000000123";
        _signal = SignalSignatures.Sign(_keys, new Signal
        {
            Timestamp = 1_700_000_000_123,
            SenderId = Sender,
            ReceiverId = Receiver,
            Iteration = 3,
            Type = SignalTypes.Completion,
            MessageId = _signalId,
        });
        _signalJson = Json.Serialize(_signal);
        _ack = new SignalAck
        {
            CoordinatorId = Receiver,
            SignalId = _signalId,
            Timestamp = 1_700_000_000_456,
            Iteration = 3,
            Signature = _keys.Sign(SignedMessages.Ack(Receiver, _signalId, 1_700_000_000_456, 3)),
            Metadata = new AckMetadata { SignalType = SignalTypes.Completion },
        };
        _ackJson = Json.Serialize(_ack);
        _wakeUp = System.Text.Encoding.UTF8.GetBytes($"ack {_signalId} {Receiver} {_ackJson}"); // as the subscription delivers it
        _activity = new ActivityRecord
        {
            CoordinatorId = Sender,
            SwarmId = "swarm-1",
            LastActivity = Json.NowMarker,
            Iteration = 3,
            Status = "blocking",
            WaitingFor = Receiver,
            WaitingForSignal = _signalId,
            BlockingSince = Json.NowMarker,
            TimeoutMs = 300_000,
        };
    }

    /// <summary>The sender signs a signal (both signatures).</summary>
    [Benchmark]
    public Signal SignSignal() => SignalSignatures.Sign(_keys, _signal with { Signature = null, ContentSignature = null });

    [Benchmark]
    public string SerializeSignal() => Json.Serialize(_signal);

    /// <summary>The receiver parses and verifies a signal from its inbox.</summary>
    [Benchmark]
    public bool ParseAndVerifySignal() =>
        Json.TryDeserialize<Signal>(_signalJson, out var signal, out _) && SignalSignatures.Verify(_keys, signal!);

    /// <summary>The receiver signs and serialises its ACK.</summary>
    [Benchmark]
    public string SignAndSerializeAck() =>
        Json.Serialize(_ack with { Signature = _keys.Sign(SignedMessages.Ack(Receiver, _signalId, _ack.Timestamp, _ack.Iteration)) });

    /// <summary>The waiter parses the wake-up and verifies the ACK it carries.</summary>
    [Benchmark]
    public int ParseWakeUpAndVerifyAck() => (int)(
        WakeMessage.TryParseAck(_wakeUp, out _, out var acker, out var json)
            ? AckVerifier.Verify(_keys, json, acker, _signalId, out _)
            : AckRejection.Malformed);

    /// <summary>The K7 record a progress script writes (serialised without its time fields).</summary>
    [Benchmark]
    public string SerializeActivityForStamp() => Json.SerializeForStamp(_activity).Json;
}
