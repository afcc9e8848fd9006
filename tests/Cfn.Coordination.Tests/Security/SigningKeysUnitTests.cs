using System.Security.Cryptography;
using System.Text;
using Cfn.Coordination.Security;

namespace Cfn.Coordination.Tests.Security;

/// <summary>HMAC-SHA256 signing of ACKs (SPEC §2.4, D13, §7.4): test vectors, message format, verification, rotation.</summary>
public sealed class SigningKeysUnitTests
{
    private const string Vector1Secret = "test-secret-key";
    private const string Vector1Message = "coord-1:signal-abc:1696969600000:1";
    private const string Vector1Signature = "0e946afa7c29ba0c872a613cc9522f1f6fd5fbad2ef1100fd14eb93955d27908";

    private const string Vector2Secret = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    private const string Vector2Message = "coordinator-2:coordinator-1:coordinator-2:completion:3:1234567890:1696889235123:3";
    private const string Vector2Signature = "ea446c79eb3218ef42e71867ae3f1902d7af508c25772c13385b64f851c85325";

    private const string OldSecret = "old-secret-0123456789abcdef0123456789";
    private const string NewSecret = "new-secret-0123456789abcdef0123456789";

    [Fact]
    public void SignHex_Vector1_MatchesSpec()
    {
        Assert.Equal(Vector1Signature, Hmac.SignHex(Encoding.UTF8.GetBytes(Vector1Secret), Vector1Message));
    }

    [Fact]
    public void SignHex_Vector2HexSecretUsedAsText_MatchesSpec()
    {
        Assert.Equal(Vector2Signature, Hmac.SignHex(Encoding.UTF8.GetBytes(Vector2Secret), Vector2Message));
    }

    [Fact]
    public void Sign_Vector1ThroughSigningKeys_MatchesSpec()
    {
        // "test-secret-key" is shorter than the production minimum, so the vector needs allowShortSecrets.
        var keys = new SigningKeys(Vector1Secret, allowShortSecrets: true);

        Assert.Equal(Vector1Signature, keys.Sign(SignedMessages.Ack("coord-1", "signal-abc", 1696969600000, 1)));
        Assert.True(keys.Verify(Vector1Message, Vector1Signature));
    }

    [Fact]
    public void Sign_Vector2ThroughSigningKeys_UsesSecretTextNotHexDecodedBytes()
    {
        var keys = new SigningKeys(Vector2Secret);
        var message = SignedMessages.Ack("coordinator-2", "coordinator-1:coordinator-2:completion:3:1234567890", 1696889235123, 3);

        var signature = keys.Sign(message);

        Assert.Equal(Vector2Signature, signature);
        // Hex-decoding the secret (the interoperability mistake SPEC §2.4 warns about) gives ddaf07ad…c499c.
        var hexDecoded = Hmac.SignHex(Convert.FromHexString(Vector2Secret), message);
        Assert.StartsWith("ddaf07ad", hexDecoded, StringComparison.Ordinal);
        Assert.NotEqual(hexDecoded, signature);
        Assert.False(keys.Verify(message, hexDecoded));
    }

