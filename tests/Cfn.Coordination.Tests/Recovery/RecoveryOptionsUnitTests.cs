using System.Collections;
using System.ComponentModel.DataAnnotations;
using Cfn.Coordination.Recovery;

namespace Cfn.Coordination.Tests.Recovery;

/// <summary>The timeout handler's settings (SPEC §3.6, D8, §2.9 validation, K1 TTL rule, §7.14 item 14).</summary>
public sealed class RecoveryOptionsUnitTests
{
    private static Hashtable Env(params (string Name, string Value)[] values)
    {
        var env = new Hashtable();
        foreach (var (name, value) in values)
        {
            env[name] = value;
        }

        return env;
    }

    [Fact]
    public void Defaults_AreSpecValues()
    {
        var o = new RecoveryOptions();

        Assert.Equal(TimeSpan.FromMilliseconds(120_000), o.HeartbeatStaleThreshold);
        Assert.Equal(TimeSpan.FromMilliseconds(10_000), o.MonitorInterval);
        Assert.Equal(3, o.MaxWarnings);
        Assert.True(o.EnableHeartbeatMonitoring);
        Assert.True(o.EnableAutoEscalation);
        Assert.Equal(TimeSpan.FromMilliseconds(30_000), o.StuckWaitGrace);
        Assert.Equal(600, o.CleanupStaleThresholdSeconds);
        Assert.Equal(TimeSpan.FromMilliseconds(300_000), o.CleanupInterval);
        Assert.Equal(3600, o.EscalationTtlSeconds);
        Assert.Equal(TimeSpan.FromSeconds(140), o.DeathAfter);
    }

    [Fact]
    public void FromEnvironment_Empty_Defaults()
    {
        var o = RecoveryOptions.FromEnvironment(new Hashtable());

        Assert.Equal(TimeSpan.FromMilliseconds(120_000), o.HeartbeatStaleThreshold);
        Assert.Equal(3, o.MaxWarnings);
        Assert.True(o.EnableHeartbeatMonitoring);
    }

    [Fact]
    public void FromEnvironment_HeartbeatStaleThreshold_Changes()
    {
        Assert.Equal(TimeSpan.FromMilliseconds(5000),
            RecoveryOptions.FromEnvironment(Env(("HEARTBEAT_STALE_THRESHOLD_MS", "5000"))).HeartbeatStaleThreshold);
    }

    [Fact]
    public void FromEnvironment_MonitorInterval_Changes()
    {
        Assert.Equal(TimeSpan.FromMilliseconds(2500),
            RecoveryOptions.FromEnvironment(Env(("HEARTBEAT_MONITOR_INTERVAL_MS", "2500"))).MonitorInterval);
    }

    [Fact]
    public void FromEnvironment_MaxWarnings_Changes()
    {
        var o = RecoveryOptions.FromEnvironment(Env(("HEARTBEAT_MAX_WARNINGS", "5")));

        Assert.Equal(5, o.MaxWarnings);
        Assert.Equal(TimeSpan.FromSeconds(160), o.DeathAfter);
    }

    [Theory]
    [InlineData("false", false)]
    [InlineData("FALSE", false)]
    [InlineData("0", false)]
    [InlineData("true", true)]
    [InlineData("1", true)]
    [InlineData(" false ", false)]
    public void FromEnvironment_EnableHeartbeatMonitoring_Changes(string value, bool expected)
    {
        Assert.Equal(expected, RecoveryOptions.FromEnvironment(Env(("ENABLE_HEARTBEAT_MONITORING", value))).EnableHeartbeatMonitoring);
    }

    [Theory]
    [InlineData("false", false)]
    [InlineData("0", false)]
    [InlineData("True", true)]
    public void FromEnvironment_EnableAutoEscalation_Changes(string value, bool expected)
    {
        Assert.Equal(expected, RecoveryOptions.FromEnvironment(Env(("ENABLE_AUTO_ESCALATION", value))).EnableAutoEscalation);
    }

    [Fact]
    public void FromEnvironment_ActivityCheckInterval_ChangesStuckWaitGrace()
    {
        Assert.Equal(TimeSpan.FromMilliseconds(1234),
            RecoveryOptions.FromEnvironment(Env(("ACTIVITY_CHECK_INTERVAL_MS", "1234"))).StuckWaitGrace);
    }

    [Fact]
    public void FromEnvironment_CleanupStaleThreshold_Changes()
    {
        Assert.Equal(900, RecoveryOptions.FromEnvironment(Env(("CLEANUP_STALE_THRESHOLD_SECONDS", "900"))).CleanupStaleThresholdSeconds);
    }

    [Fact]
    public void FromEnvironment_CleanupInterval_Changes()
    {
        Assert.Equal(TimeSpan.FromMilliseconds(60_000), RecoveryOptions.FromEnvironment(Env(("CLEANUP_INTERVAL_MS", "60000"))).CleanupInterval);
    }

