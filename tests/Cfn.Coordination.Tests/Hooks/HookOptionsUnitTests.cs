using System.Collections;
using System.ComponentModel.DataAnnotations;
using Cfn.Coordination.Hooks;

namespace Cfn.Coordination.Tests.Hooks;

public sealed class HookOptionsUnitTests
{
    [Fact]
    public void FromEnvironment_Unset_Defaults()
    {
        var o = HookOptions.FromEnvironment(new Hashtable());

        Assert.False(o.Enabled);
        Assert.Equal("/etc/cfn/hooks", o.Directory);
        Assert.Equal(TimeSpan.FromMilliseconds(5000), o.Timeout);
        Assert.Equal(4, o.MaxConcurrentHooks);
    }

    [Fact]
    public void FromEnvironment_Set_ReadsAll()
    {
        var o = HookOptions.FromEnvironment(new Hashtable
        {
            ["ENABLE_TIMEOUT_HOOKS"] = "true",
            ["TIMEOUT_HOOKS_DIR"] = " /opt/hooks ",
            ["TIMEOUT_HOOK_TIMEOUT_MS"] = "1500",
        });

        Assert.True(o.Enabled);
        Assert.Equal("/opt/hooks", o.Directory);
        Assert.Equal(TimeSpan.FromMilliseconds(1500), o.Timeout);
    }

    [Fact]
    public void FromEnvironment_Blank_IsUnset()
    {
        var o = HookOptions.FromEnvironment(new Hashtable { ["ENABLE_TIMEOUT_HOOKS"] = " ", ["TIMEOUT_HOOKS_DIR"] = "" });

        Assert.False(o.Enabled);
        Assert.Equal(HookOptions.DefaultDirectory, o.Directory);
    }

    [Theory]
    [InlineData("ENABLE_TIMEOUT_HOOKS", "yes")]
    [InlineData("TIMEOUT_HOOKS_DIR", "relative/hooks")]
    [InlineData("TIMEOUT_HOOK_TIMEOUT_MS", "0")]
    [InlineData("TIMEOUT_HOOK_TIMEOUT_MS", "-5")]
    [InlineData("TIMEOUT_HOOK_TIMEOUT_MS", "abc")]
    [InlineData("TIMEOUT_HOOK_TIMEOUT_MS", "600001")]
    public void FromEnvironment_BadValue_NamesTheVariable(string name, string value)
    {
        var e = Assert.Throws<ValidationException>(() => HookOptions.FromEnvironment(new Hashtable { [name] = value }));

        Assert.Contains(name, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_TooManyConcurrentHooks_Throws()
    {
        var e = Assert.Throws<ValidationException>(() => new HookOptions { MaxConcurrentHooks = 65 }.Validate());

        Assert.Contains("MaxConcurrentHooks", e.Message, StringComparison.Ordinal);
    }
}
