using Cfn.Coordination.Identity;
using Cfn.Coordination.Redis;
using StackExchange.Redis;

namespace Cfn.Coordination.Tests.Redis;

/// <summary>Every key builder gives SPEC §1's exact key and refuses invalid parts (SPEC §7.4 item 4).</summary>
public sealed class KeysUnitTests
{
    private const string PlaybookSignalId = "coordinator-1:coordinator-2:completion:3:1234567890";

    [Fact]
    public void Heartbeat_ValidId_IsK1()
    {
        Assert.Equal("blocking:heartbeat:coordinator-1", (string?)Keys.Heartbeat("coordinator-1"));
        Assert.Equal("blocking:heartbeat:", Keys.HeartbeatPrefix);
    }

    [Fact]
    public void ValidatorHeartbeat_OwnFamily_ChosenBySwarmNeverById()
    {
        Assert.Equal("validator:heartbeat:validator-1", (string?)Keys.ValidatorHeartbeat("validator-1"));
        Assert.False(Keys.ValidatorHeartbeatPrefix.StartsWith("blocking:", StringComparison.Ordinal)); // outside runbook #2's and #85's patterns
        Assert.Equal("validator:heartbeat:coordinator-9", (string?)Keys.HeartbeatOf("coordinator-9", "validators"));
        Assert.Equal("blocking:heartbeat:validator-9", (string?)Keys.HeartbeatOf("validator-9", "swarm-1"));
        Assert.Equal("blocking:heartbeat:validator-9", (string?)Keys.HeartbeatOf("validator-9", null));
        Assert.Equal("v-1", Keys.HeartbeatOwner("validator:heartbeat:v-1"));
        Assert.Equal("c-1", Keys.HeartbeatOwner("blocking:heartbeat:c-1"));
        Assert.Null(Keys.HeartbeatOwner("blocking:signal:c-1"));
        Assert.Throws<InvalidIdException>(() => Keys.ValidatorHeartbeat("bad id"));
    }

    [Fact]
    public void Signal_ValidId_IsK2()
    {
        Assert.Equal("blocking:signal:coordinator-1", (string?)Keys.Signal("coordinator-1"));
        Assert.Equal("blocking:signal:", Keys.SignalPrefix);
    }

    [Fact]
    public void Ack_SimpleSignalId_IsK3()
    {
        Assert.Equal("blocking:ack:coord-1:signal-abc", (string?)Keys.Ack("coord-1", "signal-abc"));
        Assert.Equal("blocking:ack:", Keys.AckPrefix);
    }

    [Fact]
    public void Ack_MessageIdFormatSignalId_IsThePlaybooksKey()
    {
        Assert.Equal(
            "blocking:ack:coordinator-2:coordinator-1:coordinator-2:completion:3:1234567890",
            (string?)Keys.Ack("coordinator-2", PlaybookSignalId));
    }

    [Fact]
    public void AckPatternOf_ValidId_IsExactPrefixPattern()
    {
        Assert.Equal("blocking:ack:coordinator-1:*", Keys.AckPatternOf("coordinator-1"));
    }

    [Fact]
    public void Idempotency_MessageId_IsK4()
    {
        Assert.Equal("blocking:idempotency:" + PlaybookSignalId, (string?)Keys.Idempotency(PlaybookSignalId));
    }

    [Fact]
    public void Inbox_ValidId_IsInboxStream()
    {
        Assert.Equal("blocking:inbox:coordinator-1", (string?)Keys.Inbox("coordinator-1"));
    }

