using System.Security.Cryptography;
using System.Text;
using Cfn.Coordination.Acks;
using Cfn.Coordination.Security;

namespace Cfn.Coordination.Tests.Acks;

public sealed class AckVerifierUnitTests
{
    private const string Secret = "unit-test-secret-0123456789abcdef0123456789";
    private const string Coordinator = "coord-1";
    private const string SignalId = "coord-0:coord-1:completion:3:1696969600000";
    private const long Timestamp = 1_696_969_600_123;

    private static readonly SigningKeys Keys = new(Secret);

    [Fact]
    public void Verify_GenuineAck_AcceptedWithFields()
    {
        var raw = AckJson(signature: Sign(Secret, Coordinator, SignalId, Timestamp, 2), iteration: 2);

        var rejection = AckVerifier.Verify(Keys, raw, Coordinator, SignalId, out var ack);

        Assert.Equal(AckRejection.None, rejection);
        Assert.NotNull(ack);
        Assert.Equal(Coordinator, ack.CoordinatorId);
        Assert.Equal(SignalId, ack.SignalId);
        Assert.Equal(Timestamp, ack.Timestamp);
        Assert.Equal(2, ack.Iteration);
        Assert.Equal("received", ack.Status);
        Assert.Equal("completion", ack.Metadata?.SignalType);
    }

    [Fact]
    public void Verify_TsTestVector1_Accepted()
    {
        // SPEC §2.4: secret "test-secret-key", message "coord-1:signal-abc:1696969600000:1".
        var keys = new SigningKeys("test-secret-key", allowShortSecrets: true);
        const string raw = """{"coordinatorId":"coord-1","signalId":"signal-abc","timestamp":1696969600000,"iteration":1,"status":"received","signature":"0e946afa7c29ba0c872a613cc9522f1f6fd5fbad2ef1100fd14eb93955d27908","metadata":{"signalType":"completion"}}""";

        Assert.Equal(AckRejection.None, AckVerifier.Verify(keys, raw, "coord-1", "signal-abc", out _));
    }

