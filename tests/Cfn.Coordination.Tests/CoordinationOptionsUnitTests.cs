using System.Collections;
using System.ComponentModel.DataAnnotations;

namespace Cfn.Coordination.Tests;

public sealed class CoordinationOptionsUnitTests
{
    [Fact]
    public void Defaults_AreSpecD8()
    {
        var o = new CoordinationOptions();
        o.Validate();
        Assert.Equal(TimeSpan.FromMilliseconds(300_000), o.BlockingTimeout);
        Assert.Equal(TimeSpan.FromMilliseconds(30_000), o.HeartbeatInterval);
        Assert.Equal(300, o.HeartbeatTtlSeconds);
        Assert.Equal(3600, o.AckTtlSeconds);
        Assert.Equal(86_400, o.SignalTtlSeconds);
        // D8 said 86400; D23 (later) bounds retention by what can still read it: the retry window (docs/decisions.md).
        Assert.Equal(900, o.IdempotencyTtlSeconds);
        Assert.Equal(TimeSpan.FromSeconds(1), o.AckFallbackPollInterval);
        Assert.False(o.HeartbeatDebug);
        Assert.Equal(10_000, o.SignalInboxMaxLength);
    }

    [Fact]
    public void FromEnvironment_SignalInboxMaxLength_SetsTheCap()
    {
        var o = CoordinationOptions.FromEnvironment(new Hashtable { ["SIGNAL_INBOX_MAX_LENGTH"] = "250" });
        Assert.Equal(250, o.SignalInboxMaxLength);
    }

    [Fact]
    public void FromEnvironment_RunbookValues_ChangeTheOptions()
    {
        var o = CoordinationOptions.FromEnvironment(new Hashtable
        {
            ["BLOCKING_TIMEOUT_MS"] = "900000",
            ["HEARTBEAT_INTERVAL_MS"] = "60000",
            ["HEARTBEAT_DEBUG"] = "true",
            ["ACK_POLL_INTERVAL_MS"] = "250",
        });

        Assert.Equal(TimeSpan.FromMinutes(15), o.BlockingTimeout);
        Assert.Equal(TimeSpan.FromMinutes(1), o.HeartbeatInterval);
        Assert.True(o.HeartbeatDebug);
        Assert.Equal(TimeSpan.FromMilliseconds(250), o.AckFallbackPollInterval);
    }

    [Fact]
    public void FromEnvironment_ObsoleteBlockingTimeout_IsAccepted()
    {
        var o = CoordinationOptions.FromEnvironment(new Hashtable { ["BLOCKING_TIMEOUT"] = "120000" });
        Assert.Equal(TimeSpan.FromMinutes(2), o.BlockingTimeout);
    }

    [Theory]
    [InlineData("BLOCKING_TIMEOUT_MS", "soon")]
    [InlineData("HEARTBEAT_INTERVAL_MS", "-5")]
    [InlineData("HEARTBEAT_DEBUG", "yes please")]
    [InlineData("SIGNAL_INBOX_MAX_LENGTH", "0")]
    [InlineData("SIGNAL_INBOX_MAX_LENGTH", "many")]
    [InlineData("SIGNAL_INBOX_MAX_LENGTH", "20000000")]
    [InlineData("WORK_RESULT_TTL_SECONDS", "0")]
    [InlineData("WORK_RESULT_TTL_SECONDS", "3000000")]
    public void FromEnvironment_BadValue_NamesTheVariable(string name, string value)
    {
        var e = Assert.Throws<ValidationException>(() => CoordinationOptions.FromEnvironment(new Hashtable { [name] = value }));
        Assert.Contains(name, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_HeartbeatTtlNotAboveInterval_IsRefused()
    {
        var e = Assert.Throws<ValidationException>(() => CoordinationOptions.FromEnvironment(new Hashtable
        {
            ["HEARTBEAT_INTERVAL_MS"] = "60000",
            ["HEARTBEAT_TTL_SECONDS"] = "30",
        }));
        Assert.Contains("HeartbeatTtlSeconds", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ActivityTtl_OutlivesTheBlockingTimeout()
    {
        var o = new CoordinationOptions { BlockingTimeout = TimeSpan.FromHours(1) };
        Assert.True(o.ActivityTtlSeconds > 3600 + 30);
        Assert.Equal(600, new CoordinationOptions { BlockingTimeout = TimeSpan.FromSeconds(10) }.ActivityTtlSeconds);
    }
}