    [Fact]
    public void RecoveryKeys_ValidIds_AreSpecKeys()
    {
        Assert.Equal("blocking:unblock:coordinator-1", (string?)Keys.Unblock("coordinator-1"));
        Assert.Equal("coordinator:escalation:coordinator-1", (string?)Keys.Escalation("coordinator-1"));
        Assert.Equal("coordinator:spawn:coordinator-1696889234567-abc12345", (string?)Keys.Spawn("coordinator-1696889234567-abc12345"));
        Assert.Equal("swarm:swarm-123:blocking:coordinator-1", (string?)Keys.SwarmBlocking("swarm-123", "coordinator-1"));
        Assert.Equal("swarm:swarm-123:coordinator:dead", Keys.SwarmDead("swarm-123").ToString());
        Assert.Equal("swarm:swarm-123:coordinator:replacement", Keys.SwarmReplacement("swarm-123").ToString());
    }

    [Fact]
    public void Activity_ValidId_IsK7()
    {
        Assert.Equal("coordinator:activity:coordinator-1", (string?)Keys.Activity("coordinator-1"));
        Assert.Equal("coordinator:activity:", Keys.ActivityPrefix);
    }

    [Fact]
    public void Work_ValidIds_IsK10()
    {
        Assert.Equal("coordinator:work:swarm-123:coordinator-1:task-7", (string?)Keys.Work("swarm-123", "coordinator-1", "task-7"));
        Assert.Equal("coordinator:work:swarm-123:coordinator-1:*", Keys.WorkPatternOf("swarm-123", "coordinator-1"));
    }

    [Fact]
    public void Epoch_ValidId_IsEpochCounter()
    {
        Assert.Equal("coordinator:epoch:coordinator-1", (string?)Keys.Epoch("coordinator-1"));
    }

    [Fact]
    public void Registry_IsOutsideTheRunbookGlobs()
    {
        var registry = (string?)Keys.Registry;

        Assert.Equal("blocking:coordinators", registry);
        // Neither the heartbeat count (#1: blocking:heartbeat:*) nor the post-cleanup check (#85: blocking:*{id}*) sees it.
        Assert.False(registry!.StartsWith(Keys.HeartbeatPrefix, StringComparison.Ordinal));
        Assert.DoesNotContain("coordinator-1", registry, StringComparison.Ordinal);
    }

    [Fact]
    public void Events_ValidId_IsLiteralChannel()
    {
        var channel = Keys.Events("coordinator-1");

        Assert.Equal("cfn:events:coordinator-1", channel.ToString());
        Assert.False(channel.IsPattern);
    }

    public static TheoryData<string, string> InvalidSingleIdBuilders => new()
    {
        { "heartbeat", "coordinatorId" },
        { "signal", "receiverId" },
        { "inbox", "receiverId" },
        { "activity", "coordinatorId" },
        { "epoch", "coordinatorId" },
        { "events", "coordinatorId" },
        { "ackPattern", "coordinatorId" },
    };

    [Theory]
    [MemberData(nameof(InvalidSingleIdBuilders))]
    public void SingleIdBuilder_InvalidId_ThrowsNamingField(string builder, string field)
    {
        foreach (var bad in new[] { "a*b", "a:b", "", "a b", "../x", new string('a', 65), "a\nb" })
        {
            Action build = builder switch
            {
                "heartbeat" => () => Keys.Heartbeat(bad),
                "signal" => () => Keys.Signal(bad),
                "inbox" => () => Keys.Inbox(bad),
                "activity" => () => Keys.Activity(bad),
                "epoch" => () => Keys.Epoch(bad),
                "events" => () => Keys.Events(bad),
                "ackPattern" => () => Keys.AckPatternOf(bad),
                _ => throw new ArgumentOutOfRangeException(nameof(builder)),
            };

            var e = Assert.Throws<InvalidIdException>(build);
            Assert.Equal(field, e.Field);
        }
    }

    [Fact]
    public void SingleIdBuilder_NullId_Throws()
    {
        Assert.Throws<InvalidIdException>(() => Keys.Heartbeat(null!));
        Assert.Throws<InvalidIdException>(() => Keys.Activity(null!));
        Assert.Throws<InvalidIdException>(() => Keys.Idempotency(null!));
    }

