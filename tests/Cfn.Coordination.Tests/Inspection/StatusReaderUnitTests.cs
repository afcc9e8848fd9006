using Cfn.Coordination.Inspection;

namespace Cfn.Coordination.Tests.Inspection;

/// <summary>The health hash format that <c>monitor_check.lua</c> writes and reads back.</summary>
public sealed class StatusReaderUnitTests
{
    [Theory]
    [InlineData("0|0|healthy", 0, 0L, "healthy")]
    [InlineData("2|1764640000123|warning", 2, 1764640000123L, "warning")]
    [InlineData("3|1764640000123|dead", 3, 1764640000123L, "dead")]
    public void TryParseHealth_MonitorFormat_Parsed(string value, int warnings, long lastWarn, string state)
    {
        Assert.True(StatusReader.TryParseHealth(value, out var parsed));
        Assert.Equal(new HealthWarnings(warnings, lastWarn, state), parsed);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("2")]
    [InlineData("2|100")]
    [InlineData("x|100|warning")]
    [InlineData("-1|100|warning")]
    [InlineData("2|100|")]
    [InlineData("2|100|dead1")]
    [InlineData("2|100|dead|extra")]
    public void TryParseHealth_AnythingElse_Refused(string? value)
    {
        Assert.False(StatusReader.TryParseHealth(value, out var parsed));
        Assert.Null(parsed);
    }
}