    [Fact]
    public void Verify_TsTestVector2WithHexLookingSecretUsedAsText_Accepted()
    {
        // SPEC §2.4: the 64-hex-character secret is used as text (UTF-8), never hex-decoded.
        var keys = new SigningKeys("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
        const string raw = """{"coordinatorId":"coordinator-2","signalId":"coordinator-1:coordinator-2:completion:3:1234567890","timestamp":1696889235123,"iteration":3,"status":"received","signature":"ea446c79eb3218ef42e71867ae3f1902d7af508c25772c13385b64f851c85325"}""";

        Assert.Equal(AckRejection.None,
            AckVerifier.Verify(keys, raw, "coordinator-2", "coordinator-1:coordinator-2:completion:3:1234567890", out _));
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("   ")]
    [InlineData("not json")]
    [InlineData("{")]
    [InlineData("null")]
    [InlineData("42")]
    [InlineData("\"a string\"")]
    [InlineData("[]")]
    [InlineData("{}")]
    [InlineData("""{"coordinatorId":"coord-1"}""")]
    [InlineData("""{"coordinatorId":"coord-1","signalId":"s","timestamp":"1696969600123","iteration":1,"signature":"ab"}""")]
    [InlineData("""{"coordinatorId":"coord-1","signalId":"s","timestamp":1e400,"iteration":1,"signature":"ab"}""")]
    [InlineData("""{"coordinatorId":"coord-1","signalId":"s","timestamp":1.5,"iteration":1,"signature":"ab"}""")]
    [InlineData("""{"coordinatorId":"coord-1","signalId":"s","timestamp":1,"iteration":1,"signature":123}""")]
    [InlineData("""{"coordinatorId":["coord-1"],"signalId":"s","timestamp":1,"iteration":1,"signature":"ab"}""")]
    [InlineData("""{"coordinatorId":"","signalId":"s","timestamp":1,"iteration":1,"signature":"ab"}""")]
    [InlineData("""{"coordinatorId":"coord-1","signalId":"s","timestamp":1,"iteration":1,"signature":"ab","metadata":5}""")]
    public void Verify_MalformedValue_RejectedAsMalformedWithoutThrowing(string? raw)
    {
        var rejection = AckVerifier.Verify(Keys, raw, Coordinator, SignalId, out var ack);

        Assert.Equal(AckRejection.Malformed, rejection);
        Assert.Null(ack);
    }

    [Theory]
    [InlineData("""{"coordinatorId":"\uD800","signalId":"s","timestamp":1,"iteration":1,"signature":"ab"}""")]
    [InlineData("""{"coordinatorId":"coord-1","signalId":"s","timestamp":1,"iteration":1,"signature":"\uDC00\uD800"}""")]
    [InlineData("""{"coordinatorId":"coord-1","signalId":"s","timestamp":1,"iteration":1,"signature":"ab","extra":{"deep":[1,2,{"x":null}]}}""")]
    [InlineData("{\"coordinatorId\":\"coord-1\"\u0000}")]
    [InlineData("\uFEFF{\"coordinatorId\":\"coord-1\"}")]
    public void Verify_HostileValue_NeverThrowsAndNeverAccepts(string raw)
    {
        var rejection = AckVerifier.Verify(Keys, raw, Coordinator, SignalId, out _);

        Assert.NotEqual(AckRejection.None, rejection);
    }

    [Fact]
    public void Verify_MissingSignatureField_RejectedAsMissingSignature()
    {
        var raw = AckJson(signature: null);

        Assert.Equal(AckRejection.MissingSignature, AckVerifier.Verify(Keys, raw, Coordinator, SignalId, out _));
    }

    [Fact]
    public void Verify_EmptySignature_RejectedAsMissingSignature()
    {
        var raw = AckJson(signature: "");

        Assert.Equal(AckRejection.MissingSignature, AckVerifier.Verify(Keys, raw, Coordinator, SignalId, out _));
    }

    [Fact]
    public void Verify_SignatureNull_RejectedAsMissingSignature()
    {
        var raw = AckJson(signature: null).Replace(",\"metadata\"", ",\"signature\":null,\"metadata\"", StringComparison.Ordinal);

        Assert.Equal(AckRejection.MissingSignature, AckVerifier.Verify(Keys, raw, Coordinator, SignalId, out _));
    }

    public static TheoryData<string> BadSignatures
    {
        get
        {
            var genuine = Sign(Secret, Coordinator, SignalId, Timestamp, 1);
            return
            [
                new string('0', 64),
                Sign("another-secret-0123456789abcdef0123456789", Coordinator, SignalId, Timestamp, 1),
                Sign(Secret, Coordinator, SignalId, Timestamp, 2), // signed for another iteration
                Sign(Secret, Coordinator, SignalId, Timestamp + 1, 1), // signed for another time
                Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes($"{Coordinator}:{SignalId}:{Timestamp}:1"))), // plain hash
                genuine[..63], // one short
                genuine + "0", // one long
                genuine[..62], // one byte short
                genuine + "00", // one byte long
                genuine + genuine,
                "abc",
                "0",
                "zz" + genuine[2..], // non-hex, right length
                "g" + genuine[1..],
                " " + genuine[1..],
                genuine[..32] + "-" + genuine[33..],
                "é" + genuine[1..], // non-ASCII, right length in chars
                Convert.ToBase64String(Convert.FromHexString(genuine)), // base64 of the right bytes
            ];
        }
    }

    [Theory]
    [MemberData(nameof(BadSignatures))]
    public void Verify_BadWrongLengthOrNonHexSignature_RejectedAsBadSignatureWithoutThrowing(string signature)
    {
        var raw = AckJson(signature: signature, iteration: 1);

        var rejection = AckVerifier.Verify(Keys, raw, Coordinator, SignalId, out _);

        Assert.Equal(AckRejection.BadSignature, rejection);
    }

    [Fact]
    public void Verify_TamperedIterationAfterSigning_RejectedAsBadSignature()
    {
        var raw = AckJson(signature: Sign(Secret, Coordinator, SignalId, Timestamp, 1), iteration: 9);

        Assert.Equal(AckRejection.BadSignature, AckVerifier.Verify(Keys, raw, Coordinator, SignalId, out _));
    }

    [Fact]
    public void Verify_GenuineAckOfAnotherCoordinator_RejectedAsCoordinatorMismatch()
    {
        var raw = AckJson(signature: Sign(Secret, Coordinator, SignalId, Timestamp, 1), iteration: 1);

        Assert.Equal(AckRejection.CoordinatorMismatch, AckVerifier.Verify(Keys, raw, "coord-2", SignalId, out _));
    }

    [Fact]
    public void Verify_GenuineAckOfAnotherSignal_RejectedAsSignalMismatch()
    {
        var raw = AckJson(signature: Sign(Secret, Coordinator, SignalId, Timestamp, 1), iteration: 1);

        Assert.Equal(AckRejection.SignalMismatch, AckVerifier.Verify(Keys, raw, Coordinator, "other-signal", out _));
    }

    [Fact]
    public void Verify_UnsignedFieldsChanged_StillAccepted()
    {
        // status and metadata are not signed (SPEC §2.4): changing them must not break TS interoperability.
        var raw = AckJson(signature: Sign(Secret, Coordinator, SignalId, Timestamp, 1), iteration: 1)
            .Replace("\"completion\"", "\"error\"", StringComparison.Ordinal);

        Assert.Equal(AckRejection.None, AckVerifier.Verify(Keys, raw, Coordinator, SignalId, out _));
    }

    [Fact]
    public void Verify_RotatingKeys_AcceptOldAndNewSecretRejectOthers()
    {
        const string newSecret = "rotated-secret-fedcba9876543210fedcba98765";
        var rotating = new SigningKeys(Secret, newSecret);
        var byNew = AckJson(signature: Sign(newSecret, Coordinator, SignalId, Timestamp, 1), iteration: 1);
        var byOld = AckJson(signature: Sign(Secret, Coordinator, SignalId, Timestamp, 1), iteration: 1);
        var byOther = AckJson(signature: Sign("some-other-secret-0000000000000000000000", Coordinator, SignalId, Timestamp, 1), iteration: 1);

        Assert.Equal(AckRejection.None, AckVerifier.Verify(rotating, byNew, Coordinator, SignalId, out _));
        Assert.Equal(AckRejection.None, AckVerifier.Verify(rotating, byOld, Coordinator, SignalId, out _));
        Assert.Equal(AckRejection.BadSignature, AckVerifier.Verify(rotating, byOther, Coordinator, SignalId, out _));
        Assert.Equal(AckRejection.BadSignature, AckVerifier.Verify(new SigningKeys(Secret), byNew, Coordinator, SignalId, out _));
    }

    [Theory]
    [InlineData((int)AckRejection.Malformed, "malformed")]
    [InlineData((int)AckRejection.MissingSignature, "missing_signature")]
    [InlineData((int)AckRejection.BadSignature, "bad_signature")]
    [InlineData((int)AckRejection.CoordinatorMismatch, "coordinator_mismatch")]
    [InlineData((int)AckRejection.SignalMismatch, "signal_mismatch")]
    public void Label_EachRejection_HasMetricLabel(int rejection, string label) // the enum is internal: a public theory takes its value
    {
        Assert.Equal(label, AckVerifier.Label((AckRejection)rejection));
    }

    private static string Sign(string secret, string coordinatorId, string signalId, long timestamp, long iteration) =>
        Convert.ToHexStringLower(HMACSHA256.HashData(
            Encoding.UTF8.GetBytes(secret), Encoding.UTF8.GetBytes($"{coordinatorId}:{signalId}:{timestamp}:{iteration}")));

    private static string AckJson(string? signature, long iteration = 1)
    {
        var sig = signature is null ? "" : $",\"signature\":\"{signature}\"";
        return $"{{\"coordinatorId\":\"{Coordinator}\",\"signalId\":\"{SignalId}\",\"timestamp\":{Timestamp},\"iteration\":{iteration},\"status\":\"received\"{sig},\"metadata\":{{\"signalType\":\"completion\"}}}}";
    }
}