    [Fact]
    public void Ack_InvalidCoordinatorId_ThrowsNamingCoordinatorId()
    {
        // A ':' in the coordinator part would make blocking:ack:{a}:{b} ambiguous.
        Assert.Equal("coordinatorId", Assert.Throws<InvalidIdException>(() => Keys.Ack("coord:malicious", "sig")).Field);
        Assert.Equal("coordinatorId", Assert.Throws<InvalidIdException>(() => Keys.Ack("coord-*", "sig")).Field);
    }

    [Fact]
    public void Ack_InvalidSignalId_ThrowsNamingSignalId()
    {
        foreach (var bad in new[] { "a::b", ":a", "a:", "a*b:c", "", new string('a', 257) })
        {
            Assert.Equal("signalId", Assert.Throws<InvalidIdException>(() => Keys.Ack("coord-1", bad)).Field);
        }
    }

    [Fact]
    public void Idempotency_InvalidMessageId_ThrowsNamingMessageId()
    {
        Assert.Equal("messageId", Assert.Throws<InvalidIdException>(() => Keys.Idempotency("a*:b")).Field);
        Assert.Equal("coordinatorId", Assert.Throws<InvalidIdException>(() => Keys.Unblock("coord:1")).Field);
        Assert.Equal("swarmId", Assert.Throws<InvalidIdException>(() => Keys.SwarmBlocking("s*", "c")).Field);
    }

    [Fact]
    public void Work_InvalidPart_ThrowsNamingThatPart()
    {
        Assert.Equal("swarmId", Assert.Throws<InvalidIdException>(() => Keys.Work("swarm:1", "coord-1", "w1")).Field);
        Assert.Equal("coordinatorId", Assert.Throws<InvalidIdException>(() => Keys.Work("swarm-1", "coord*", "w1")).Field);
        Assert.Equal("workId", Assert.Throws<InvalidIdException>(() => Keys.Work("swarm-1", "coord-1", "w 1")).Field);
        Assert.Equal("swarmId", Assert.Throws<InvalidIdException>(() => Keys.WorkPatternOf("*", "coord-1")).Field);
        Assert.Equal("coordinatorId", Assert.Throws<InvalidIdException>(() => Keys.WorkPatternOf("swarm-1", "?")).Field);
    }

    [Fact]
    public void AckPatternOf_PrefixSharingIds_DoNotOverlap()
    {
        // SPEC §7.14 item 7: cleaning coordinator-1 must not touch coordinator-10.
        var pattern = Keys.AckPatternOf("coordinator-1");
        var other = (string?)Keys.Ack("coordinator-10", "sig-1");

        Assert.False(GlobMatches(pattern, other!));
        Assert.True(GlobMatches(pattern, ((string?)Keys.Ack("coordinator-1", "sig-1"))!));
    }

    /// <summary>Redis glob semantics for the only metacharacter the builders emit: a trailing '*'.</summary>
    private static bool GlobMatches(string pattern, string key) =>
        pattern.EndsWith('*') ? key.StartsWith(pattern[..^1], StringComparison.Ordinal) : pattern == key;

    [Fact]
    public void RedisKey_BuiltFromValidParts_HasNoGlobOrWhitespace()
    {
        RedisKey[] keys =
        [
            Keys.Heartbeat("c-1"), Keys.Signal("c-1"), Keys.Ack("c-1", PlaybookSignalId), Keys.Idempotency(PlaybookSignalId),
            Keys.Inbox("c-1"), Keys.Activity("c-1"), Keys.Work("s-1", "c-1", "w-1"), Keys.Epoch("c-1"),
        ];

        foreach (var key in keys)
        {
            var text = (string?)key;
            Assert.NotNull(text);
            Assert.DoesNotContain(text, c => c is '*' or '?' or '[' or ']' or '\\' || char.IsWhiteSpace(c) || char.IsControl(c));
        }
    }
}
