using Cfn.Coordination.Recovery;

namespace Cfn.Coordination.Tests.Recovery;

/// <summary>Which coordinator a key belongs to, by exact segments (SPEC §2.12, W36): <c>c-1</c> never owns <c>c-10</c>'s keys.</summary>
public sealed class KeyOwnershipUnitTests
{
    [Theory]
    // K1
    [InlineData("blocking:heartbeat:c-1", "c-1", KeyOwnership.Heartbeat)]
    [InlineData("blocking:heartbeat:c-10", "c-1", null)]
    [InlineData("blocking:heartbeat:c-1", "c-10", null)]
    [InlineData("blocking:heartbeat:xc-1", "c-1", null)]
    // A validator's heartbeat
    [InlineData("validator:heartbeat:v-1", "v-1", KeyOwnership.Heartbeat)]
    [InlineData("validator:heartbeat:v-10", "v-1", null)]
    [InlineData("validator:heartbeat:v-1:x", "v-1", null)]
    [InlineData("validator:durations:v-1", "v-1", null)]
    // K2 and the inbox
    [InlineData("blocking:signal:c-1", "c-1", KeyOwnership.Signals)]
    [InlineData("blocking:signal:c-10", "c-1", null)]
    [InlineData("blocking:inbox:c-1", "c-1", KeyOwnership.Signals)]
    [InlineData("blocking:inbox:c-12", "c-1", null)]
    // K3: the acker, and the sender and receiver segments of the signal ID
    [InlineData("blocking:ack:c-1:c-2:c-1:completion:1:100", "c-1", KeyOwnership.Acks)]
    [InlineData("blocking:ack:c-2:c-1:c-2:completion:1:100", "c-1", KeyOwnership.Acks)]
    [InlineData("blocking:ack:c-2:c-3:c-1:completion:1:100", "c-1", KeyOwnership.Acks)]
    [InlineData("blocking:ack:c-2:c-3:c-1:completion:1:100", "c-3", KeyOwnership.Acks)]
    [InlineData("blocking:ack:c-10:c-11:c-12:completion:1:100", "c-1", null)]
    [InlineData("blocking:ack:c-2:c-3:c-4:completion:1:100", "completion", null)]
    [InlineData("blocking:ack:c-2:c-3:c-4:completion:1:100", "100", null)]
    [InlineData("blocking:ack:c-2:c-3:c-4:completion:1:c-1", "c-1", null)]
    // K4: sender and receiver segments of the message ID
    [InlineData("blocking:idempotency:c-1:c-2:completion:1:100", "c-1", KeyOwnership.Idempotency)]
    [InlineData("blocking:idempotency:c-2:c-1:completion:1:100", "c-1", KeyOwnership.Idempotency)]
    [InlineData("blocking:idempotency:c-10:c-2:completion:1:100", "c-1", null)]
    [InlineData("blocking:idempotency:c-2:c-10:completion:1:100", "c-1", null)]
    [InlineData("blocking:idempotency:c-2:c-3:completion:1:100", "completion", null)]
    [InlineData("blocking:idempotency:c-1-test", "c-1", null)]
    // K5: blocking:retry:{signalId}:{attempt}
    [InlineData("blocking:retry:c-1:c-2:completion:1:100:1", "c-1", KeyOwnership.Other)]
    [InlineData("blocking:retry:c-2:c-1:completion:1:100:1", "c-1", KeyOwnership.Other)]
    [InlineData("blocking:retry:c-2:c-10:completion:1:100:1", "c-1", null)]
    [InlineData("blocking:retry:c-2:c-3:completion:1:100:1", "1", null)]
    // K6: blocking:retry:failed:{signalId}
    [InlineData("blocking:retry:failed:c-1:c-2:completion:1:100", "c-1", KeyOwnership.Other)]
    [InlineData("blocking:retry:failed:c-2:c-1:completion:1:100", "c-1", KeyOwnership.Other)]
    [InlineData("blocking:retry:failed:c-2:c-11:completion:1:100", "c-1", null)]
    [InlineData("blocking:retry:failed:c-2:c-3:completion:1:100", "failed", null)]
    // the sender's index of its K6 records: blocking:retry:failed-by:{senderId}
    [InlineData("blocking:retry:failed-by:c-1", "c-1", KeyOwnership.Other)]
    [InlineData("blocking:retry:failed-by:c-10", "c-1", null)]
    [InlineData("blocking:retry:failed-by:c-1", "failed-by", null)]
    // force-unblock marker and K14
    [InlineData("blocking:unblock:c-1", "c-1", KeyOwnership.Other)]
    [InlineData("blocking:unblock:c-10", "c-1", null)]
    [InlineData("blocking:warning:c-1", "c-1", KeyOwnership.Other)]
    [InlineData("blocking:warning:c-19", "c-1", null)]
    // K7
    [InlineData("coordinator:activity:c-1", "c-1", KeyOwnership.Activity)]
    [InlineData("coordinator:activity:c-10", "c-1", null)]
    // K11: the coordinator segment only, never the swarm segment
    [InlineData("swarm:s-1:blocking:c-1", "c-1", KeyOwnership.Other)]
    [InlineData("swarm:s-1:blocking:c-10", "c-1", null)]
    [InlineData("swarm:c-1:blocking:c-2", "c-1", null)]
    // shared keys and keys the cleanup must leave alone (work is transferred, escalation and spawn are history)
    [InlineData("blocking:coordinators", "coordinators", null)]
    [InlineData("blocking:cleanup:lock", "lock", null)]
    [InlineData("coordinator:escalation:c-1", "c-1", null)]
    [InlineData("coordinator:spawn:c-1", "c-1", null)]
    [InlineData("coordinator:work:s-1:c-1:w-1", "c-1", null)]
    [InlineData("coordinator:epoch:c-1", "c-1", null)]
    [InlineData("swarm:s-1:coordinator:dead", "s-1", null)]
    public void CategoryFor_KeyAndCoordinator_ExactSegmentMatchOnly(string key, string coordinatorId, string? expected)
    {
        Assert.Equal(expected, KeyOwnership.CategoryFor(key, coordinatorId));
    }

    [Fact]
    public void Owners_AckOfSignalBetweenTwoOthers_NamesAckerSenderAndReceiverOnce()
    {
        var owners = KeyOwnership.Owners("blocking:ack:c-1:c-1:c-2:completion:1:100").ToList();

        Assert.Equal([("c-1", KeyOwnership.Acks), ("c-2", KeyOwnership.Acks)], owners);
    }

    [Fact]
    public void Owners_SharedKeys_HaveNoOwner()
    {
        Assert.Empty(KeyOwnership.Owners("blocking:coordinators"));
        Assert.Empty(KeyOwnership.Owners("blocking:cleanup:lock"));
        Assert.Empty(KeyOwnership.Owners("coordinator:health"));
        Assert.Empty(KeyOwnership.Owners("coordinator:deadlines"));
        Assert.Empty(KeyOwnership.Owners("unrelated"));
    }

    [Fact]
    public void Categories_InReportOrder()
    {
        Assert.Equal(
            [KeyOwnership.Heartbeat, KeyOwnership.Acks, KeyOwnership.Signals, KeyOwnership.Idempotency, KeyOwnership.Activity, KeyOwnership.Other],
            KeyOwnership.Categories);
        Assert.Equal(["heartbeat", "acks", "signals", "idempotency", "activity", "other"], KeyOwnership.Categories);
    }

    [Fact]
    public void Owners_NullKey_Throws()
    {
        Assert.Throws<ArgumentNullException>(() => KeyOwnership.Owners(null!).ToList());
    }
}
