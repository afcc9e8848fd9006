using System.Collections;
using System.ComponentModel.DataAnnotations;
using Cfn.Coordination.Swarms;

namespace Cfn.Coordination.Tests.Swarms;

public sealed class SwarmManagerOptionsUnitTests
{
    [Fact]
    public void FromEnvironment_Unset_Defaults()
    {
        var options = SwarmManagerOptions.FromEnvironment(new Hashtable());

        Assert.Equal(8, options.HostCapacity);
        Assert.Equal(TimeSpan.FromMilliseconds(60_000), options.SpawnTimeout);
        Assert.Equal(TimeSpan.FromMilliseconds(1_000), options.Interval);
    }

    [Fact]
    public void FromEnvironment_Set_Read()
    {
        var options = SwarmManagerOptions.FromEnvironment(new Hashtable
        {
            ["COORDINATOR_HOST_CAPACITY"] = "3",
            ["SPAWN_TIMEOUT_MS"] = "5000",
            ["SWARM_MANAGER_INTERVAL_MS"] = " 250 ",
        });

        Assert.Equal(3, options.HostCapacity);
        Assert.Equal(TimeSpan.FromSeconds(5), options.SpawnTimeout);
        Assert.Equal(TimeSpan.FromMilliseconds(250), options.Interval);
    }

    [Theory]
    [InlineData("COORDINATOR_HOST_CAPACITY", "0")]
    [InlineData("COORDINATOR_HOST_CAPACITY", "many")]
    [InlineData("COORDINATOR_HOST_CAPACITY", "200000")]
    [InlineData("SPAWN_TIMEOUT_MS", "-1")]
    [InlineData("SWARM_MANAGER_INTERVAL_MS", "1.5")]
    public void FromEnvironment_BadValue_NamesTheVariable(string name, string value)
    {
        var e = Assert.Throws<ValidationException>(() => SwarmManagerOptions.FromEnvironment(new Hashtable { [name] = value }));

        Assert.Contains(name, e.Message, StringComparison.Ordinal);
    }
}
