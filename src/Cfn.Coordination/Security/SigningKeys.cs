using System.Security.Cryptography;
using System.Text;
using Cfn.Coordination.Security;

// An entry point of the library: public at the namespace root (SPEC D22), its machinery stays in Security.
namespace Cfn.Coordination;

/// <summary>
/// The shared HMAC secrets (SPEC §2.4, D13). The secret's UTF-8 bytes are the key, exactly as the TS coordinators
/// use it (a 64-hex-character secret is not hex-decoded). Rotation: <c>BLOCKING_COORDINATION_SECRET_NEW</c> is tried
/// first when verifying and the current secret is still accepted; signing uses the current secret until
/// <see cref="SignWithNew"/> is set, so a fleet can be rotated without a moment where one node rejects another.
/// </summary>
public sealed class SigningKeys
{
    /// <summary>Shortest secret accepted (D12).</summary>
    public const int MinimumSecretLength = 32;

    /// <summary>Hex characters of a signature (HMAC-SHA256).</summary>
    public const int SignatureHexLength = Hmac.HexLength;

    private readonly byte[] _current;
    private readonly byte[]? _next;

    /// <summary>Creates the key set; throws <see cref="ArgumentException"/> naming the variable when a secret is too short.</summary>
    public SigningKeys(string? secret, string? newSecret = null, bool signWithNew = false, bool allowShortSecrets = false)
    {
        if (string.IsNullOrEmpty(secret))
        {
            throw new ArgumentException(
                "BLOCKING_COORDINATION_SECRET environment variable required for ACK verification. All coordinators must share the same secret for distributed coordination.",
                nameof(secret));
        }

        if (!allowShortSecrets && secret.Length < MinimumSecretLength)
        {
            throw new ArgumentException(
                $"BLOCKING_COORDINATION_SECRET must be at least {MinimumSecretLength} characters (got {secret.Length})", nameof(secret));
        }

        if (!string.IsNullOrEmpty(newSecret) && !allowShortSecrets && newSecret.Length < MinimumSecretLength)
        {
            throw new ArgumentException(
                $"BLOCKING_COORDINATION_SECRET_NEW must be at least {MinimumSecretLength} characters (got {newSecret.Length})", nameof(newSecret));
        }

        if (signWithNew && string.IsNullOrEmpty(newSecret))
        {
            throw new ArgumentException("signing with the new secret requires BLOCKING_COORDINATION_SECRET_NEW", nameof(signWithNew));
        }

        _current = Encoding.UTF8.GetBytes(secret);
        _next = string.IsNullOrEmpty(newSecret) ? null : Encoding.UTF8.GetBytes(newSecret);
        SignWithNew = signWithNew;
    }

    /// <summary>True when new signatures are made with the new secret (the second step of a rotation).</summary>
    public bool SignWithNew { get; }

    /// <summary>True when a second secret is configured.</summary>
    public bool IsRotating => _next is not null;

    /// <summary>Creates keys from the process environment (<c>BLOCKING_COORDINATION_SECRET</c>, <c>_NEW</c>, <c>BLOCKING_COORDINATION_SIGN_WITH_NEW</c>).</summary>
    public static SigningKeys FromEnvironment() =>
        new(
            Environment.GetEnvironmentVariable("BLOCKING_COORDINATION_SECRET"),
            Environment.GetEnvironmentVariable("BLOCKING_COORDINATION_SECRET_NEW"),
            string.Equals(Environment.GetEnvironmentVariable("BLOCKING_COORDINATION_SIGN_WITH_NEW"), "true", StringComparison.OrdinalIgnoreCase));

    /// <summary>Lowercase hex HMAC-SHA256 of <paramref name="message"/> with the signing secret.</summary>
    public string Sign(string message) => Hmac.SignHex(SignWithNew ? _next! : _current, message);

    /// <summary>
    /// True when <paramref name="signature"/> is the HMAC of <paramref name="message"/> under the new secret or the
    /// current one. Never throws: a missing, short, long or non-hex signature is simply invalid.
    /// </summary>
    public bool Verify(string message, string? signature)
    {
        if (signature is null || signature.Length != Hmac.HexLength)
        {
            return false;
        }

        Span<byte> given = stackalloc byte[Hmac.ByteLength];
        if (!Hmac.TryDecodeHex(signature, given))
        {
            return false;
        }

        return (_next is not null && Hmac.Matches(_next, message, given)) || Hmac.Matches(_current, message, given);
    }
}

/// <summary>HMAC-SHA256 helpers: lowercase hex out, constant-time comparison in.</summary>
internal static class Hmac
{
    /// <summary>Bytes in an HMAC-SHA256.</summary>
    public const int ByteLength = 32;

    /// <summary>Hex characters in an HMAC-SHA256.</summary>
    public const int HexLength = 64;

    /// <summary>Lowercase hex HMAC-SHA256 of the UTF-8 bytes of <paramref name="message"/>.</summary>
    public static string SignHex(byte[] key, string message) =>
        Convert.ToHexStringLower(HMACSHA256.HashData(key, Encoding.UTF8.GetBytes(message)));

    internal static bool Matches(byte[] key, string message, ReadOnlySpan<byte> given)
    {
        Span<byte> expected = stackalloc byte[ByteLength];
        HMACSHA256.HashData(key, Encoding.UTF8.GetBytes(message), expected);
        return CryptographicOperations.FixedTimeEquals(expected, given);
    }

    internal static bool TryDecodeHex(string hex, Span<byte> into) =>
        hex.Length == into.Length * 2 &&
        Convert.FromHexString(hex, into, out _, out var written) == System.Buffers.OperationStatus.Done &&
        written == into.Length;
}
