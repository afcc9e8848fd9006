using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Wakeups;

namespace Cfn.Coordination.Tests.Wakeups;

/// <summary>How a dead peer's fate is read from its K8 record, its epoch, a notice and its registry entry (D18).</summary>
public sealed class PeerFateUnitTests
{
    private const string Peer = "coord-d";
    private const string Replacement = "coordinator-1764600000000-abcd1234";

    private static string K8(string status, long fence = 7, string? error = null) => Json.Serialize(new EscalationRecord
    {
        DeadCoordinatorId = Peer,
        SwarmId = "swarm-1",
        Timestamp = 1,
        Status = status,
        NewCoordinatorId = Replacement,
        FencingToken = fence,
        Error = error,
    });

    [Theory]
    [InlineData(EscalationStatus.Escalated)]
    [InlineData(EscalationStatus.ReplacementRequested)]
    [InlineData(EscalationStatus.Replaced)]
    public void Resolve_K8OfThisIncarnation_FollowsTheReplacement(string status)
    {
        var fate = WakeHub.Resolve(Peer, K8(status), "7", null, inRegistry: true);

        Assert.Equal(new PeerFate(Peer, PeerFateKind.HandedOver, Replacement, fate!.Reason), fate);
        Assert.Contains(status, fate.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Resolve_K8Failed_DeadNamingTheFailedReplacementAndTheError()
    {
        var fate = WakeHub.Resolve(Peer, K8(EscalationStatus.Failed, error: "no heartbeat within 60000 ms"), "7", null, inRegistry: false);

        Assert.Equal(PeerFateKind.Dead, fate!.Kind);
        Assert.Equal(Replacement, fate.ReplacementId);
        Assert.Contains("no heartbeat within 60000 ms", fate.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Resolve_K8OfAnEarlierIncarnation_Ignored()
    {
        // The peer restarted after that incident: its epoch moved past the record's fencing token.
        Assert.Null(WakeHub.Resolve(Peer, K8(EscalationStatus.Failed, fence: 7), "8", null, inRegistry: false));
    }

    [Fact]
    public void Resolve_UnregisteredPeerWithoutK8OrNotice_NotJudged()
    {
        // A TS coordinator is never in the registry: being absent from it says nothing.
        Assert.Null(WakeHub.Resolve(Peer, null, null, null, inRegistry: false));
        Assert.Null(WakeHub.Resolve(Peer, "{not json", null, null, inRegistry: false));
    }

    [Fact]
    public void Resolve_NoReplacementNotice_DeadOnlyWhenOutOfTheRegistry()
    {
        var notice = new DeathNotice(Peer, "swarm-1", 1, DeathNotice.NoReplacement);

        Assert.Equal(PeerFateKind.Dead, WakeHub.Resolve(Peer, null, "3", notice, inRegistry: false)!.Kind);
        Assert.Null(WakeHub.Resolve(Peer, null, "3", notice, inRegistry: true));
        Assert.Null(WakeHub.Resolve("coord-other", null, "3", notice, inRegistry: false));
    }

    [Fact]
    public void Resolve_K8WinsOverANotice()
    {
        var notice = new DeathNotice(Peer, "swarm-1", 1, DeathNotice.NoReplacement);

        Assert.Equal(PeerFateKind.HandedOver, WakeHub.Resolve(Peer, K8(EscalationStatus.ReplacementRequested), "7", notice, inRegistry: false)!.Kind);
    }

    [Theory]
    [InlineData("""{"deadCoordinatorId":"coord-d","swarmId":"s1","timestamp":1,"action":"no_replacement"}""", true)]
    [InlineData("""{"deadCoordinatorId":"coord-d","swarmId":"s1","timestamp":1,"action":"spawn_replacement","newCoordinatorId":"coord-r"}""", true)]
    [InlineData("""{"deadCoordinatorId":"coord-d","swarmId":"s1","timestamp":1,"action":"spawn_replacement"}""", false)]
    [InlineData("""{"deadCoordinatorId":"coord-d","swarmId":"s1","timestamp":1,"action":"replacement_failed","newCoordinatorId":"bad id"}""", false)]
    [InlineData("""{"deadCoordinatorId":"coord d","swarmId":"s1","timestamp":1,"action":"no_replacement"}""", false)]
    [InlineData("""{"deadCoordinatorId":"coord-d","swarmId":"s1","timestamp":1,"action":"reboot"}""", false)]
    [InlineData("coordinator coord-d died", false)]
    public void TryParse_Notice_ValidIdsAndAKnownAction(string text, bool valid)
    {
        Assert.Equal(valid, DeathNotices.TryParse(text, out var notice));
        Assert.Equal(valid, notice is not null);
    }

    [Fact]
    public void Serialize_NoReplacementNotice_HasTheC1FieldsAndNoReplacement()
    {
        Assert.Equal("""{"deadCoordinatorId":"coord-d","swarmId":"s1","timestamp":5,"action":"no_replacement"}""",
            Json.Serialize(new DeathNotice(Peer, "s1", 5, DeathNotice.NoReplacement)));
    }
}