    [Fact]
    public void Sign_AnyMessage_Is64LowercaseHex()
    {
        var keys = new SigningKeys(Vector2Secret);

        var signature = keys.Sign("anything");

        Assert.Equal(Hmac.HexLength, signature.Length);
        Assert.Matches("^[0-9a-f]{64}$", signature);
        Assert.NotEqual(signature, keys.Sign("anything else"));
        // A plain SHA-256 without the secret is not the HMAC (SPEC §7.4 item 1).
        Assert.NotEqual(Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes("anything"))), signature);
    }

    [Fact]
    public void Ack_Fields_FormatIsCoordinatorSignalTimestampIteration()
    {
        Assert.Equal(Vector1Message, SignedMessages.Ack("coord-1", "signal-abc", 1696969600000, 1));
        Assert.Equal(Vector2Message,
            SignedMessages.Ack("coordinator-2", "coordinator-1:coordinator-2:completion:3:1234567890", 1696889235123, 3));
        Assert.Equal("a:b:9223372036854775807:0", SignedMessages.Ack("a", "b", long.MaxValue, 0));
        Assert.Equal("a:b:0:2147483648", SignedMessages.Ack("a", "b", 0, 2147483648L));
    }

    [Fact]
    public void Signal_Fields_FormatIsSenderReceiverTypeTimestamp()
    {
        Assert.Equal("coordinator-1:coordinator-2:completion:1696889235123",
            SignedMessages.Signal("coordinator-1", "coordinator-2", "completion", 1696889235123));
    }

    [Fact]
    public void Verify_CorrectSignature_ReturnsTrue()
    {
        var keys = new SigningKeys(Vector2Secret);

        Assert.True(keys.Verify(Vector2Message, Vector2Signature));
    }

    [Fact]
    public void Verify_SignatureOfAnotherMessage_ReturnsFalse()
    {
        var keys = new SigningKeys(Vector2Secret);

        Assert.False(keys.Verify(Vector2Message.Replace(":3:1234567890", ":4:1234567890", StringComparison.Ordinal), Vector2Signature));
        Assert.False(keys.Verify(Vector2Message, keys.Sign(Vector2Message + "x")));
    }

    public static TheoryData<string?> MalformedSignatures => new()
    {
        null,
        "",
        "0",
        Vector2Signature[..^1],        // 63 characters
        Vector2Signature[..^2],        // 62 characters: whole bytes, still short
        Vector2Signature + "0",        // 65 characters
        Vector2Signature + "00",       // 66 characters: whole bytes, still long
        Vector2Signature + Vector2Signature,
        new string('z', 64),           // 64 non-hex characters
        Vector2Signature[..^1] + "g",  // one non-hex character at the end
        "g" + Vector2Signature[1..],   // one non-hex character at the start
        " " + Vector2Signature[1..],   // whitespace inside the 64
        Vector2Signature[..32] + new string('-', 32),
        new string('é', 64),           // non-ASCII
    };

    [Theory]
    [MemberData(nameof(MalformedSignatures))]
    public void Verify_MalformedSignature_ReturnsFalseWithoutThrowing(string? signature)
    {
        var keys = new SigningKeys(Vector2Secret, NewSecret);

        var thrown = Record.Exception(() => Assert.False(keys.Verify(Vector2Message, signature)));

        Assert.Null(thrown);
    }

    [Fact]
    public void Verify_ControlCharacterSignature_ReturnsFalseWithoutThrowing()
    {
        // Kept out of the theory data so that test names stay printable.
        var keys = new SigningKeys(Vector2Secret);

        Assert.Null(Record.Exception(() => Assert.False(keys.Verify(Vector2Message, new string('\0', 64)))));
        Assert.Null(Record.Exception(() => Assert.False(keys.Verify(Vector2Message, Vector2Signature[..^1] + "\n"))));
    }

    [Fact]
    public void Verify_UppercaseHexOfCorrectSignature_IsAccepted()
    {
        // Documented finding: verification compares decoded bytes, so hex case does not matter (Node's
        // Buffer.from(hex, 'hex') in the TS verifier behaves the same). Signing always produces lowercase.
        var keys = new SigningKeys(Vector2Secret);

        Assert.True(keys.Verify(Vector2Message, Vector2Signature.ToUpperInvariant()));
    }

    [Fact]
    public void Verify_RotationConfigured_AcceptsOldAndNewSignatures()
    {
        var keys = new SigningKeys(OldSecret, NewSecret);
        const string message = "coord-1:signal-abc:1696969600000:1";

        Assert.True(keys.IsRotating);
        Assert.True(keys.Verify(message, Hmac.SignHex(Encoding.UTF8.GetBytes(OldSecret), message)));
        Assert.True(keys.Verify(message, Hmac.SignHex(Encoding.UTF8.GetBytes(NewSecret), message)));
        Assert.False(keys.Verify(message, Hmac.SignHex(Encoding.UTF8.GetBytes(Vector2Secret), message)));
    }

    [Fact]
    public void Verify_NoRotation_RejectsSignatureMadeWithAnotherSecret()
    {
        var keys = new SigningKeys(OldSecret);
        const string message = "m";

        Assert.False(keys.IsRotating);
        Assert.False(keys.Verify(message, Hmac.SignHex(Encoding.UTF8.GetBytes(NewSecret), message)));
    }

    [Fact]
    public void Sign_RotationFirstStep_SignsWithOldSecret()
    {
        var keys = new SigningKeys(OldSecret, NewSecret);
        const string message = "coord-1:signal-abc:1:1";

        Assert.False(keys.SignWithNew);
        Assert.Equal(Hmac.SignHex(Encoding.UTF8.GetBytes(OldSecret), message), keys.Sign(message));
        // A node that has only the old secret still accepts it.
        Assert.True(new SigningKeys(OldSecret).Verify(message, keys.Sign(message)));
    }

    [Fact]
    public void Sign_RotationSecondStep_SignsWithNewSecret()
    {
        var keys = new SigningKeys(OldSecret, NewSecret, signWithNew: true);
        const string message = "coord-1:signal-abc:1:1";

        Assert.True(keys.SignWithNew);
        Assert.Equal(Hmac.SignHex(Encoding.UTF8.GetBytes(NewSecret), message), keys.Sign(message));
        Assert.True(new SigningKeys(OldSecret, NewSecret).Verify(message, keys.Sign(message)));
        Assert.True(new SigningKeys(NewSecret).Verify(message, keys.Sign(message)));
    }

    [Fact]
    public void Constructor_SignWithNewWithoutNewSecret_Refused()
    {
        var e = Assert.Throws<ArgumentException>(() => new SigningKeys(OldSecret, null, signWithNew: true));

        Assert.Contains("BLOCKING_COORDINATION_SECRET_NEW", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Constructor_SecretShorterThan32_RefusedNamingVariable()
    {
        var e = Assert.Throws<ArgumentException>(() => new SigningKeys(new string('s', SigningKeys.MinimumSecretLength - 1)));

        Assert.Contains("BLOCKING_COORDINATION_SECRET", e.Message, StringComparison.Ordinal);
        Assert.Contains("32", e.Message, StringComparison.Ordinal);
        Assert.Equal("secret", e.ParamName);
    }

    [Fact]
    public void Constructor_SecretOfExactly32_Accepted()
    {
        var keys = new SigningKeys(new string('s', SigningKeys.MinimumSecretLength));

        Assert.Equal(64, keys.Sign("x").Length);
    }

    [Fact]
    public void Constructor_NewSecretShorterThan32_RefusedNamingNewVariable()
    {
        var e = Assert.Throws<ArgumentException>(() => new SigningKeys(OldSecret, "short-new-secret"));

        Assert.Contains("BLOCKING_COORDINATION_SECRET_NEW", e.Message, StringComparison.Ordinal);
        Assert.Equal("newSecret", e.ParamName);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    public void Constructor_MissingSecret_RefusedNamingVariable(string? secret)
    {
        var e = Assert.Throws<ArgumentException>(() => new SigningKeys(secret));

        Assert.Contains("BLOCKING_COORDINATION_SECRET environment variable required", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Constructor_MissingSecretEvenWithShortSecretsAllowed_Refused()
    {
        Assert.Throws<ArgumentException>(() => new SigningKeys("", allowShortSecrets: true));
    }
}
