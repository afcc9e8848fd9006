using System.Text;
using Cfn.Coordination.Wakeups;

namespace Cfn.Coordination.Tests.Wakeups;

/// <summary>The ACK wake-up message, read from the bytes the subscription delivers.</summary>
public sealed class WakeMessageUnitTests
{
    [Fact]
    public void TryParseAck_WithJsonHoldingSpacesAndNonAscii_SplitsAtTheFirstTwoSpaces()
    {
        const string json = "{\"coordinatorId\":\"peer-1\",\"note\":\"a b é\"}";

        Assert.True(WakeMessage.TryParseAck(Encoding.UTF8.GetBytes("ack sig-1 peer-1 " + json), out var signalId, out var ackerId, out var body));

        Assert.Equal("sig-1", signalId);
        Assert.Equal("peer-1", ackerId);
        Assert.Equal(json, body);
    }

    [Fact]
    public void TryParseAck_WithoutJson_JsonIsNull()
    {
        Assert.True(WakeMessage.TryParseAck("ack sig-1 peer-1"u8, out var signalId, out var ackerId, out var body));

        Assert.Equal("sig-1", signalId);
        Assert.Equal("peer-1", ackerId);
        Assert.Null(body);
    }

    [Theory]
    [InlineData("signal m-1")]
    [InlineData("unblock")]
    [InlineData("ack sig-1")]
    [InlineData("ack  peer-1")]
    [InlineData("ack sig-1 ")]
    [InlineData("")]
    public void TryParseAck_NotAnAckWithSignalAndAcker_False(string message)
    {
        Assert.False(WakeMessage.TryParseAck(Encoding.UTF8.GetBytes(message), out _, out _, out _));
    }
}
