using Cfn.Coordination.Identity;

namespace Cfn.Coordination.Tests.Identity;

/// <summary>The one ID validator (D7, SPEC §0.4, §7.4 item 3): names and signal IDs, refused never rewritten.</summary>
public sealed class IdsUnitTests
{
    public static TheoryData<string?> InvalidNames => new()
    {
        null,
        "",
        new string('a', Ids.MaxNameLength + 1),
        "a*b",
        "a b",
        "../x",
        "a:b",
        "signal*",
        "../../../etc/passwd",
        "coord:malicious",
        "a?b",
        "a[b]",
        "a\\b",
        "a.b",
        "a/b",
        "é",
        " coord-1",
        "coord-1 ",
    };

    /// <summary>Control characters are kept out of the theory data so that test names and reports stay printable.</summary>
    private static readonly string[] ControlCharacterNames = ["a\nb", "a\u0000", "id\nDEL *", "a\tb", "a\rb", "\u007f", "x\u001b[31m"];

    public static TheoryData<string> ValidNames => new()
    {
        "coord-1",
        "signal_abc",
        "coordinator-123",
        "agent-worker-01",
        "CFN_LOOP_3",
        "a",
        "-",
        "_",
        new string('z', Ids.MaxNameLength),
    };

    public static TheoryData<string?> InvalidSignalIds => new()
    {
        null,
        "",
        "a::b",
        ":a",
        "a:",
        ":",
        new string('a', Ids.MaxSignalIdLength + 1),
        "a*b:c",
        "a b:c",
        "a:b?",
        "a:[b]",
        "a:b/c",
        "a:b.c",
    };

    public static TheoryData<string> ValidSignalIds => new()
    {
        "coordinator-2:coordinator-1:coordinator-2:completion:3:1234567890",
        "signal-abc",
        "a:b",
        "a_b:C-D:0",
        new string('s', Ids.MaxSignalIdLength),
        string.Join(':', Enumerable.Repeat("ab", 85)) + ":c", // 85 × "ab" + 84 colons + ":c" = 256 characters
    };

    [Theory]
    [MemberData(nameof(InvalidNames))]
    public void RequireName_InvalidValue_ThrowsInvalidIdExceptionNamingFieldAndRule(string? value)
    {
        var e = Assert.Throws<InvalidIdException>(() => Ids.RequireName(value, "coordinatorId"));

        Assert.Equal("coordinatorId", e.Field);
        Assert.Equal("coordinatorId", e.ParamName);
        Assert.Equal(Ids.NameRule, e.Rule);
        Assert.Contains("coordinatorId", e.Message, StringComparison.Ordinal);
        Assert.Contains("^[A-Za-z0-9_-]{1,64}$", e.Message, StringComparison.Ordinal);
        Assert.False(Ids.IsValidName(value));
    }

    [Fact]
    public void RequireName_ControlCharacters_ThrowsAndMessageDoesNotEchoThem()
    {
        foreach (var value in ControlCharacterNames)
        {
            var e = Assert.Throws<InvalidIdException>(() => Ids.RequireName(value, "swarmId"));

            Assert.Equal("swarmId", e.Field);
            Assert.Equal(Ids.NameRule, e.Rule);
            Assert.False(Ids.IsValidName(value));
            // The offending value is shown escaped: a log line built from the message stays one line.
            Assert.DoesNotContain(e.Message, c => char.IsControl(c));
        }
    }

    [Fact]
    public void RequireName_Exactly64Characters_AcceptedAnd65Refused()
    {
        var max = new string('k', 64);

        Assert.Equal(max, Ids.RequireName(max, "workId"));
        var e = Assert.Throws<InvalidIdException>(() => Ids.RequireName(max + "k", "workId"));
        Assert.Equal("workId", e.Field);
    }

    [Theory]
    [MemberData(nameof(ValidNames))]
    public void RequireName_ValidValue_ReturnsItUnchanged(string value)
    {
        Assert.True(Ids.IsValidName(value));
        Assert.Same(value, Ids.RequireName(value, "coordinatorId"));
        Assert.Same(value, Ids.Require(value, "coordinatorId", IdKind.Name));
    }

    [Theory]
    [MemberData(nameof(ValidSignalIds))]
    public void RequireSignalId_ValidValue_ReturnsItUnchanged(string value)
    {
        Assert.True(Ids.IsValidSignalId(value));
        Assert.Same(value, Ids.RequireSignalId(value, "signalId"));
        Assert.Same(value, Ids.Require(value, "signalId", IdKind.Signal));
    }

    [Fact]
    public void RequireSignalId_256CharacterMessageId_IsExactlyAtTheLimit()
    {
        var value = string.Join(':', Enumerable.Repeat("ab", 85)) + ":c";

        Assert.Equal(Ids.MaxSignalIdLength, value.Length);
        Assert.True(Ids.IsValidSignalId(value));
        Assert.False(Ids.IsValidSignalId(value + "c"));
    }

    [Theory]
    [MemberData(nameof(InvalidSignalIds))]
    public void RequireSignalId_InvalidValue_ThrowsInvalidIdExceptionNamingFieldAndRule(string? value)
    {
        var e = Assert.Throws<InvalidIdException>(() => Ids.RequireSignalId(value, "signalId"));

        Assert.Equal("signalId", e.Field);
        Assert.Equal("signalId", e.ParamName);
        Assert.Equal(Ids.SignalRule, e.Rule);
        Assert.Contains("signalId", e.Message, StringComparison.Ordinal);
        Assert.Contains(Ids.SignalRule, e.Message, StringComparison.Ordinal);
        Assert.False(Ids.IsValidSignalId(value));
    }

    [Fact]
    public void RequireSignalId_ControlCharacters_Throws()
    {
        foreach (var value in new[] { "a:b\nc", "a\u0000:b", "sig\r\n", "a:\tb" })
        {
            var e = Assert.Throws<InvalidIdException>(() => Ids.RequireSignalId(value, "messageId"));
            Assert.Equal("messageId", e.Field);
            Assert.DoesNotContain(e.Message, c => char.IsControl(c));
        }
    }

    [Fact]
    public void Require_NameKind_RefusesColonThatSignalKindAccepts()
    {
        Assert.Equal("a:b", Ids.Require("a:b", "signalId", IdKind.Signal));
        var e = Assert.Throws<InvalidIdException>(() => Ids.Require("a:b", "coordinatorId", IdKind.Name));
        Assert.Equal(Ids.NameRule, e.Rule);
    }

    [Fact]
    public void InvalidIdException_HugeValue_MessageIsTruncated()
    {
        var huge = new string('*', 10_000);

        var e = Assert.Throws<InvalidIdException>(() => Ids.RequireName(huge, "coordinatorId"));

        Assert.True(e.Message.Length < 1_000, $"message has {e.Message.Length} characters");
        Assert.Contains("10000 characters", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void InvalidIdException_NullValue_MessageSaysNull()
    {
        var e = Assert.Throws<InvalidIdException>(() => Ids.RequireName(null, "agentId"));

        Assert.Contains("null", e.Message, StringComparison.Ordinal);
        Assert.IsAssignableFrom<ArgumentException>(e);
    }
}