    [Fact]
    public void FromEnvironment_EmptyValue_KeepsDefault()
    {
        Assert.Equal(TimeSpan.FromMilliseconds(10_000), RecoveryOptions.FromEnvironment(Env(("HEARTBEAT_MONITOR_INTERVAL_MS", ""))).MonitorInterval);
    }

    [Theory]
    [InlineData("HEARTBEAT_STALE_THRESHOLD_MS", "abc")]
    [InlineData("HEARTBEAT_STALE_THRESHOLD_MS", "-5")]
    [InlineData("HEARTBEAT_STALE_THRESHOLD_MS", "0")]
    [InlineData("HEARTBEAT_MONITOR_INTERVAL_MS", "1.5")]
    [InlineData("HEARTBEAT_MONITOR_INTERVAL_MS", "10s")]
    [InlineData("HEARTBEAT_MAX_WARNINGS", "three")]
    [InlineData("HEARTBEAT_MAX_WARNINGS", "0")]
    [InlineData("ACTIVITY_CHECK_INTERVAL_MS", "1e3")]
    [InlineData("CLEANUP_STALE_THRESHOLD_SECONDS", "-600")]
    [InlineData("CLEANUP_INTERVAL_MS", "5 minutes")]
    [InlineData("ENABLE_HEARTBEAT_MONITORING", "yes")]
    [InlineData("ENABLE_AUTO_ESCALATION", "off")]
    public void FromEnvironment_BadValue_RefusedNamingTheVariable(string name, string value)
    {
        var error = Assert.Throws<ValidationException>(() => RecoveryOptions.FromEnvironment(Env((name, value))));

        Assert.Contains(name, error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("HEARTBEAT_MAX_WARNINGS", "1000")]
    [InlineData("CLEANUP_STALE_THRESHOLD_SECONDS", "99999999")]
    public void FromEnvironment_OutOfRangeValue_RefusedNamingTheVariable(string name, string value)
    {
        var error = Assert.Throws<ValidationException>(() => RecoveryOptions.FromEnvironment(Env((name, value))));

        Assert.Contains(name, error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(140)] // = stale 120 s + 2 more warnings 10 s apart: K1 expires as death would be confirmed
    [InlineData(100)]
    [InlineData(1)]
    public void FromEnvironment_HeartbeatTtlNotAboveDeathDelay_RefusedNamingHeartbeatTtl(int ttlSeconds)
    {
        var coordination = CoordinationOptions.FromEnvironment(Env(("HEARTBEAT_TTL_SECONDS", ttlSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture)),
            ("HEARTBEAT_INTERVAL_MS", "100")));

        var error = Assert.Throws<ValidationException>(() => RecoveryOptions.FromEnvironment(new Hashtable(), coordination));

        Assert.Contains("HEARTBEAT_TTL_SECONDS", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void FromEnvironment_HeartbeatTtlBelowStalePlusMaxWarningsIntervals_Refused()
    {
        // SPEC K1 and §2.9: the TTL MUST exceed staleThreshold + maxWarnings × monitorInterval (120 + 3 × 10 = 150 s).
        var coordination = CoordinationOptions.FromEnvironment(Env(("HEARTBEAT_TTL_SECONDS", "145")));

        var error = Assert.Throws<ValidationException>(() => RecoveryOptions.FromEnvironment(new Hashtable(), coordination));

        Assert.Contains("HEARTBEAT_TTL_SECONDS", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void FromEnvironment_RaisedStaleThresholdMakesDefaultTtlTooShort_Refused()
    {
        var coordination = new CoordinationOptions(); // TTL 300 s

        var error = Assert.Throws<ValidationException>(() =>
            RecoveryOptions.FromEnvironment(Env(("HEARTBEAT_STALE_THRESHOLD_MS", "290000")), coordination));

        Assert.Contains("HEARTBEAT_TTL_SECONDS", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void FromEnvironment_HeartbeatTtlWellAboveDeathDelay_Accepted()
    {
        var coordination = CoordinationOptions.FromEnvironment(Env(("HEARTBEAT_TTL_SECONDS", "151")));

        var o = RecoveryOptions.FromEnvironment(new Hashtable(), coordination);

        Assert.Equal(TimeSpan.FromSeconds(140), o.DeathAfter);
    }

    [Fact]
    public void Validate_ZeroMonitorInterval_RefusedNamingTheVariable()
    {
        var o = new RecoveryOptions { MonitorInterval = TimeSpan.Zero };

        var error = Assert.Throws<ValidationException>(() => o.Validate());

        Assert.Contains("HEARTBEAT_MONITOR_INTERVAL_MS", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_NegativeStaleThreshold_RefusedNamingTheVariable()
    {
        var o = new RecoveryOptions { HeartbeatStaleThreshold = TimeSpan.FromSeconds(-1) };

        var error = Assert.Throws<ValidationException>(() => o.Validate());

        Assert.Contains("HEARTBEAT_STALE_THRESHOLD_MS", error.Message, StringComparison.Ordinal);
    }
}
