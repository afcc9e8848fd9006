using System.Collections;
using Cfn.Hosting;

namespace Cfn.Tests.Hosting;

public sealed class CfnConfigurationUnitTests
{
    private const string Secret = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    [Fact]
    public void Load_RunbookPatches_EveryVariableChangesItsSetting()
    {
        var config = CfnConfiguration.Load(new Hashtable
        {
            ["BLOCKING_COORDINATION_SECRET"] = Secret,
            ["BLOCKING_TIMEOUT_MS"] = "900000",
            ["HEARTBEAT_INTERVAL_MS"] = "60000",
            ["REDIS_POOL_SIZE"] = "20",
            ["ENABLE_HEARTBEAT_MONITORING"] = "false",
            ["HEARTBEAT_DEBUG"] = "true",
            ["ENABLE_CIRCUIT_BREAKER"] = "false",
            ["ENABLE_VALIDATION_CACHE"] = "true",
            ["ENABLE_TIMEOUT_HOOKS"] = "true",
            ["REDIS_HOST"] = "redis.prod.example.com",
            ["REDIS_PORT"] = "6380",
            ["COORDINATOR_ID"] = "coordinator-1",
            ["SWARM_ID"] = "swarm-123",
            ["SWARM_EXPECTED_COORDINATORS"] = "5",
            ["HTTP_PORT"] = "9090",
        });

        Assert.Equal(TimeSpan.FromMinutes(15), config.Coordination.BlockingTimeout);
        Assert.Equal(TimeSpan.FromMinutes(1), config.Coordination.HeartbeatInterval);
        Assert.Equal(20, config.RedisPoolSize);
        Assert.False(config.Recovery.EnableHeartbeatMonitoring);
        Assert.True(config.Coordination.HeartbeatDebug);
        Assert.False(config.Breakers.Enabled);
        Assert.True(config.Validators.EnableCache);
        Assert.True(config.TimeoutHooks);
        Assert.Equal(("redis.prod.example.com", 6380), (config.Redis.Host, config.Redis.Port));
        Assert.Equal(("coordinator-1", "swarm-123", 5, 9090), (config.CoordinatorId, config.SwarmId, config.ExpectedCoordinators, config.HttpPort));
        Assert.NotNull(config.Keys);
    }

    [Theory]
    [InlineData("BLOCKING_TIMEOUT_MS", "soon")]
    [InlineData("REDIS_POOL_SIZE", "0")]
    [InlineData("REDIS_POOL_SIZE", "500")]
    [InlineData("HEARTBEAT_MAX_WARNINGS", "1000")]
    [InlineData("ENABLE_HEARTBEAT_MONITORING", "maybe")]
    [InlineData("COORDINATOR_ID", "coordinator:1")]
    [InlineData("REDIS_PORT", "70000")]
    [InlineData("LOG_FORMAT", "xml")]
    [InlineData("BLOCKING_COORDINATION_SECRET", "short")]
    public void Load_BadValue_OneLineNamingTheVariable(string name, string value)
    {
        var env = new Hashtable { ["BLOCKING_COORDINATION_SECRET"] = Secret, [name] = value };

        var e = Assert.Throws<CfnConfigurationException>(() => CfnConfiguration.Load(env));

        Assert.Contains(name, e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void Load_NoSecret_RefusedUnlessTheCallerGeneratesOne()
    {
        var e = Assert.Throws<CfnConfigurationException>(() => CfnConfiguration.Load(new Hashtable()));
        Assert.Contains("BLOCKING_COORDINATION_SECRET", e.Message, StringComparison.Ordinal);

        Assert.Null(CfnConfiguration.Load(new Hashtable(), secretRequired: false).Keys);
    }

    [Fact]
    public void Load_RedisUrl_WinsOverHostAndPort()
    {
        var config = CfnConfiguration.Load(new Hashtable
        {
            ["BLOCKING_COORDINATION_SECRET"] = Secret,
            ["REDIS_URL"] = "redis://:pw@10.0.0.5:6390/3",
            ["REDIS_HOST"] = "ignored",
        });

        AssertRedis(config.Redis, "10.0.0.5", 6390, "pw", 3);
    }

    [Theory]
    [InlineData("redis.prod.example.com:6380,password=s3cret,defaultDatabase=4", "redis.prod.example.com", 6380, "s3cret", 4)]
    [InlineData("10.0.0.7:6379,abortConnect=false", "10.0.0.7", 6379, null, 0)]
    [InlineData("redis.prod.example.com:6379", "redis.prod.example.com", 6379, null, 0)]
    public void Load_RedisUrl_StackExchangeConfigurationString(string url, string host, int port, string? password, int db)
    {
        var config = CfnConfiguration.Load(new Hashtable { ["BLOCKING_COORDINATION_SECRET"] = Secret, ["REDIS_URL"] = url });

        AssertRedis(config.Redis, host, port, password, db);
    }

    private static void AssertRedis(RedisSettings settings, string host, int port, string? password, int db)
    {
        Assert.Equal((host, port, db), (settings.Host, settings.Port, settings.Database));
        Assert.Equal(password, settings.ToOptions().Password);
        Assert.DoesNotContain(password ?? "\u0000", settings.Display, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_DeprecatedOrUnusedVariables_WarnedNotRefused()
    {
        var alias = CfnConfiguration.Load(new Hashtable { ["BLOCKING_COORDINATION_SECRET"] = Secret, ["BLOCKING_TIMEOUT"] = "900000" });
        Assert.Equal(TimeSpan.FromMilliseconds(900_000), alias.Coordination.BlockingTimeout);
        Assert.Contains(alias.Warnings, w => w.StartsWith("BLOCKING_TIMEOUT is deprecated: it still sets", StringComparison.Ordinal));

        var both = CfnConfiguration.Load(new Hashtable
        {
            ["BLOCKING_COORDINATION_SECRET"] = Secret, ["BLOCKING_TIMEOUT"] = "900000", ["BLOCKING_TIMEOUT_MS"] = "60000", ["ACTIVITY_TIMEOUT_MS"] = "1000",
        });
        Assert.Equal(TimeSpan.FromMilliseconds(60_000), both.Coordination.BlockingTimeout);
        Assert.Contains(both.Warnings, w => w.Contains("ignored", StringComparison.Ordinal));
        Assert.Contains(both.Warnings, w => w.StartsWith("ACTIVITY_TIMEOUT_MS is not used", StringComparison.Ordinal));

        Assert.Empty(CfnConfiguration.Load(new Hashtable { ["BLOCKING_COORDINATION_SECRET"] = Secret }).Warnings);
    }
}
